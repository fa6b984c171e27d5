"""The metadata server's HTTP API (on `transport.py`): ping, online keys, upload, fetch, delete.

Every server refusal becomes a `ServerError` carrying the server's code and message; every
network failure becomes a `ServerUnreachableError`. A 401 with a bearer challenge is answered
once with a token from the server's realm (`auth.TokenAuth`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

from tufnotary.client.auth import TokenAuth, scope_of
from tufnotary.client.canonical import canonical_bytes
from tufnotary.client.errors import ServerError, ServerUnreachableError
from tufnotary.client.names import check_collection
from tufnotary.client.transport import Response, Transport, TransportError, multipart

if TYPE_CHECKING:
    from securesystemslib.signer import SSlibKey

    from tufnotary.client.fetcher import AuthFetcher

DEFAULT_SERVER = "http://127.0.0.1:4443"
USER_AGENT = "tufnotary-client/0.1.0"


class HttpConfig(NamedTuple):
    server: str = DEFAULT_SERVER
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 2


def metadata_base_url(server: str, collection: str) -> str:
    """The TUF metadata base URL of `collection` (its '/' are path separators, not escaped)."""
    return f"{server.rstrip('/')}/v2/{check_collection(collection)}/_trust/tuf/"


def tuf_keyid(key: SSlibKey) -> str:
    """The TUF key id of `key`: sha256 of the canonical JSON of its dict without 'keyid'."""
    import hashlib  # here: hashlib loads the system's OpenSSL, which an express publish does not need

    return hashlib.sha256(canonical_bytes(key.to_dict())).hexdigest()


def _server_error(response: Response, what: str) -> ServerError:
    try:
        first = json.loads(response.data)["errors"][0]
        code = str(first.get("code", "UNKNOWN"))
        message = str(first.get("message", "")) or f"HTTP {response.status}"
        detail = first.get("detail")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        code, message, detail = "UNKNOWN", f"HTTP {response.status}", None
    text = f"{what}: server refused ({code}): {message}"
    if detail not in (None, "", {}, []):
        text += f" ({json.dumps(detail, sort_keys=True)[:300]})"
    return ServerError(" ".join(text.split()), code, response.status, detail)


class ServerClient:
    """Client of one metadata server."""

    def __init__(self, config: HttpConfig, auth: TokenAuth | None = None) -> None:
        self.config = config
        self._transport = Transport(config.connect_timeout, config.read_timeout, config.retries,
                                    headers={"User-Agent": USER_AGENT})
        self.auth = auth or TokenAuth(self._transport, config.server)

    def metadata_fetcher(self, socket_timeout: int) -> AuthFetcher:
        """An ngclient fetcher with this client's tokens (see AuthFetcher), and like this client
        taking no proxy from the environment."""
        import urllib3

        from tufnotary.client.fetcher import AuthFetcher

        return AuthFetcher(self.auth, socket_timeout=socket_timeout, app_user_agent=USER_AGENT,
                           pool=urllib3.PoolManager(headers={"User-Agent": USER_AGENT}))

    def base_url(self, collection: str) -> str:
        return metadata_base_url(self.config.server, collection)

    def _send(self, method: str, url: str, what: str, headers: dict[str, str], body: bytes | None,
              replay: bool) -> Response:
        try:
            return self._transport.request(method, url, headers, body, replay)
        except TransportError as e:
            raise ServerUnreachableError(f"{what}: cannot reach server {self.config.server}: {e}") from e

    def _request(self, method: str, url: str, what: str, headers: dict[str, str] | None = None,
                 body: bytes | None = None, replay: bool = True) -> Response:
        """`replay=False` for a request the server may act on: it is never sent twice."""
        scope = scope_of(url, method)
        headers = {**(headers or {}), **self.auth.header_for(scope)}
        response = self._send(method, url, what, headers, body, replay)
        if response.status == 401:
            answer = self.auth.answer(response.headers.get("WWW-Authenticate"), scope)
            if answer is not None:
                response = self._send(method, url, what, {**headers, **answer}, body, replay)
        if response.status >= 400:
            raise _server_error(response, what)
        return response

    def ping(self) -> None:
        self._request("GET", f"{self.config.server.rstrip('/')}/v2/", "ping")

    def online_key(self, collection: str, role: str) -> SSlibKey:
        """The server-managed public key of `role` ("timestamp" or "snapshot"), key id checked."""
        what = f"fetching the {role} key of {collection}"
        return self._checked_key(self._request("GET", f"{self.base_url(collection)}{role}.key", what), what)

    def rotate_online_key(self, collection: str, role: str) -> SSlibKey:
        """Ask the server to start rotating its `role` key; the new (pending) key, key id checked.

        The server keeps signing with the current key until a root listing the new one is published."""
        what = f"rotating the server's {role} key of {collection}"
        response = self._request("POST", f"{self.base_url(collection)}{role}.key", what, replay=False)
        return self._checked_key(response, what)

    @staticmethod
    def _checked_key(response: Response, what: str) -> SSlibKey:
        from securesystemslib.signer import SSlibKey

        try:
            d = json.loads(response.data)
            keyid = d.pop("keyid")
            d.pop("state", None)
            key = SSlibKey.from_dict(keyid, d)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ServerError(f"{what}: the server sent an invalid key: {e}", "KEY_INVALID") from e
        if tuf_keyid(key) != keyid:
            raise ServerError(
                f"{what}: the server's key id {keyid} is not the TUF key id of the key it sent",
                "KEY_INVALID",
            )
        return key

    def upload(self, collection: str, roles: dict[str, bytes]) -> dict[str, Any]:
        """POST signed metadata (role name -> exact bytes) atomically; return the server's reply."""
        body, content_type = multipart(
            {role: (f"{role}.json", data, "application/json") for role, data in roles.items()})
        response = self._request("POST", self.base_url(collection), f"publishing {', '.join(roles)} of {collection}",
                                 {"Content-Type": content_type}, body, replay=False)
        try:
            reply: dict[str, Any] = json.loads(response.data)
        except ValueError:
            reply = {}
        return reply

    def fetch(self, collection: str, filename: str) -> bytes:
        """Unverified bytes of one metadata file, e.g. 'root.json' or '2.targets.json'."""
        return self._request(
            "GET", f"{self.base_url(collection)}{filename}", f"fetching {filename} of {collection}"
        ).data

    def delete(self, collection: str) -> None:
        self._request("DELETE", self.base_url(collection), f"deleting {collection}")

    def changefeed(self, collection: str | None, since: int = 0, limit: int = 100) -> dict[str, Any]:
        """One page of the audit records of `collection` (all collections when None) after `since`:
        `{"records": [...], "next": seq, "more": bool}`."""
        server = self.config.server.rstrip("/")
        base = f"{server}/v2/{check_collection(collection)}/_trust/changefeed" if collection else \
            f"{server}/v2/_trust/changefeed"
        response = self._request("GET", f"{base}?since={int(since)}&limit={int(limit)}",
                                 f"reading the changefeed of {collection or 'every collection'}")
        try:
            reply: dict[str, Any] = json.loads(response.data)
            assert isinstance(reply.get("records"), list)
        except (ValueError, AssertionError) as e:
            raise ServerError("the server sent a changefeed that is not JSON records", "CHANGEFEED_INVALID") from e
        return reply

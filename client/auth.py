"""Bearer tokens for the metadata server, as Docker clients get them from a registry's token server.

A request answered 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` is retried
once with a token from the realm, fetched with HTTP basic credentials from the environment
(`TUFNOTARY_USERNAME` and `TUFNOTARY_PASSWORD` or `TUFNOTARY_PASSWORD_FILE`) or from the Docker
config file and its credential helpers for the server's host, as `dockerconfig.py` reads them for
registries too (never from the command line). Tokens are cached per
scope until shortly before they expire. `fetcher.AuthFetcher` makes python-tuf's ngclient use
them too (this module imports no python-tuf: publishing without it uses these tokens).
Nothing here prints or logs a password or a token.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from tufnotary.client.errors import ServerError, ServerUnreachableError, UsageError
from tufnotary.client.transport import Transport, TransportError

if TYPE_CHECKING:
    from tufnotary.client.dockerconfig import Credentials

USERNAME_ENV = "TUFNOTARY_USERNAME"
PASSWORD_ENV = "TUFNOTARY_PASSWORD"
PASSWORD_FILE_ENV = "TUFNOTARY_PASSWORD_FILE"
ENV_HINT = f"{USERNAME_ENV} and {PASSWORD_ENV} (or {PASSWORD_FILE_ENV})"
EXPIRY_MARGIN = 10.0  # seconds: a token this close to expiry is fetched anew
DEFAULT_EXPIRES_IN = 60  # the registry token spec's default when the server names none
_COLLECTION_URL = re.compile(r"/v2/(?P<collection>.+?)/_trust/")


def credentials_for(server: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Basic credentials for `server`: the environment first, else the Docker config file
    (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) in Docker's order, credential
    helpers included (`dockerconfig.py`), under the server's host[:port]."""
    # Imported here: most requests are never challenged, and a publish's start-up is its cost.
    from tufnotary.client.dockerconfig import Credentials, DockerConfig, default_config_path, host_of

    environ = os.environ if environ is None else environ
    user = environ.get(USERNAME_ENV)
    if user:
        if environ.get(PASSWORD_FILE_ENV):
            password = Path(environ[PASSWORD_FILE_ENV]).read_text().strip()
        else:
            password = environ.get(PASSWORD_ENV, "")
        return Credentials(user, password)
    config = DockerConfig.load(default_config_path(environ))
    found = config.credentials(server, environ, ENV_HINT)
    if found is not None and found.identity_token is not None:
        # The server's realm takes basic credentials (GET), not an OAuth2 refresh token.
        raise UsageError(
            f"{config.path} holds an identity token for {host_of(server)}, which the tufnotary "
            f"server's token endpoint does not accept: set {ENV_HINT}, or log in with a password "
            f"('docker login {host_of(server)}')")
    return found if found is not None and found.username else None


def bearer_challenge(header: str | None) -> dict[str, str] | None:
    """The parameters of a `Bearer realm=…,service=…,scope=…` challenge, or None."""
    from tufnotary.client.challenge import parse_challenge  # only after a 401: most requests are never challenged

    challenge = parse_challenge(header)
    if challenge is None or challenge.scheme != "bearer" or not challenge.params.get("realm"):
        return None
    return challenge.params


def scope_of(url: str, method: str) -> str | None:
    """The scope a request to `url` needs, as the server's challenges name it."""
    path = urlsplit(url).path
    if path.startswith("/v2/_trust/changefeed"):
        return "registry:catalog:*"
    match = _COLLECTION_URL.search(path)
    if match is None:
        return None
    collection = match["collection"]
    if method == "DELETE" or (method == "POST" and path.endswith(".key")):
        return f"repository:{collection}:*"
    if method == "POST" or path.endswith(".key"):
        return f"repository:{collection}:pull,push"
    return f"repository:{collection}:pull"


class TokenAuth:
    """Tokens per scope from the server's realm; thread-safe."""

    def __init__(self, transport: Transport, server: str,
                 credentials: Callable[[], Credentials | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._transport, self.server = transport, server
        self._credentials = credentials or (lambda: credentials_for(server))
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def header_for(self, scope: str | None) -> dict[str, str]:
        """The Authorization header of a cached, fresh token for `scope`, else {}."""
        if scope is None:
            return {}
        with self._lock:
            cached = self._tokens.get(scope)
        if cached and cached[1] > self._clock():
            return {"Authorization": f"Bearer {cached[0]}"}
        return {}

    def answer(self, challenge_header: str | None, scope: str | None) -> dict[str, str] | None:
        """After a 401: a header with a new token for the challenge, or None if it is no bearer one."""
        challenge = bearer_challenge(challenge_header)
        if challenge is None:
            return None
        token, lifetime = self._fetch(challenge)
        expires = self._clock() + max(0.0, lifetime - EXPIRY_MARGIN)
        with self._lock:
            for key in {challenge.get("scope"), scope} - {None}:
                self._tokens[key] = (token, expires)  # type: ignore[index]
        return {"Authorization": f"Bearer {token}"}

    def _fetch(self, challenge: dict[str, str]) -> tuple[str, float]:
        realm = challenge["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https"):
            raise ServerError(f"the server's token realm {realm!r} is not an HTTP URL", "UNAUTHORIZED", 401)
        query = {k: challenge[k] for k in ("service", "scope") if challenge.get(k)}
        headers: dict[str, str] = {}
        credentials = self._credentials()
        if credentials is not None:
            if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
                raise ServerError(f"refusing to send credentials to {realm} without TLS: use an https realm",
                                  "UNAUTHORIZED", 401)
            query["account"] = credentials.username
            import base64  # here: base64 loads struct, binascii and zlib, which an unchallenged request never needs

            basic = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        try:
            response = self._transport.request("GET", url, headers)
        except TransportError as e:
            raise ServerUnreachableError(f"cannot reach the token server {parts.netloc}: {e}") from e
        if response.status == 401:
            hint = "" if credentials else f": set {ENV_HINT}, or log in with docker login"
            raise ServerError(f"the token server {parts.netloc} refused the credentials{hint}",
                              "UNAUTHORIZED", 401)
        if response.status >= 400:
            raise ServerError(f"the token server {parts.netloc} answered HTTP {response.status}",
                              "UNAUTHORIZED", response.status)
        try:
            body: dict[str, Any] = json.loads(response.data)
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (ValueError, TypeError, AttributeError) as e:
            raise ServerError(f"the token server {parts.netloc} sent no token", "UNAUTHORIZED", 401) from e
        if not isinstance(token, str) or not token:
            raise ServerError(f"the token server {parts.netloc} sent no token", "UNAUTHORIZED", 401)
        return token, lifetime

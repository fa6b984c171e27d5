"""python-tuf's ngclient fetching through the server client's tokens (`auth.TokenAuth`)."""

from __future__ import annotations

from collections.abc import Iterator

import urllib3
from tuf.api import exceptions as tuf_exc
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from tufnotary.client.auth import TokenAuth, scope_of

MAX_DRAINED = 64 * 1024  # bytes of an error body read to keep its connection


class AuthFetcher(Urllib3Fetcher):
    """python-tuf's urllib3 fetcher, sending the server's bearer tokens (retrying once on 401).

    With `pool`, every GET goes through that pool instead of ngclient's own proxy-aware ones:
    a publisher's refresh, like its API requests, takes no proxy from the environment.
    """

    def __init__(self, auth: TokenAuth, socket_timeout: int = 30, app_user_agent: str | None = None,
                 pool: urllib3.PoolManager | None = None) -> None:
        super().__init__(socket_timeout=socket_timeout, app_user_agent=app_user_agent)
        self._auth = auth
        self._user_agent = (f"{app_user_agent} " if app_user_agent else "") + "python-tuf"
        self._pool = pool

    def _get(self, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        try:
            return (self._pool or self._proxy_env).request(
                "GET", url, preload_content=False, timeout=urllib3.Timeout(self.socket_timeout),
                headers={"User-Agent": self._user_agent, **headers},
            )
        except urllib3.exceptions.MaxRetryError as e:
            if isinstance(e.reason, urllib3.exceptions.TimeoutError):
                raise tuf_exc.SlowRetrievalError from e
            raise

    def _fetch(self, url: str) -> Iterator[bytes]:
        scope = scope_of(url, "GET")
        response = self._get(url, self._auth.header_for(scope))
        if response.status == 401:
            challenge = response.headers.get("WWW-Authenticate")
            response.drain_conn()
            response.release_conn()
            header = self._auth.answer(challenge, scope)
            if header is not None:
                response = self._get(url, header)
        if response.status >= 400:
            # Keep the connection when the error body is small: every refresh asks for the next
            # root version and gets a 404, and the next request should not reconnect. A large or
            # unsized body is not read (a server must not make the client download it).
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) <= MAX_DRAINED:
                response.drain_conn()
                response.release_conn()
            else:
                response.close()
            raise tuf_exc.DownloadHTTPError(f"HTTP error occurred with status {response.status}", response.status)
        return self._chunks(response)

    def _chunks(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            yield from response.stream(self.chunk_size)
        except urllib3.exceptions.ReadTimeoutError as e:
            raise tuf_exc.SlowRetrievalError from e
        finally:
            response.release_conn()

"""A small HTTP/1.1 client on the standard library, for the metadata server's API and token realm.

The server client (`http.py`) and its token requests (`auth.py`) need little: a request, its
status, headers and body; keep-alive; connect and read timeouts; TLS with the system's CAs; and
a retry when a connection fails before the server could have acted. urllib3 does that and far
more, and importing it is about a third of the imports of an express publish, whose time is
mostly start-up (docs/client.md, "Start-up cost"). ngclient (refreshes) and the registry client
keep urllib3.
"""

from __future__ import annotations

import http.client
import os
import select
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


class TransportError(Exception):
    """A request that got no HTTP response; the message says why."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage  # `.get(name)` ignores case
    data: bytes


def multipart(fields: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body of `fields` (name -> (filename, data, content type)) and its
    Content-Type header value."""
    boundary = os.urandom(16).hex()
    parts = []
    for name, (filename, data, content_type) in fields.items():
        for value in (name, filename):
            if any(c in value for c in '"\r\n'):
                raise ValueError(f"{value!r} cannot be a multipart field name or file name")
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f"Content-Type: {content_type}\r\n\r\n".encode(), data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection was closed by the server (or has stray bytes)."""
    if conn.sock is None:
        return True
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Transport:
    """Keep-alive connections per scheme and host; safe to share between threads."""

    def __init__(self, connect_timeout: float = 5.0, read_timeout: float = 30.0, retries: int = 2,
                 backoff: float = 0.2, headers: dict[str, str] | None = None) -> None:
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.retries, self.backoff = retries, backoff
        self.headers = dict(headers or {})
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def _connection(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to reuse (True), else a new one (False)."""
        with self._lock:
            idle = self._idle.get((scheme, netloc), [])
            while idle:
                conn = idle.pop()
                if not _dropped(conn):
                    return conn, True
                conn.close()
            if scheme == "https" and self._tls is None:
                self._tls = ssl.create_default_context()
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.connect_timeout, context=self._tls), False
        return http.client.HTTPConnection(netloc, timeout=self.connect_timeout), False

    def _release(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault((scheme, netloc), []).append(conn)

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, replay: bool = True) -> Response:
        """Send one request and read its whole response.

        A connection that fails before the request was sent is retried (up to `retries` times,
        backing off); one that fails after it was sent only when `replay` (a request the server
        may have acted on must not be sent twice: POSTs pass False)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TransportError(f"{url!r} is not an http or https URL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        all_headers = {**self.headers, **(headers or {})}
        attempt = 0
        while True:
            conn, reused = self._connection(parts.scheme, parts.netloc)
            sent = False
            try:
                if conn.sock is None:
                    conn.connect()
                conn.sock.settimeout(self.read_timeout)  # type: ignore[union-attr]
                conn.request(method, target, body=body, headers=all_headers)
                sent = True
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                attempt += 1
                if (sent and not replay) or attempt > self.retries or isinstance(e, ssl.SSLCertVerificationError):
                    raise TransportError(_reason(e)) from e
                if not reused:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if response.will_close:
                conn.close()
            else:
                self._release(parts.scheme, parts.netloc, conn)
            return Response(response.status, response.headers, data)

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ssl.SSLError):
        return f"TLS failed: {e.reason or e}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or type(e).__name__

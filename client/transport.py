"""A small HTTP/1.1 client on the standard library, for the metadata server's API and token realm.

The server client (`http.py`) and its token requests (`auth.py`) need little: a request, its
status, headers and body; keep-alive; connect and read timeouts; TLS with the system's CAs; and
a retry when a connection fails before the server could have acted. urllib3 does that and far
more, and importing it (or http.client, which loads the email package) is a large part of an
express publish, whose time is mostly start-up (docs/client.md, "Start-up cost"): the messages
are read and written by `http1.py`, and `ssl` is imported only for https. ngclient (refreshes)
and the registry client keep urllib3.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tufnotary.client.http1 import ProtocolError, Reader, Response, encode_request, read_response

if TYPE_CHECKING:
    import ssl

__all__ = ["Response", "Transport", "TransportError", "multipart"]


class TransportError(Exception):
    """A request that got no HTTP response; the message says why."""


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


class _Connection:
    """One client connection: a socket (TLS for https) and what has been received on it."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, timeout: float) -> None:
        # getaddrinfo encodes a str host with the idna codec (importing it and unicodedata) even when
        # it is ASCII, as an IP address or a plain DNS name is: those go as bytes.
        sock = socket.create_connection((host.encode() if host.isascii() else host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.reader = Reader(sock)

    def dropped(self) -> bool:
        """Whether an idle kept-alive connection was closed by the server (or has stray bytes)."""
        pending = getattr(self.sock, "pending", None)  # TLS: bytes decrypted but not yet read
        if self.reader.buffered or (pending is not None and pending()):
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


class Transport:
    """Keep-alive connections per scheme and host; safe to share between threads."""

    def __init__(self, connect_timeout: float = 5.0, read_timeout: float = 30.0, retries: int = 2,
                 backoff: float = 0.2, headers: dict[str, str] | None = None) -> None:
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.retries, self.backoff = retries, backoff
        self.headers = dict(headers or {})
        self._idle: dict[tuple[str, str], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def _idle_connection(self, key: tuple[str, str]) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                conn = idle.pop()
                if not conn.dropped():
                    return conn
                conn.close()
        return None

    def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        if scheme == "https" and self._tls is None:
            import ssl

            with self._lock:
                self._tls = self._tls or ssl.create_default_context()
        return _Connection(host, port, self._tls if scheme == "https" else None, self.connect_timeout)

    def _release(self, key: tuple[str, str], conn: _Connection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, replay: bool = True) -> Response:
        """Send one request and read its whole response.

        A connection that fails before the request was sent is retried (up to `retries` times,
        backing off); one that fails after it was sent only when `replay` (a request the server
        may have acted on must not be sent twice: POSTs pass False)."""
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port
        except ValueError as e:  # a port that is not a number
            raise TransportError(f"{url!r} is not a valid URL: {e}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise TransportError(f"{url!r} is not an http or https URL")
        port = port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        message = encode_request(method, target, parts.netloc.rpartition("@")[2],
                                 {**self.headers, **(headers or {})}, body)
        attempt = 0
        while True:
            conn = self._idle_connection(key)
            reused, sent = conn is not None, False
            try:
                if conn is None:
                    conn = self._connect(parts.scheme, host, port)
                conn.sock.settimeout(self.read_timeout)
                conn.sock.sendall(message)
                sent = True
                response = read_response(conn.reader, method)
            except (OSError, ProtocolError) as e:
                if conn is not None:
                    conn.close()
                attempt += 1
                if (sent and not replay) or attempt > self.retries or _tls_error(e, "SSLCertVerificationError"):
                    raise TransportError(_reason(e)) from e
                if not reused:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if response.keep_alive:
                self._release(key, conn)
            else:
                conn.close()
            return response

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()


def _tls_error(e: BaseException, kind: str = "SSLError") -> bool:
    """Whether `e` is one of ssl's errors named `kind` (ssl is imported for https only)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(e, getattr(ssl, kind))


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if _tls_error(e):
        return f"TLS failed: {getattr(e, 'reason', None) or e}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or type(e).__name__

"""HTTP/1.1 on one connection (RFC 9112): write a request, read its response.

`transport.py` needs only this much of HTTP: a request with a known-length body, and a response
framed by Content-Length, chunked coding or the connection's close, on a kept-alive connection.
http.client does it too, but importing it loads the email package and ssl: about a sixth of an
express publish's time, for a few dozen lines of parsing. The limits are http.client's: a line of
at most 64 KiB, at most 100 header fields. Everything else a server sends that this client does
not read (another transfer coding, a malformed length) is a `ProtocolError`, never a guess.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping

MAX_LINE = 65536
MAX_HEADERS = 100
_NO_BODY = frozenset((204, 304))


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.1 response this client reads; the message says why."""


class Headers:
    """A response's header fields, in order; `get` ignores case and answers the first, as
    http.client's `HTTPMessage` does."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        return next(self._values(name), default)

    def get_all(self, name: str) -> list[str]:
        return list(self._values(name))

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def _values(self, name: str) -> Iterator[str]:
        name = name.lower()
        return (value for field, value in self._fields if field.lower() == name)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class Reader:
    """Buffered reads from a socket: lines, exact lengths, or everything until the peer closes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return len(self._buffer)

    def _fill(self) -> bool:
        chunk = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def line(self) -> bytes:
        """One line with its line end, or b'' when the peer closed before sending any byte of it."""
        start = 0
        while (end := self._buffer.find(b"\n", start)) < 0:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolError(f"the server sent a line longer than {MAX_LINE} bytes")
            start = len(self._buffer)
            if not self._fill():
                if self._buffer:
                    raise ProtocolError("the server closed the connection in the middle of a line")
                return b""
        if end >= MAX_LINE:
            raise ProtocolError(f"the server sent a line longer than {MAX_LINE} bytes")
        line = bytes(self._buffer[:end + 1])
        del self._buffer[:end + 1]
        return line

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ProtocolError(
                    f"the server closed the connection {size - len(self._buffer)} bytes before the end of its answer"
                )
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def rest(self) -> bytes:
        """Everything until the peer closes the connection."""
        while self._fill():
            pass
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def encode_request(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The bytes of one request. Header names and values that would end a line or a name early
    are refused (ValueError), as http.client refuses them."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
            raise ValueError(f"{name!r} cannot be sent as an HTTP header field")
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Response:
    """A whole response: status, header fields, body, and whether the connection may carry another
    request."""

    def __init__(self, status: int, headers: Headers, data: bytes, keep_alive: bool) -> None:
        self.status, self.headers, self.data, self.keep_alive = status, headers, data, keep_alive


def read_response(reader: Reader, method: str) -> Response:
    """Read the final response to a `method` request (skipping 1xx interim responses)."""
    while True:
        version, status = _status_line(reader)
        headers = _header_fields(reader)
        if status >= 200:
            break
    tokens = {t.strip().lower() for t in ",".join(headers.get_all("Connection")).split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    if method == "HEAD" or status in _NO_BODY:
        return Response(status, headers, b"", keep_alive)
    codings = [t.strip().lower() for t in ",".join(headers.get_all("Transfer-Encoding")).split(",") if t.strip()]
    if codings:
        if codings != ["chunked"]:
            raise ProtocolError(f"the server sent a transfer coding this client does not read: {', '.join(codings)}")
        return Response(status, headers, _chunked(reader), keep_alive)
    lengths = {v.strip() for v in headers.get_all("Content-Length")}
    if lengths:
        length = lengths.pop()
        if lengths or not length.isdigit() or not length.isascii():
            raise ProtocolError("the server sent an invalid Content-Length")
        return Response(status, headers, reader.exactly(int(length)), keep_alive)
    return Response(status, headers, reader.rest(), False)


def _status_line(reader: Reader) -> tuple[str, int]:
    line = reader.line()
    if not line:
        raise ConnectionResetError("the server closed the connection without answering")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.0", "HTTP/1.1") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolError(f"the server's answer does not start with an HTTP/1.x status line: {line[:80]!r}")
    status = int(parts[1])
    if status < 100:
        raise ProtocolError(f"the server answered status {status}")
    return parts[0], status


def _header_fields(reader: Reader) -> Headers:
    fields: list[tuple[str, str]] = []
    while (line := reader.line()) not in (b"\r\n", b"\n"):
        if not line:
            raise ProtocolError("the server closed the connection in the middle of its header")
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and fields:  # an obsolete folded line continues the field before it
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"the server sent a malformed header line: {line[:80]!r}")
        if len(fields) >= MAX_HEADERS:
            raise ProtocolError(f"the server sent more than {MAX_HEADERS} header fields")
        fields.append((name, value.strip(" \t")))
    return Headers(fields)


def _chunked(reader: Reader) -> bytes:
    chunks = []
    while True:
        size_text = _line_of_body(reader).split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):  # 1*HEXDIG, no sign, prefix or _
            raise ProtocolError(f"the server sent an invalid chunk size: {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        chunks.append(reader.exactly(size))
        if _line_of_body(reader) not in (b"\r\n", b"\n"):
            raise ProtocolError("the server sent a chunk longer than its size")
    _header_fields(reader)  # trailer fields: read past, not used
    return b"".join(chunks)


def _line_of_body(reader: Reader) -> bytes:
    line = reader.line()
    if not line:
        raise ProtocolError("the server closed the connection before the end of its answer")
    return line

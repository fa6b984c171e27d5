"""HTTP/1.1 messages on a socket (client/http1.py): a response reads as http.client reads it, and
whatever this client does not read is refused with a ProtocolError, never guessed."""

from __future__ import annotations

import http.client
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tufnotary.client.http1 import MAX_HEADERS, MAX_LINE, ProtocolError, Reader, encode_request, read_response


def fed(data: bytes) -> socket.socket:
    """A socket that receives `data` and then the peer's close."""
    ours, theirs = socket.socketpair()
    theirs.sendall(data)
    theirs.close()
    return ours


def ours(data: bytes, method: str = "GET"):
    with fed(data) as sock:
        return read_response(Reader(sock), method)


def theirs(data: bytes, method: str = "GET") -> tuple[int, list[tuple[str, str]], bytes, bool]:
    with fed(data) as sock:
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response.status, response.getheaders(), response.read(), not response.will_close


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
VALUE = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30) | st.builds(
    lambda a, b: f"{a} {b}", TOKEN, TOKEN)
FRAMED = ("content-length", "transfer-encoding", "connection")


@st.composite
def responses(draw) -> tuple[bytes, str]:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    status = draw(st.integers(200, 599))
    method = draw(st.sampled_from(["GET", "POST", "HEAD"]))
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=6).filter(
        lambda fs: all(name.lower() not in FRAMED for name, _ in fs)))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    connection = draw(st.sampled_from([None, "close", "keep-alive", "Keep-Alive, Upgrade"]))
    if connection:
        fields.append(("Connection", connection))
    if status in (204, 304) or method == "HEAD":
        payload = b""
        if framing == "length":
            fields.append(("Content-Length", str(len(body))))
    elif framing == "length":
        fields.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        ext = draw(st.sampled_from(["", ";name=value"]))
        payload = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext.encode(), p) for p in pieces) + b"0\r\nX-Trailer: t\r\n\r\n"
    else:
        payload = body
    head = f"{version} {status} {draw(st.sampled_from(['OK', 'Some Reason', '']))}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields)
    return (head + "\r\n").encode() + payload, method


@settings(max_examples=300, deadline=None)
@given(responses())
def test_reads_every_response_as_http_client_does(case: tuple[bytes, str]) -> None:
    data, method = case
    expected = theirs(data, method)

    got = ours(data, method)

    assert (got.status, got.headers.items(), got.data, got.keep_alive) == expected


def test_interim_responses_are_skipped() -> None:
    got = ours(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
               b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
    assert (got.status, got.data, got.headers.get("link")) == (201, b"{}", None)


def test_headers_ignore_case_and_keep_every_value() -> None:
    got = ours(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=a\r\nwww-authenticate: Basic\r\n"
               b"Content-Length: 0\r\n\r\n")
    assert got.headers.get("Www-Authenticate") == "Bearer realm=a"
    assert got.headers.get_all("WWW-AUTHENTICATE") == ["Bearer realm=a", "Basic"]
    assert got.headers.get("Location", "none") == "none"


@pytest.mark.parametrize("data, reason", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nabc", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nabc", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "7 bytes before the end"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "transfer coding this client does not read"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "chunk longer than its size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "closed the connection"),
    (b"HTTP/2 200\r\n\r\n", "does not start with an HTTP/1.x status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "does not start with an HTTP/1.x status line"),
    (b"<html>hello</html>\r\n", "does not start with an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nName : value\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "in the middle of its header"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n", "line longer than"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", "more than 100 header fields"),
])
def test_what_it_does_not_read_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        ours(data)


def test_a_connection_closed_before_any_answer_is_a_reset() -> None:
    with pytest.raises(ConnectionResetError, match="without answering"):
        ours(b"")


def test_a_line_longer_than_the_limit_is_refused_before_it_is_all_read() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"HTTP/1.1 200 OK\r\nX: " + b"a" * (2 * MAX_LINE))  # no end of line: not closed either
        with pytest.raises(ProtocolError, match="line longer than"):
            read_response(Reader(left), "GET")


def test_request_bytes() -> None:
    assert encode_request("POST", "/v2/c/_trust/tuf/", "127.0.0.1:8080", {"Authorization": "Bearer t"}, b"{}") == (
        b"POST /v2/c/_trust/tuf/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept-Encoding: identity\r\n"
        b"Authorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert encode_request("POST", "/x", "h", {}, None).endswith(b"Content-Length: 0\r\n\r\n")
    assert b"Content-Length" not in encode_request("GET", "/x", "h", {}, None)


@pytest.mark.parametrize("name, value", [
    ("X-Evil", "a\r\nInjected: yes"), ("X-Evil\r\nInjected", "yes"), ("X:Evil", "yes"), ("", "yes"), ("X Y", "z"),
])
def test_header_fields_that_would_break_the_request_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="cannot be sent as an HTTP header field"):
        encode_request("GET", "/", "h", {name: value}, None)

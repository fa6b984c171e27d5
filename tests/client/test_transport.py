"""The standard-library HTTP client of the server API (client/transport.py): keep-alive, retries
only where the server cannot have acted, timeouts, and multipart bodies the server parses."""

from __future__ import annotations

import io
import ssl
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.formparser import parse_form_data

from tufnotary.client.transport import Transport, TransportError, multipart

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


class RawServer:
    """A loopback TCP server; `behave(conn, requests)` handles each accepted connection."""

    def __init__(self, behave: Callable[[socket.socket, list[bytes]], None]) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.handled = threading.Semaphore(0)  # released as each connection's handler returns
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._behave = behave
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        self._behave(conn, self.requests)
        self.handled.release()

    def close(self) -> None:
        self._sock.close()


def read_request(conn: socket.socket) -> bytes:
    """One request (headers and a Content-Length body), or b'' when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def keep_alive(conn: socket.socket, requests: list[bytes]) -> None:
    with conn:
        while request := read_request(conn):
            requests.append(request)
            conn.sendall(OK)


def one_response_then_close(conn: socket.socket, requests: list[bytes]) -> None:
    """Answers one request as if keeping the connection, then closes it (an idle timeout)."""
    with conn:
        requests.append(read_request(conn))
        conn.sendall(OK)


def read_then_drop(conn: socket.socket, requests: list[bytes]) -> None:
    """Reads the request, then closes without answering: the server may have acted on it."""
    with conn:
        requests.append(read_request(conn))


def never_answer(conn: socket.socket, requests: list[bytes]) -> None:
    requests.append(read_request(conn))
    threading.Event().wait(5)
    conn.close()


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("raw_server", [keep_alive], indirect=True)
def test_requests_share_one_kept_alive_connection(raw_server: RawServer) -> None:
    transport = Transport()
    for _ in range(3):
        assert transport.request("GET", raw_server.url + "/v2/").status == 200
    assert raw_server.connections == 1
    assert raw_server.requests[0].startswith(b"GET /v2/ HTTP/1.1\r\n")


@pytest.mark.parametrize("raw_server", [one_response_then_close], indirect=True)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_connection_the_server_closed_is_not_reused(raw_server: RawServer, method: str) -> None:
    transport = Transport(retries=0)  # no retry: the closed connection must be noticed before sending
    for _ in range(2):
        response = transport.request(method, raw_server.url + "/x", body=b"{}", replay=False)
        assert (response.status, response.data) == (200, b"{}")
        assert raw_server.handled.acquire(timeout=10)  # the server has closed the connection
    assert raw_server.connections == 2 and len(raw_server.requests) == 2


@pytest.mark.parametrize("raw_server", [read_then_drop], indirect=True)
def test_a_request_the_server_may_have_acted_on_is_sent_once_unless_replayable(raw_server: RawServer) -> None:
    transport = Transport(retries=2, backoff=0)
    with pytest.raises(TransportError):
        transport.request("POST", raw_server.url + "/upload", body=b"x", replay=False)
    assert len(raw_server.requests) == 1
    with pytest.raises(TransportError):
        transport.request("GET", raw_server.url + "/read")
    assert len(raw_server.requests) == 1 + 3  # the first try and two retries


def test_a_refused_connection_is_retried_then_explained() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed below: nothing listens there any more
    with pytest.raises(TransportError, match="connection refused"):
        Transport(retries=1, backoff=0).request("GET", f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize("raw_server", [never_answer], indirect=True)
def test_a_server_that_does_not_answer_times_out(raw_server: RawServer) -> None:
    with pytest.raises(TransportError, match="timed out"):
        Transport(read_timeout=0.3, retries=0).request("GET", raw_server.url + "/")


def test_only_http_urls_are_requested() -> None:
    with pytest.raises(TransportError, match="not an http or https URL"):
        Transport().request("GET", "file:///etc/passwd")


def test_multipart_body_is_what_the_server_parses() -> None:
    fields = {"targets": ("targets.json", b'{"signed": 1}', "application/json"),
              "bins-0a": ("bins-0a.json", b"\r\n--binary\x00\xff", "application/json")}
    body, content_type = multipart(fields)
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}

    _, _, files = parse_form_data(environ)

    assert {name: (f.filename, f.read(), f.mimetype) for name, f in files.items()} == fields


def test_multipart_refuses_names_that_would_break_its_headers() -> None:
    with pytest.raises(ValueError, match="cannot be a multipart field name"):
        multipart({'role"; name="root': ("x.json", b"{}", "application/json")})


@pytest.fixture
def https_server(tmp_path) -> Iterator[tuple[str, Path, list[int]]]:
    """An HTTPS server on loopback with a certificate of a throwaway CA: (URL, CA file, handshakes)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tufnotary.signer.certs import write_dev_certs

    certs = write_dev_certs(tmp_path / "certs")
    handshakes: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps connections alive

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    class TLSServer(ThreadingHTTPServer):
        def get_request(self):  # type: ignore[no-untyped-def]
            sock, address = super().get_request()
            handshakes.append(1)
            return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.signer_cert, certs.signer_key)
    httpd = TLSServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}/v2/", certs.ca_cert, handshakes
    httpd.shutdown()
    httpd.server_close()


def test_tls_trusts_the_ca_the_environment_names(https_server, monkeypatch) -> None:
    url, ca, _ = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    response = Transport().request("GET", url)
    assert (response.status, response.data) == (200, b"{}")


def test_tls_connections_are_kept_alive_between_requests(https_server, monkeypatch) -> None:
    url, ca, handshakes = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    transport = Transport()

    answers = [transport.request("GET", url) for _ in range(3)]

    assert [(a.status, a.data) for a in answers] == [(200, b"{}")] * 3
    assert len(handshakes) == 1


def test_tls_refuses_a_server_no_trusted_ca_vouches_for_without_retrying(https_server, monkeypatch) -> None:
    url, _, handshakes = https_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(TransportError, match="TLS failed: CERTIFICATE_VERIFY_FAILED"):
        Transport(retries=2, backoff=0).request("GET", url)
    assert len(handshakes) == 1


def test_an_internationalised_host_name_is_resolved_not_refused() -> None:
    # ASCII hosts go to getaddrinfo as bytes; others keep str so that it IDNA-encodes them. No DNS
    # here: the lookup fails, and says so, rather than the name being refused as not ASCII.
    with pytest.raises(TransportError) as e:
        Transport(retries=0).request("GET", "http://bücher.invalid/")
    assert not isinstance(e.value.__cause__, UnicodeError)

"""Talk to the real server the way an independent publisher and python-tuf's ngclient do."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from securesystemslib.signer import SSlibKey
from tuf.ngclient import Updater, UpdaterConfig

from tests.tuf_factory import CollectionFactory


def online_key(stack, collection: str, role: str) -> SSlibKey:
    with urllib.request.urlopen(stack.base(collection) + f"{role}.key", timeout=10) as r:
        body = json.load(r)
    return SSlibKey.from_dict(body.pop("keyid"), body)


def new_collection(stack, collection: str) -> CollectionFactory:
    """A publisher whose root lists the server's online keys, with version 1 published."""
    repo = CollectionFactory(online_keys={r: online_key(stack, collection, r) for r in ("timestamp", "snapshot")})
    post(stack, collection, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    return repo


def post(stack, collection: str, files: dict[str, bytes]) -> dict:
    """Publish; raise urllib.error.HTTPError on refusal."""
    boundary = "tufnotary-test-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{role}"; filename="{role}.json"\r\n'
        f"Content-Type: application/json\r\n\r\n".encode() + data + b"\r\n"
        for role, data in files.items()
    ) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        stack.base(collection), data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.load(r)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def updater(base_url: str, root: bytes, workdir: Path, target_url: str | None = None) -> Updater:
    """A python-tuf ngclient Updater (used directly, not through our client) with its own cache dir."""
    metadata_dir = workdir / "client-metadata"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    (workdir / "client-targets").mkdir(exist_ok=True)
    return Updater(
        str(metadata_dir), base_url, str(workdir / "client-targets"), target_url,
        config=UpdaterConfig(prefix_targets_with_hash=False), bootstrap=root,
    )


@contextmanager
def static_files(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on loopback (targets are not hosted by our server)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        proxy: MitmProxy = self.server.proxy  # type: ignore[attr-defined]
        name = self.path.rsplit("/", 1)[-1]
        if name in proxy.overrides:
            status, body = 200, proxy.overrides[name]
        else:
            try:
                status, body = 200, get(proxy.upstream + self.path)
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class MitmProxy:
    """A network attacker between client and server: forwards, or serves chosen bytes for a file name."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.overrides: dict[str, bytes] = {}
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._httpd.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

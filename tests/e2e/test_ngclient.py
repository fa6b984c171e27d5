"""python-tuf's own ngclient.Updater (not our wrapper) against the real server process."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import urllib.request
from pathlib import Path

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.ngclient import Updater, UpdaterConfig

from tests.tuf_factory import CollectionFactory


def online_key(stack, collection: str, role: str) -> SSlibKey:
    with urllib.request.urlopen(stack.base(collection) + f"{role}.key", timeout=10) as r:
        body = json.load(r)
    return SSlibKey.from_dict(body.pop("keyid"), body)


def post(stack, collection: str, files: dict[str, bytes]) -> dict:
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
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


@pytest.fixture
def target_server(tmp_path):
    """A plain static file server for target bytes (our server hosts metadata only)."""
    root = tmp_path / "targets-served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def updater_for(stack, collection, root_bytes: bytes, tmp_path: Path, target_url: str) -> Updater:
    metadata_dir = tmp_path / "client-metadata"
    metadata_dir.mkdir(exist_ok=True)
    return Updater(
        str(metadata_dir),
        stack.base(collection),
        str(tmp_path / "client-targets"),
        target_url,
        config=UpdaterConfig(prefix_targets_with_hash=False),
        bootstrap=root_bytes,
    )


def test_ngclient_refreshes_and_accepts_then_refuses_altered_bytes(stack, collection, tmp_path, target_server):
    served, target_url = target_server
    (tmp_path / "client-targets").mkdir()
    repo = CollectionFactory(online_keys={r: online_key(stack, collection, r) for r in ("timestamp", "snapshot")})
    root = repo.sign("root")
    assert post(stack, collection, {"root": root, "targets": repo.sign("targets")})["versions"]["timestamp"] == 1

    payload = b"net-monitor v1.0 image bytes"
    repo.add_target("net-monitor-1.0.tar", payload)
    repo.bump("targets")
    assert post(stack, collection, {"targets": repo.sign("targets")})["versions"]["snapshot"] == 2

    (served / "net-monitor-1.0.tar").write_bytes(payload)
    updater = updater_for(stack, collection, root, tmp_path, target_url)
    updater.refresh()
    info = updater.get_targetinfo("net-monitor-1.0.tar")
    assert info is not None and info.length == len(payload)
    path = updater.download_target(info)
    assert Path(path).read_bytes() == payload
    assert updater.get_targetinfo("not-signed.tar") is None

    (served / "net-monitor-1.0.tar").write_bytes(b"net-monitor v1.0 image bytEs")  # same length, other bytes
    Path(path).unlink()
    fresh = updater_for(stack, collection, root, tmp_path, target_url)
    fresh.refresh()
    with pytest.raises(LengthOrHashMismatchError):
        fresh.download_target(fresh.get_targetinfo("net-monitor-1.0.tar"))


def test_ngclient_walks_a_root_rotation(stack, collection, tmp_path):
    repo = CollectionFactory(online_keys={r: online_key(stack, collection, r) for r in ("timestamp", "snapshot")})
    first_root = repo.sign("root")
    post(stack, collection, {"root": first_root, "targets": repo.sign("targets")})
    old = repo.signers["root"]
    repo.rotate("root")
    repo.bump("root")
    repo.add_target("after-rotation", b"x")
    repo.bump("targets")
    post(stack, collection, {"root": repo.sign("root", signers=old + repo.signers["root"]), "targets": repo.sign("targets")})

    updater = updater_for(stack, collection, first_root, tmp_path, "http://127.0.0.1:9/")
    updater.refresh()
    assert updater.get_targetinfo("after-rotation") is not None
    assert json.loads((tmp_path / "client-metadata" / "root.json").read_bytes())["signed"]["version"] == 2

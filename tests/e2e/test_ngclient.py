"""python-tuf's own ngclient.Updater (not our wrapper) against the real server process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tuf.api.exceptions import LengthOrHashMismatchError

from tests.e2e.tuf_http import new_collection, post, static_files, updater


def test_ngclient_refreshes_and_accepts_then_refuses_altered_bytes(stack, collection, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    repo = new_collection(stack, collection)
    root = repo.sign("root")
    payload = b"net-monitor v1.0 image bytes"
    repo.add_target("net-monitor-1.0.tar", payload)
    repo.bump("targets")
    assert post(stack, collection, {"targets": repo.sign("targets")})["versions"]["snapshot"] == 2

    (served / "net-monitor-1.0.tar").write_bytes(payload)
    with static_files(served) as target_url:
        client = updater(stack.base(collection), root, tmp_path / "a", target_url)
        client.refresh()
        info = client.get_targetinfo("net-monitor-1.0.tar")
        assert info is not None and info.length == len(payload)
        assert Path(client.download_target(info)).read_bytes() == payload
        assert client.get_targetinfo("not-signed.tar") is None

        (served / "net-monitor-1.0.tar").write_bytes(b"net-monitor v1.0 image bytEs")  # same length
        fresh = updater(stack.base(collection), root, tmp_path / "b", target_url)
        fresh.refresh()
        with pytest.raises(LengthOrHashMismatchError):
            fresh.download_target(fresh.get_targetinfo("net-monitor-1.0.tar"))


def test_ngclient_walks_a_root_rotation(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    first_root = repo.sign("root")
    old = repo.signers["root"]
    repo.rotate("root")
    repo.bump("root")
    repo.add_target("after-rotation", b"x")
    repo.bump("targets")
    post(stack, collection, {"root": repo.sign("root", signers=old + repo.signers["root"]), "targets": repo.sign("targets")})

    client = updater(stack.base(collection), first_root, tmp_path)
    client.refresh()
    assert client.get_targetinfo("after-rotation") is not None
    assert json.loads((tmp_path / "client-metadata" / "root.json").read_bytes())["signed"]["version"] == 2

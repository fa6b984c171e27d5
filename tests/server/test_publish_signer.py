"""What a publish asks of the signer: its keys of the collection once (while the upload is read and
validated), then one signature per online role; nothing signed when the root refuses either key."""

from __future__ import annotations

import pytest

from tests.server.test_api import COLLECTION, error_code, online_key, upload
from tests.tuf_factory import CollectionFactory


@pytest.fixture
def signer_calls(app, monkeypatch) -> list[str]:
    """The signer methods the app calls from now on, in order (every call goes through `_call`)."""
    signer = app.extensions["tufnotary"].signer
    calls: list[str] = []
    real = signer._call
    monkeypatch.setattr(signer, "_call", lambda method, request: (calls.append(method), real(method, request))[1])
    return calls


def test_publish_lists_keys_once_then_signs_snapshot_and_timestamp(http, signer_calls):
    repo = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    signer_calls.clear()
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    assert response.status_code == 200, response.json
    assert signer_calls == ["ListKeys", "Sign", "Sign"]


def test_uploaded_snapshot_leaves_only_the_timestamp_to_sign(http, signer_calls):
    repo = CollectionFactory(online_keys={"timestamp": online_key(http, "timestamp")})
    repo.snapshot_for({"targets": 1})
    signer_calls.clear()
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets"), "snapshot": repo.sign("snapshot")})
    assert response.status_code == 200, response.json
    assert signer_calls == ["ListKeys", "Sign"]


def test_a_root_without_the_timestamp_key_gets_nothing_signed(http, store, running_signer, signer_calls):
    repo = CollectionFactory(online_keys={"snapshot": online_key(http, "snapshot")})
    signer_calls.clear()
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    assert (response.status_code, error_code(response)) == (400, "ONLINE_KEY_MISMATCH")
    assert "timestamp.key" in response.json["errors"][0]["message"]
    assert signer_calls == ["ListKeys"]
    assert store.current(COLLECTION) == {}
    assert [k.max_signed_version for k in running_signer.keystore.list_keys(COLLECTION)] == [0]


def test_an_invalid_upload_is_refused_before_the_signer_is_waited_for(http, store, signer_calls):
    repo = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    signer_calls.clear()
    response = upload(http, {"targets": repo.sign("targets")})  # no root: the collection does not exist
    assert (response.status_code, error_code(response)) == (400, "ROLE_MISSING")
    assert "Sign" not in signer_calls
    assert store.current(COLLECTION) == {}

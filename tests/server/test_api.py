"""The HTTP API through Flask's test client, over a real SQLite store and a real mTLS signer."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata

from tests.tuf_factory import CollectionFactory, new_signer

COLLECTION = "wabbit-networks/net-monitor"
BASE = f"/v2/{COLLECTION}/_trust/tuf/"


def online_key(http, role: str, collection: str = COLLECTION) -> SSlibKey:
    response = http.get(f"/v2/{collection}/_trust/tuf/{role}.key")
    assert response.status_code == 200, response.json
    body = response.json
    return SSlibKey.from_dict(body.pop("keyid"), body)


def upload(http, files: dict[str, bytes], collection: str = COLLECTION):
    data = {role: (io.BytesIO(content), f"{role}.json") for role, content in files.items()}
    return http.post(f"/v2/{collection}/_trust/tuf/", data=data, content_type="multipart/form-data")


def error_code(response) -> str:
    body = response.json
    assert set(body["errors"][0]) == {"code", "message", "detail"}
    return body["errors"][0]["code"]


@pytest.fixture
def repo(http) -> CollectionFactory:
    return CollectionFactory(
        online_keys={role: online_key(http, role) for role in ("timestamp", "snapshot")}
    )


@pytest.fixture
def published(http, repo) -> CollectionFactory:
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    assert response.status_code == 200, response.json
    return repo


def test_ping(http):
    response = http.get("/v2/")
    assert (response.status_code, response.json) == (200, {})


def test_online_key_is_stable(http):
    assert online_key(http, "timestamp").keyid == online_key(http, "timestamp").keyid
    assert online_key(http, "timestamp").keyid != online_key(http, "snapshot").keyid


def test_first_publish_generates_snapshot_and_timestamp(http, repo):
    root, targets = repo.sign("root"), repo.sign("targets")
    response = upload(http, {"root": root, "targets": targets})
    assert response.status_code == 200
    assert response.json["versions"] == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert http.get(BASE + "root.json").data == root
    assert http.get(BASE + "1.root.json").data == root
    assert http.get(BASE + "1.targets.json").data == targets
    # the generated roles verify against the uploaded root
    root_md = Metadata.from_bytes(root)
    snapshot = Metadata.from_bytes(http.get(BASE + "1.snapshot.json").data)
    timestamp = Metadata.from_bytes(http.get(BASE + "timestamp.json").data)
    root_md.signed.verify_delegate("snapshot", snapshot.signed_bytes, snapshot.signatures)
    root_md.signed.verify_delegate("timestamp", timestamp.signed_bytes, timestamp.signatures)
    assert snapshot.signed.meta["targets.json"].version == 1
    assert timestamp.signed.snapshot_meta.version == 1


def test_cache_headers_and_etag(http, published):
    versioned = http.get(BASE + "1.root.json")
    assert "immutable" in versioned.headers["Cache-Control"]
    current = http.get(BASE + "timestamp.json")
    assert current.headers["Cache-Control"] == "no-cache"
    again = http.get(BASE + "timestamp.json", headers={"If-None-Match": current.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_second_publish_bumps_online_roles(http, published):
    published.add_target("app.tar.gz", b"app")
    published.bump("targets")
    response = upload(http, {"targets": published.sign("targets")})
    assert response.json["versions"] == {"targets": 2, "snapshot": 2, "timestamp": 2}
    assert http.get(BASE + "1.targets.json").status_code == 200
    snapshot = Metadata.from_bytes(http.get(BASE + "2.snapshot.json").data)
    assert snapshot.signed.meta["targets.json"].version == 2


def test_delegated_role_is_served_under_quoted_name(http, published):
    published.delegate("releases/stable", ["releases/*"])
    published.add_target("releases/app", b"a", role="releases/stable")
    published.bump("targets")
    response = upload(http, {"targets": published.sign("targets"), "releases/stable": published.sign("releases/stable")})
    assert response.status_code == 200, response.json
    # python-tuf's ngclient quotes the role name: 1.releases%2Fstable.json
    assert http.get(BASE + "1.releases%2Fstable.json").status_code == 200


def _state(store) -> dict:
    return {role: (f.version, f.data) for role, f in store.current(COLLECTION).items()}


REFUSALS = {
    "bad signature": (lambda r: r.sign("targets", signers=[new_signer()]), 400, "SIGNATURE_INVALID"),
    "lower version": (lambda r: r.sign("targets"), 409, "VERSION_CONFLICT"),
    "malformed json": (lambda r: b'{"signed": ', 400, "METADATA_MALFORMED"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_leave_stored_metadata_unchanged(http, store, published, case):
    make, status, code = REFUSALS[case]
    if case != "lower version":
        published.bump("targets")
    before = _state(store)
    response = upload(http, {"targets": make(published)})
    assert response.status_code == status
    assert error_code(response) == code
    assert response.json["errors"][0]["message"]
    assert _state(store) == before


def test_expired_refused_and_unchanged(http, store, published):
    published.bump("targets")
    published.md("targets").signed.expires = published.now - timedelta(days=1)
    before = _state(store)
    response = upload(http, {"targets": published.sign("targets")})
    assert (response.status_code, error_code(response)) == (400, "METADATA_EXPIRED")
    assert _state(store) == before


def test_root_without_server_keys_refused(http, store):
    repo = CollectionFactory()  # lists its own timestamp/snapshot keys, not the signer's
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    assert (response.status_code, error_code(response)) == (400, "ONLINE_KEY_MISMATCH")
    assert "snapshot.key" in response.json["errors"][0]["message"]
    assert store.current(COLLECTION) == {}


def test_upload_too_large(http, store, published):
    before = _state(store)
    response = upload(http, {"targets": b" " * (2 * 1024 * 1024)})
    assert (response.status_code, error_code(response)) == (413, "UPLOAD_TOO_LARGE")
    assert _state(store) == before


def test_duplicate_role_parts_refused(http, store, published):
    data = [("targets", (io.BytesIO(b"{}"), "a.json")), ("targets", (io.BytesIO(b"{}"), "b.json"))]
    before = _state(store)
    response = http.post(BASE, data={"targets": [d[1] for d in data]}, content_type="multipart/form-data")
    assert (response.status_code, error_code(response)) == (400, "ROLE_INVALID")
    assert _state(store) == before


@pytest.mark.parametrize("name", ["Upper/case", "a//b", "-a", "a" * 256, "a/_trust"])
def test_invalid_collection_names(http, store, name):
    response = http.get(f"/v2/{name}/_trust/tuf/root.json")
    assert response.status_code in (400, 404)
    assert error_code(response) in ("NAME_INVALID", "METADATA_NOT_FOUND")
    assert store.collections() == []


def test_missing_metadata_is_404(http, published):
    for path in ("9.root.json", "nothing.json", "root.txt"):
        response = http.get(BASE + path)
        assert (response.status_code, error_code(response)) == (404, "METADATA_NOT_FOUND")
    assert error_code(http.get("/v2/other/_trust/tuf/root.json")) == "METADATA_NOT_FOUND"


def test_delete_collection(http, store, running_signer, published):
    response = http.delete(BASE)
    assert response.status_code == 200
    assert store.current(COLLECTION) == {}
    assert running_signer.keystore.list_keys(COLLECTION) == []
    assert http.delete(BASE).status_code == 404


def test_recreated_collection_starts_fresh(http, published):
    published.bump("targets")
    for _ in range(3):
        published.bump("targets")
        assert upload(http, {"targets": published.sign("targets")}).status_code == 200
    assert http.delete(BASE).status_code == 200
    again = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    response = upload(http, {"root": again.sign("root"), "targets": again.sign("targets")})
    assert response.status_code == 200, response.json
    assert response.json["versions"]["timestamp"] == 1


def test_delete_with_signer_down_deletes_nothing(http, store, published, running_signer):
    from tests.signer.harness import remote_signer

    before = _state(store)
    http.application.extensions["tufnotary"].signer = remote_signer("127.0.0.1:1", running_signer.certs, timeout=1.0)
    response = http.delete(BASE)
    assert (response.status_code, error_code(response)) == (503, "SIGNER_UNAVAILABLE")
    assert _state(store) == before
    assert running_signer.keystore.list_keys(COLLECTION) != []


def test_signer_down_is_503_and_nothing_stored(http, store, published, running_signer):
    published.bump("targets")
    before = _state(store)
    from tests.signer.harness import remote_signer

    app_signer = http.application.extensions["tufnotary"]
    app_signer.signer = remote_signer("127.0.0.1:1", running_signer.certs, timeout=1.0)
    response = upload(http, {"targets": published.sign("targets")})
    assert (response.status_code, error_code(response)) == (503, "SIGNER_UNAVAILABLE")
    assert _state(store) == before


def test_unknown_route_is_json_404(http):
    response = http.get("/nope")
    assert response.status_code == 404
    assert json.loads(response.data)["errors"][0]["code"] == "NOT_FOUND"


def test_rotating_a_server_managed_key(http, store, published):
    old = online_key(http, "timestamp")
    response = http.post(BASE + "timestamp.key")
    assert response.status_code == 200 and response.json["state"] == "pending"
    new_id = response.json["keyid"]
    assert new_id != old.keyid
    assert online_key(http, "timestamp").keyid == old.keyid  # still the current key

    # a publish under the old root keeps working with the old key
    published.bump("targets")
    assert upload(http, {"targets": published.sign("targets")}).status_code == 200
    assert Metadata.from_bytes(store.get(COLLECTION, "timestamp").data).signatures.keys() == {old.keyid}

    body = dict(response.json)
    body.pop("state")
    new_key = SSlibKey.from_dict(body.pop("keyid"), body)
    published.set_online_key("timestamp", new_key)
    published.bump("root")
    response = upload(http, {"root": published.sign("root")})
    assert response.status_code == 200, response.json
    timestamp = Metadata.from_bytes(store.get(COLLECTION, "timestamp").data)
    assert set(timestamp.signatures) == {new_id}
    assert online_key(http, "timestamp").keyid == new_id  # the first signature promoted it


def test_rotating_needs_an_existing_key(http):
    response = http.post("/v2/never/created/_trust/tuf/snapshot.key")
    assert (response.status_code, error_code(response)) == (404, "METADATA_NOT_FOUND")
    assert http.post(BASE + "root.key").status_code in (404, 405)

"""One test per attack from issue 3, through the HTTP API over a real store and mTLS signer.

Each fails if the server accepts: it asserts the refusal code AND that stored metadata is unchanged.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
from securesystemslib.signer import SSlibKey

from tests.server.test_api import BASE, COLLECTION, error_code, online_key, upload
from tests.tuf_factory import CollectionFactory, new_signer


@pytest.fixture
def repo(http) -> CollectionFactory:
    repo = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    assert upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")}).status_code == 200
    repo.add_target("app", b"v1")
    repo.bump("targets")
    assert upload(http, {"targets": repo.sign("targets")}).status_code == 200
    return repo


def _forged(repo):
    repo.bump("targets")
    raw = json.loads(repo.sign("targets"))
    raw["signatures"][0]["sig"] = "00" * 64
    return {"targets": json.dumps(raw).encode()}


def _other_role_key(repo):
    repo.bump("targets")
    return {"targets": repo.sign("targets", signers=repo.signers["root"])}


def _duplicate_signatures(repo):
    repo.root.signed.add_key(new_signer().public_key, "targets")
    repo.root.signed.roles["targets"].threshold = 2
    repo.bump("root")
    repo.bump("targets")
    raw = json.loads(repo.sign("targets"))
    raw["signatures"] *= 2
    return {"root": repo.sign("root"), "targets": json.dumps(raw).encode()}


def _rotation_without_old_root(repo):
    repo.rotate("root")
    repo.bump("root")
    return {"root": repo.sign("root")}


def _root_jump(repo):
    repo.root.signed.version = 3
    return {"root": repo.sign("root")}


def _rollback(repo):
    repo.md("targets").signed.version = 1
    return {"targets": repo.sign("targets")}


def _replay(repo, old: dict):
    return {"targets": old["targets"]}


def _outside_paths(repo):
    repo.delegate("releases", ["releases/*"])
    repo.add_target("bin/evil", b"x", role="releases")
    repo.bump("targets")
    return {"targets": repo.sign("targets"), "releases": repo.sign("releases")}


def _undeclared(repo):
    repo.delegate("shadow", ["*"])
    repo.md("targets").signed.delegations = None
    return {"shadow": repo.sign("shadow")}


def _expired(repo):
    from datetime import timedelta

    repo.bump("targets")
    repo.md("targets").signed.expires = repo.now - timedelta(minutes=1)
    return {"targets": repo.sign("targets")}


def _keyid_mismatch(repo):
    key = repo.signers["targets"][0].public_key
    del repo.root.signed.keys[key.keyid]
    repo.root.signed.roles["targets"].keyids = ["ff" * 32]
    repo.root.signed.keys["ff" * 32] = SSlibKey("ff" * 32, key.keytype, key.scheme, key.keyval)
    repo.bump("root")
    return {"root": repo.sign("root")}


def _version_true(repo):
    raw = json.loads(repo.sign("targets"))
    raw["signed"]["version"] = True
    return {"targets": json.dumps(raw).encode()}


def _duplicate_json_keys(repo):
    repo.bump("targets")
    data = repo.sign("targets").decode()
    return {"targets": data.replace('"version":3', '"version":3,"version":99', 1).encode()}


def _deeply_nested(repo):
    return {"targets": b'{"signed":' + b"[" * 50_000 + b"]" * 50_000 + b"}"}


def _non_utf8(repo):
    return {"targets": b'{"signed": "\xff\xfe\xfd"}'}


ATTACKS: dict[str, tuple[Callable, int, str]] = {
    "forged signature": (_forged, 400, "SIGNATURE_INVALID"),
    "signature by a key of another role": (_other_role_key, 400, "SIGNATURE_INVALID"),
    "threshold met only by duplicate signatures": (_duplicate_signatures, 400, "METADATA_MALFORMED"),
    "root rotation not signed by the old root": (_rotation_without_old_root, 400, "SIGNATURE_INVALID"),
    "root version jump": (_root_jump, 400, "VERSION_INVALID"),
    "rollback of targets": (_rollback, 409, "VERSION_CONFLICT"),
    "delegated role signing outside its paths": (_outside_paths, 400, "ROLE_INVALID"),
    "delegation to an undeclared role": (_undeclared, 400, "ROLE_INVALID"),
    "expired metadata": (_expired, 400, "METADATA_EXPIRED"),
    "keyid not matching its key": (_keyid_mismatch, 400, "METADATA_MALFORMED"),
    "version true": (_version_true, 400, "METADATA_MALFORMED"),
    "duplicate keys in JSON": (_duplicate_json_keys, 400, "METADATA_MALFORMED"),
    "deeply nested JSON": (_deeply_nested, 400, "METADATA_MALFORMED"),
    "non-UTF-8 bytes": (_non_utf8, 400, "METADATA_MALFORMED"),
}


def _stored(store) -> dict:
    return {role: (f.version, f.data) for role, f in store.current(COLLECTION).items()}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_refused_and_nothing_changed(http, store, repo, attack):
    make, status, code = ATTACKS[attack]
    files = make(repo)
    before = _stored(store)
    response = upload(http, files)
    assert response.status_code == status, response.json
    assert error_code(response) == code
    assert _stored(store) == before


def test_replay_of_an_old_validly_signed_file(http, store, repo):
    old_targets = http.get(BASE + "1.targets.json").data
    before = _stored(store)
    response = upload(http, {"targets": old_targets})
    assert (response.status_code, error_code(response)) == (409, "VERSION_CONFLICT")
    assert _stored(store) == before


@pytest.mark.parametrize("role", ["..", "a/../b", "a%2F..", "a\x00b", "r" * 300, "timestamp"])
def test_hostile_role_names_in_uploads(http, store, repo, role):
    before = _stored(store)
    data = {role: (io.BytesIO(repo.sign("targets")), "x.json")}
    response = http.post(BASE, data=data, content_type="multipart/form-data")
    assert (response.status_code, error_code(response)) == (400, "ROLE_INVALID")
    assert _stored(store) == before


@pytest.mark.parametrize("path", ["..%2F..%2Fetc%2Fpasswd.json", "1.%2E%2E.json", "a%00b.json", "r" * 300 + ".json"])
def test_hostile_role_names_in_reads(http, repo, path):
    response = http.get(BASE + path)
    assert response.status_code in (400, 404)
    assert error_code(response) in ("ROLE_INVALID", "METADATA_NOT_FOUND")


def test_file_larger_than_a_client_accepts(http, store, repo):
    before = _stored(store)
    response = upload(http, {"root": b" " * 600_000})
    assert (response.status_code, error_code(response)) == (413, "UPLOAD_TOO_LARGE")
    assert response.json["errors"][0]["detail"] == {"role": "root", "limit": 512_000}
    assert _stored(store) == before

"""validate_update: the pure gate. Each test feeds stored and uploaded bytes, no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.tuf_factory import NOW, CollectionFactory, new_signer
from tufnotary.server.errors import (
    BadRoleError,
    BadSignatureError,
    BadVersionError,
    ExpiredMetadataError,
    MalformedMetadataError,
    MissingRoleError,
    VersionConflictError,
)
from tufnotary.server import validation
from tufnotary.server.validation import ValidationPolicy, _loads_without_duplicate_keys, _reject_duplicate_keys


@dataclass(frozen=True)
class Stored:
    version: int
    data: bytes


def validate_update(current: dict[str, bytes], uploads: dict[str, bytes], now, policy=ValidationPolicy()):
    """The function under test, fed a stored state of raw bytes."""
    stored = {role: Stored(json.loads(data)["signed"]["version"], data) for role, data in current.items()}
    return validation.validate_update(stored, uploads, now, policy)


def accept(current: dict[str, bytes], uploads: dict[str, bytes]) -> dict[str, bytes]:
    """Validate, then return the stored state a successful publish would leave (snapshot faked)."""
    update = validate_update(current, uploads, NOW)
    state = {**current, **uploads}
    fake = CollectionFactory(now=NOW)
    fake.snapshot.signed.version = update.snapshot_version + 1
    state["snapshot"] = fake.sign("snapshot", signers=[])
    return state


@pytest.fixture
def repo() -> CollectionFactory:
    return CollectionFactory(now=NOW)


@pytest.fixture
def published(repo) -> dict[str, bytes]:
    return accept({}, {"root": repo.sign("root"), "targets": repo.sign("targets")})


def test_first_publish_accepted(repo):
    update = validate_update({}, {"root": repo.sign("root"), "targets": repo.sign("targets")}, NOW)
    assert set(update.uploaded) == {"root", "targets"}
    assert update.targets_versions == {"targets": 1}
    assert (update.snapshot_version, update.timestamp_version) == (0, 0)


def test_first_publish_needs_root(repo):
    with pytest.raises(MissingRoleError, match="first publish must include root"):
        validate_update({}, {"targets": repo.sign("targets")}, NOW)


def test_first_publish_needs_targets(repo):
    with pytest.raises(MissingRoleError, match="no targets"):
        validate_update({}, {"root": repo.sign("root")}, NOW)


def test_first_root_must_be_version_1(repo):
    repo.bump("root")
    with pytest.raises(BadVersionError, match="must be version 1"):
        validate_update({}, {"root": repo.sign("root"), "targets": repo.sign("targets")}, NOW)


def test_nothing_uploaded_refused():
    with pytest.raises(MalformedMetadataError, match="nothing to publish"):
        validate_update({}, {}, NOW)


def test_new_targets_version_accepted(repo, published):
    repo.add_target("app.tar.gz", b"payload")
    repo.bump("targets")
    update = validate_update(published, {"targets": repo.sign("targets")}, NOW)
    assert update.targets_versions == {"targets": 2}
    assert update.snapshot_version == 1


@pytest.mark.parametrize("version", [2, 1])
def test_targets_version_must_increase(repo, published, version):
    repo.bump("targets")
    state = accept(published, {"targets": repo.sign("targets")})
    repo.md("targets").signed.version = version
    with pytest.raises(VersionConflictError, match="not greater than the stored version 2"):
        validate_update(state, {"targets": repo.sign("targets")}, NOW)


def test_replay_of_old_validly_signed_file(repo, published):
    old_targets = published["targets"]
    repo.bump("targets")
    state = accept(published, {"targets": repo.sign("targets")})
    with pytest.raises(VersionConflictError):
        validate_update(state, {"targets": old_targets}, NOW)


def test_targets_signed_by_wrong_key(repo, published):
    repo.bump("targets")
    with pytest.raises(BadSignatureError, match="signed by 0 of the 1 keys root requires"):
        validate_update(published, {"targets": repo.sign("targets", signers=[new_signer()])}, NOW)


def test_targets_signed_by_key_of_another_role(repo, published):
    repo.bump("targets")
    with pytest.raises(BadSignatureError):
        validate_update(published, {"targets": repo.sign("targets", signers=repo.signers["root"])}, NOW)


def test_forged_signature(repo, published):
    repo.bump("targets")
    data = json.loads(repo.sign("targets"))
    sig = data["signatures"][0]["sig"]
    data["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    with pytest.raises(BadSignatureError):
        validate_update(published, {"targets": json.dumps(data).encode()}, NOW)


def test_tampered_signed_content(repo, published):
    repo.bump("targets")
    data = json.loads(repo.sign("targets"))
    data["signed"]["targets"]["evil"] = {"length": 1, "hashes": {"sha256": "00" * 32}}
    with pytest.raises(BadSignatureError):
        validate_update(published, {"targets": json.dumps(data).encode()}, NOW)


def test_expired_refused(repo, published):
    repo.bump("targets")
    repo.md("targets").signed.expires = NOW - timedelta(seconds=1)
    with pytest.raises(ExpiredMetadataError, match="targets expired at"):
        validate_update(published, {"targets": repo.sign("targets")}, NOW)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[]", "no 'signed' object"),
        (b'{"signed": {"_type": "targets", "version": true}, "signatures": []}', "integer >= 1"),
        (b'{"signed": {"_type": "targets", "version": 2.0}, "signatures": []}', "integer >= 1"),
        (b'{"signed": {"_type": "targets", "version": 0}, "signatures": []}', "integer >= 1"),
        (b'{"signed": {"_type": "targets", "version": 2, "version": 3}, "signatures": []}',
         "duplicate JSON object key 'version'"),
        # compact and sorted, as our client writes, with the same key and value twice
        (b'{"signatures":[],"signed":{"_type":"targets","version":2,"version":2}}',
         "duplicate JSON object key 'version'"),
        (b'{"signed": {"_type": "targets", "version": 2, "expires": "2030-01-01T00:00:00Z", "spec_version": "1.0.31",'
         b' "targets": {}, "x-custom": [1.5]}, "signatures": []}', "not valid TUF metadata: Could not encode .*: I cannot encode 1.5"),
        (b'{"signed": {"_type": "targets", "version": 2}, "signatures": []}', "exactly YYYY-MM-DDTHH:MM:SSZ"),
        (b'{"signed": {"_type": "targets", "version": 2, "expires": "2030-01-01T00:00:00Z"}, "signatures": []}',
         "not valid TUF metadata"),
    ],
)
def test_malformed_refused(published, data, match):
    with pytest.raises(MalformedMetadataError, match=match):
        validate_update(published, {"targets": data}, NOW)


def test_deeply_nested_json_refused(published):
    data = b'{"signed": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(MalformedMetadataError):
        validate_update(published, {"targets": data}, NOW)


def test_wrong_type_for_role(repo, published):
    repo.bump("targets")
    with pytest.raises(BadRoleError, match="must be 'root' metadata"):
        validate_update(published, {"root": repo.sign("targets")}, NOW)


def test_timestamp_upload_refused(repo, published):
    with pytest.raises(BadRoleError, match="generated by the server"):
        validate_update(published, {"timestamp": b"{}"}, NOW)


@pytest.mark.parametrize("role", ["../etc", "a/../b", "a\x00b", "x" * 300, "", "1.evil"])
def test_bad_role_names(published, role):
    with pytest.raises(BadRoleError):
        validate_update(published, {role: b"{}"}, NOW)


def test_keyid_must_match_key(repo):
    key = repo.root.signed.keys.pop(repo.signers["targets"][0].public_key.keyid)
    key.keyid = "ab" * 32
    repo.root.signed.keys[key.keyid] = key
    repo.root.signed.roles["targets"].keyids = [key.keyid]
    with pytest.raises(MalformedMetadataError, match="keyid must be the SHA-256"):
        validate_update({}, {"root": repo.sign("root"), "targets": repo.sign("targets")}, NOW)


# ---- root rotation
def test_root_rotation_signed_by_old_and_new(repo, published):
    old = repo.signers["root"]
    new = repo.rotate("root")
    repo.bump("root")
    update = validate_update(published, {"root": repo.sign("root", signers=old + new)}, NOW)
    assert update.root.signed.version == 2


def test_root_rotation_not_signed_by_old_root(repo, published):
    repo.rotate("root")
    repo.bump("root")
    with pytest.raises(BadSignatureError, match="the previous root"):
        validate_update(published, {"root": repo.sign("root")}, NOW)


def test_root_rotation_not_signed_by_new_root(repo, published):
    old = repo.signers["root"]
    repo.rotate("root")
    repo.bump("root")
    with pytest.raises(BadSignatureError, match="the new root itself"):
        validate_update(published, {"root": repo.sign("root", signers=old)}, NOW)


def test_root_version_jump_refused(repo, published):
    repo.root.signed.version = 3
    with pytest.raises(BadVersionError, match="exactly 2"):
        validate_update(published, {"root": repo.sign("root")}, NOW)


def test_threshold_not_met_by_duplicate_signatures(repo, published):
    second = new_signer()
    repo.root.signed.add_key(second.public_key, "targets")
    repo.root.signed.roles["targets"].threshold = 2
    repo.bump("root")
    repo.bump("targets")
    data = json.loads(repo.sign("targets"))
    data["signatures"].append(dict(data["signatures"][0]))  # the same signature twice
    with pytest.raises(MalformedMetadataError, match="Multiple signatures"):
        validate_update(published, {"root": repo.sign("root"), "targets": json.dumps(data).encode()}, NOW)
    with pytest.raises(BadSignatureError, match="signed by 1 of the 2"):
        validate_update(published, {"root": repo.sign("root"), "targets": repo.sign("targets")}, NOW)
    signed_by_both = repo.sign("targets", signers=repo.signers["targets"] + [second])
    update = validate_update(published, {"root": repo.sign("root"), "targets": signed_by_both}, NOW)
    assert update.targets_versions == {"targets": 2}


def test_new_root_breaking_stored_targets_is_refused(repo, published):
    repo.root.signed.add_key(new_signer().public_key, "targets")
    repo.root.signed.roles["targets"].threshold = 2
    repo.bump("root")
    with pytest.raises(MissingRoleError, match="sign targets with the new keys"):
        validate_update(published, {"root": repo.sign("root")}, NOW)


def test_root_rotating_targets_key_needs_resigned_targets(repo, published):
    repo.rotate("targets")
    repo.bump("root")
    with pytest.raises(MissingRoleError, match="sign targets with the new keys"):
        validate_update(published, {"root": repo.sign("root")}, NOW)
    repo.bump("targets")
    update = validate_update(published, {"root": repo.sign("root"), "targets": repo.sign("targets")}, NOW)
    assert update.targets_versions == {"targets": 2}


# ---- delegations
def test_delegated_role_with_parent_in_same_publish(repo, published):
    repo.delegate("releases", ["releases/*"])
    repo.add_target("releases/app-1.0", b"app", role="releases")
    repo.bump("targets")
    update = validate_update(
        published, {"releases": repo.sign("releases"), "targets": repo.sign("targets")}, NOW
    )
    assert update.targets_versions == {"targets": 2, "releases": 1}


def test_delegated_role_later_publish(repo, published):
    repo.delegate("releases", ["releases/*"])
    repo.bump("targets")
    state = accept(published, {"targets": repo.sign("targets")})
    repo.add_target("releases/app-1.0", b"app", role="releases")
    update = validate_update(state, {"releases": repo.sign("releases")}, NOW)
    assert update.targets_versions == {"targets": 2, "releases": 1}


def test_delegated_role_signed_by_wrong_key(repo, published):
    repo.delegate("releases", ["releases/*"])
    repo.bump("targets")
    with pytest.raises(BadSignatureError, match="its delegator targets"):
        validate_update(
            published,
            {"targets": repo.sign("targets"), "releases": repo.sign("releases", signers=[new_signer()])},
            NOW,
        )


def test_delegated_target_outside_paths(repo, published):
    repo.delegate("releases", ["releases/*"])
    repo.add_target("other/evil", b"x", role="releases")
    repo.bump("targets")
    with pytest.raises(BadRoleError, match="'other/evil', which is outside the paths"):
        validate_update(published, {"targets": repo.sign("targets"), "releases": repo.sign("releases")}, NOW)


def test_undeclared_delegated_role(repo, published):
    repo.delegate("releases", ["*"])
    with pytest.raises(BadRoleError, match="not delegated by targets"):
        validate_update(published, {"releases": repo.sign("releases")}, NOW)


def test_nested_delegation(repo, published):
    repo.delegate("a", ["a/*"])
    repo.delegate("a/b", ["a/b/*"], parent="a")
    repo.add_target("a/b/file", b"f", role="a/b")
    repo.bump("targets")
    update = validate_update(
        published,
        {"a/b": repo.sign("a/b"), "a": repo.sign("a"), "targets": repo.sign("targets")},
        NOW,
    )
    assert update.targets_versions == {"targets": 2, "a": 1, "a/b": 1}


# ---- client-managed snapshot
def test_client_snapshot_must_match_state(repo, published):
    repo.add_target("f", b"f")
    repo.bump("targets")
    repo.snapshot.signed.version = 2
    repo.snapshot_for({"targets": 1})
    with pytest.raises(BadVersionError, match="does not list every targets role"):
        validate_update(published, {"targets": repo.sign("targets"), "snapshot": repo.sign("snapshot")}, NOW)
    repo.snapshot_for({"targets": 2})
    update = validate_update(
        published, {"targets": repo.sign("targets"), "snapshot": repo.sign("snapshot")}, NOW
    )
    assert "snapshot" in update.uploaded


def test_client_snapshot_must_be_signed_by_snapshot_key(repo, published):
    repo.snapshot.signed.version = 2
    repo.snapshot_for({"targets": 1})
    with pytest.raises(BadSignatureError):
        validate_update(published, {"snapshot": repo.sign("snapshot", signers=[new_signer()])}, NOW)


# ---- issue 3: structure, canonical form, limits
def _resign_raw(repo: CollectionFactory, role: str, mutate) -> bytes:
    """Sign a raw JSON edit of `role` the way a non-python-tuf publisher would: over its canonical form."""
    from securesystemslib.formats import encode_canonical

    raw = json.loads(repo.sign(role))
    mutate(raw["signed"])
    payload = encode_canonical(raw["signed"]).encode()
    raw["signatures"] = [
        {"keyid": s.public_key.keyid, "sig": s.sign(payload).signature} for s in repo.signers[role]
    ]
    return json.dumps(raw).encode()


def test_lax_expires_format_refused(repo, published):
    repo.bump("targets")
    data = _resign_raw(repo, "targets", lambda s: s.update(expires="2027-1-1T00:00:00Z"))
    with pytest.raises(MalformedMetadataError, match="exactly YYYY-MM-DDTHH:MM:SSZ"):
        validate_update(published, {"targets": data}, NOW)


def test_non_canonical_round_trip_refused(repo, published):
    """`path_hash_prefixes: null` is signed in the raw form but dropped by python-tuf's: clients would
    disagree on what is signed."""
    repo.delegate("releases", ["releases/*"])
    repo.bump("targets")
    data = _resign_raw(
        repo, "targets", lambda s: s["delegations"]["roles"][0].update(path_hash_prefixes=None)
    )
    with pytest.raises(MalformedMetadataError, match="round-trip"):
        validate_update(published, {"targets": data}, NOW)


def test_unknown_fields_accepted_and_signed_over(repo, published):
    repo.bump("targets")
    repo.md("targets").signed.unrecognized_fields["x-vendor"] = {"build": 7}
    data = repo.sign("targets")
    update = validate_update(published, {"targets": data}, NOW)
    assert update.uploaded["targets"].signed.unrecognized_fields == {"x-vendor": {"build": 7}}
    tampered = data.replace(b'"build":7', b'"build":8')
    assert tampered != data
    with pytest.raises(BadSignatureError):
        validate_update(published, {"targets": tampered}, NOW)


def test_expiry_beyond_policy_refused(repo, published):
    repo.bump("targets")
    repo.md("targets").signed.expires = NOW + timedelta(days=800)
    with pytest.raises(ExpiredMetadataError, match="more than the 732 days"):
        validate_update(published, {"targets": repo.sign("targets")}, NOW)
    short = ValidationPolicy(max_expiry={"root": timedelta(days=1000), "targets": timedelta(days=30)})
    repo.md("targets").signed.expires = NOW + timedelta(days=31)
    with pytest.raises(ExpiredMetadataError, match="30 days"):
        validate_update(published, {"targets": repo.sign("targets")}, NOW, short)


def test_signatures_by_unknown_keys_are_ignored(repo, published):
    repo.bump("targets")
    data = repo.sign("targets", signers=repo.signers["targets"] + [new_signer()])
    assert len(json.loads(data)["signatures"]) == 2
    assert validate_update(published, {"targets": data}, NOW).targets_versions == {"targets": 2}


def test_one_key_under_two_keyids_counts_once(repo, published):
    from securesystemslib.signer import SSlibKey

    signer = repo.signers["targets"][0]
    twin_dict = {**signer.public_key.to_dict(), "x-twin": True}  # same key material, another keyid
    twin = SSlibKey.from_dict("", dict(twin_dict))
    from securesystemslib.formats import encode_canonical
    import hashlib

    twin.keyid = hashlib.sha256(encode_canonical(twin.to_dict()).encode()).hexdigest()
    repo.root.signed.add_key(twin, "targets")
    repo.root.signed.roles["targets"].threshold = 2
    repo.bump("root")
    repo.bump("targets")
    md = repo.md("targets")
    md.signatures.clear()
    sig = signer.sign(md.signed_bytes)
    md.signatures[signer.public_key.keyid] = sig
    md.signatures[twin.keyid] = type(sig)(twin.keyid, sig.signature)
    targets = md.to_bytes()
    with pytest.raises(BadSignatureError, match="signed by 1 of the 2"):
        validate_update(published, {"root": repo.sign("root"), "targets": targets}, NOW)


def test_expired_stored_root_blocks_publishes_until_renewed(repo):
    repo.root.signed.expires = NOW + timedelta(days=1)
    state = accept({}, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    later = NOW + timedelta(days=2)
    repo.md("targets").signed.expires = later + timedelta(days=30)
    repo.bump("targets")
    with pytest.raises(MissingRoleError, match="root expired"):
        validate_update(state, {"targets": repo.sign("targets")}, later)
    repo.root.signed.expires = later + timedelta(days=365)
    repo.bump("root")
    update = validate_update(state, {"root": repo.sign("root"), "targets": repo.sign("targets")}, later)
    assert update.root.signed.version == 2


def _with_bins(repo: CollectionFactory, bits: int) -> CollectionFactory:
    from tuf.api.metadata import Delegations, SuccinctRoles

    signer = new_signer()
    succinct = SuccinctRoles([], 1, bits, "bins")
    repo.md("targets").signed.delegations = Delegations(keys={}, succinct_roles=succinct)
    repo.md("targets").signed.add_key(signer.public_key)
    for name in succinct.get_roles():
        repo.signers[name] = [signer]
    return repo


def test_hash_bin_delegations(repo, published):
    _with_bins(repo, 4)
    repo.bump("targets")
    state = accept(published, {"targets": repo.sign("targets")})
    from tuf.api.metadata import Metadata, Targets

    succinct = repo.md("targets").signed.delegations.succinct_roles
    right = succinct.get_role_for_target("app-1.0.tar")
    repo.roles[right] = Metadata(Targets(expires=NOW + timedelta(days=30)))
    repo.add_target("app-1.0.tar", b"app", role=right)
    update = validate_update(state, {right: repo.sign(right)}, NOW)
    assert update.targets_versions[right] == 1

    wrong = next(r for r in succinct.get_roles() if r != right)
    repo.roles[wrong] = Metadata(Targets(expires=NOW + timedelta(days=30)))
    repo.add_target("app-1.0.tar", b"app", role=wrong)
    with pytest.raises(BadRoleError, match="outside the paths"):
        validate_update(state, {wrong: repo.sign(wrong)}, NOW)
    with pytest.raises(BadRoleError, match="not delegated"):
        validate_update(state, {"bins-10": repo.sign(wrong)}, NOW)


def test_unrelated_stored_roles_are_not_parsed(repo, published):
    """A publish costs what it touches: other delegated roles are only counted, never parsed."""
    state = {**published, "elsewhere": b"{this is never parsed"}
    stored = {role: Stored(7 if role == "elsewhere" else json.loads(d)["signed"]["version"], d)
              for role, d in state.items()}
    repo.bump("targets")
    update = validation.validate_update(stored, {"targets": repo.sign("targets")}, NOW)
    assert update.targets_versions == {"targets": 2, "elsewhere": 7}


def test_removed_delegation_stays_listed(repo, published):
    repo.delegate("releases", ["releases/*"])
    repo.bump("targets")
    state = accept(published, {"targets": repo.sign("targets"), "releases": repo.sign("releases")})
    repo.md("targets").signed.delegations = None
    repo.bump("targets")
    update = validate_update(state, {"targets": repo.sign("targets")}, NOW)
    assert update.targets_versions == {"targets": 3, "releases": 1}


def test_root_not_ahead_is_a_conflict(repo, published):
    with pytest.raises(VersionConflictError):
        validate_update(published, {"root": repo.sign("root")}, NOW)


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=5)


@st.composite
def compact_json_texts(draw, depth: int = 0) -> str:
    """Compact JSON with sorted keys whose objects may name a key twice (with equal or other values)."""
    if depth > 2 or draw(st.booleans()):
        return json.dumps(draw(JSON_LEAVES))
    if draw(st.booleans()):
        return "[" + ",".join(draw(st.lists(compact_json_texts(depth + 1), max_size=3))) + "]"
    keys = sorted(draw(st.lists(st.sampled_from("abc"), max_size=4)))
    return "{" + ",".join(f"{json.dumps(k)}:{draw(compact_json_texts(depth + 1))}" for k in keys) + "}"


@settings(max_examples=300, deadline=None)
@given(compact_json_texts())
def test_duplicate_keys_are_refused_whichever_way_the_json_is_parsed(text):
    try:
        expected = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except ValueError as e:
        with pytest.raises(ValueError, match=re.escape(str(e))):
            _loads_without_duplicate_keys(text)
    else:
        assert _loads_without_duplicate_keys(text) == expected

"""The express publish (client/quickpublish.py): the same upload as the full publish, built from the
trust directory without python-tuf or a refresh, and the full publish whenever that is not safe."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Signature, SSlibKey
from tuf.api.metadata import SuccinctRoles

from tests.client.conftest import COLLECTION, PASSPHRASE, Client, make_client
from tests.client.fake_server import FakeServer
from tufnotary.client import keyfiles, quickpublish
from tufnotary.client.canonical import canonical_bytes
from tufnotary.client.errors import ServerError
from tufnotary.client.publisher import target_from_digest
from tufnotary.client.results import PublishResult

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def _passphrase(keyid: str, new: bool) -> str:
    return PASSPHRASE


def _stage(client: Client, *paths: str) -> None:
    for i, path in enumerate(paths):
        client.publisher.stage_add(COLLECTION, target_from_digest(path, "sha256:" + f"{i:02x}" * 32, 10 + i))


def _express(client: Client) -> PublishResult | None:
    return quickpublish.publish(client.trust, COLLECTION, client.publisher.server, _passphrase, lambda: NOW)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=60), st.sampled_from([1, 2, 3, 4, 5, 8, 10, 14, 16, 31, 32]))
def test_hash_bin_of_a_path_is_python_tufs(path: str, bit_length: int) -> None:
    expected = SuccinctRoles([], 1, bit_length, "bins").get_role_for_target(path)
    assert quickpublish.role_for_target({"bit_length": bit_length, "name_prefix": "bins"}, path) == expected


@pytest.mark.parametrize("private, scheme", [
    (ed25519.Ed25519PrivateKey.generate(), "ed25519"),
    (ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"),
    (ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384"),
    (rsa.generate_private_key(public_exponent=65537, key_size=3072), "rsassa-pss-sha256"),
])
def test_signatures_verify_with_securesystemslib(private: object, scheme: str) -> None:
    key = SSlibKey.from_crypto(private.public_key(), scheme=scheme)  # type: ignore[attr-defined]
    payload = b'{"signed":"payload"}'
    assert keyfiles.signs(private, scheme)  # type: ignore[arg-type]

    sig = keyfiles.sign(private, scheme, payload)  # type: ignore[arg-type]

    key.verify_signature(Signature(key.keyid, sig), payload)  # raises if it does not verify
    with pytest.raises(UnverifiedSignatureError):
        key.verify_signature(Signature(key.keyid, sig), payload + b" ")


def test_key_files_are_read_by_cryptographys_public_pem_loader() -> None:
    # keyfiles takes it from cryptography's Rust bindings, sparing every publish the import of the
    # serialization package: it must be the very function that package exports.
    from cryptography.hazmat.primitives import serialization

    assert keyfiles._load_pem_private_key is serialization.load_pem_private_key


def test_a_key_of_another_scheme_is_not_used() -> None:
    assert not keyfiles.signs(ed25519.Ed25519PrivateKey.generate(), "ecdsa-sha2-nistp256")
    assert not keyfiles.signs(ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp256")
    assert not keyfiles.signs(ed25519.Ed25519PrivateKey.generate(), "rsassa-pkcs1v15-sha256")


@pytest.mark.parametrize("paths", [
    ("app:v1", "app:v2"),
    ("äpp/ünïcode:v1", "app:v2"),  # canonical JSON writes it raw, the upload escapes it
    ('app/"quoted"\\backslash:v1', "app:v2"),  # escaped alike in both
])
def test_express_upload_is_byte_for_byte_the_full_publishs(client: Client, fake_server: FakeServer,
                                                           tmp_path: Path, paths: tuple[str, ...]) -> None:
    client.publisher.init(COLLECTION)
    _stage(client, *paths)
    client.publisher.stage_remove(COLLECTION, "gone:v0")
    copy = tmp_path / "copy"
    shutil.copytree(client.trust.root, copy)
    full = make_client(copy, fake_server.url)
    full.publisher.now = lambda: NOW

    drafted = quickpublish.plan(client.trust, COLLECTION, client.trust.read_staged(COLLECTION), NOW)
    assert drafted is not None
    express = quickpublish.sign(client.trust, drafted.roles, _passphrase)
    draft, outcome = full.publisher.prepare_publish(COLLECTION)
    draft.sign_with(full.keys)

    assert express == draft.uploads()
    assert (drafted.added, drafted.removed, drafted.not_present) == (
        outcome["added"], outcome["removed"], outcome["not_present"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10), max_size=4))
def test_the_upload_reuses_the_canonical_bytes_only_where_they_are_the_compact_encoding(signed) -> None:
    signatures = [{"keyid": "ab" * 32, "sig": "cd" * 64}]
    expected = json.dumps({"signatures": signatures, "signed": signed}, separators=(",", ":"), sort_keys=True)

    assert quickpublish._compact_metadata(signatures, signed, canonical_bytes(signed)) == expected.encode()


def test_express_publish_uploads_once_without_a_refresh(client: Client, fake_server: FakeServer) -> None:
    client.publisher.init(COLLECTION)
    _stage(client, "app:v1")
    fake_server.requests.clear()

    result = _express(client)

    assert result is not None and result.express
    assert (result.targets_version, result.added, result.roles) == (2, ["app:v1"], ["targets"])
    assert fake_server.requests == [("POST", f"/v2/{COLLECTION}/_trust/tuf/")]
    assert client.trust.read_staged(COLLECTION).changes == {}
    assert fake_server.stored_targets(COLLECTION).signed.version == 2
    # A consumer verifies it from the pinned root, and the next publish starts from it.
    assert "app:v1" in client.consumer.list_targets(COLLECTION).targets
    _stage(client, "app:v2")
    again = _express(client)
    assert again is not None and again.targets_version == 3
    assert set(client.consumer.list_targets(COLLECTION).targets) == {"app:v1", "app:v2"}


def test_stale_local_copy_changes_nothing_and_the_full_publish_follows(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    other = make_client(tmp_path / "other", fake_server.url)
    shutil.copytree(client.trust.root, other.trust.root)
    other.publisher.stage_add(COLLECTION, target_from_digest("theirs:v1", "sha256:" + "cd" * 32, 5))
    other.publisher.publish(COLLECTION)  # version 2, which this trust directory has not seen
    _stage(client, "mine:v1")
    staged = client.trust.read_staged(COLLECTION).changes
    stored = fake_server.collections[COLLECTION].current("targets")

    assert _express(client) is None  # the server refused version 2 again

    assert fake_server.collections[COLLECTION].current("targets") == stored
    assert client.trust.read_staged(COLLECTION).changes == staged
    result = client.publisher.publish(COLLECTION)
    assert result.targets_version == 3
    assert set(client.consumer.list_targets(COLLECTION).targets) == {"theirs:v1", "mine:v1"}


def test_refusals_no_fresher_state_avoids_are_raised_unchanged(client: Client, fake_server: FakeServer) -> None:
    client.publisher.init(COLLECTION)
    _stage(client, "app:v1")
    staged = client.trust.read_staged(COLLECTION).changes
    fake_server.refuse_next_upload("DENIED", "not allowed to push", status=403)

    with pytest.raises(ServerError) as raised:
        _express(client)

    assert raised.value.server_code == "DENIED"
    assert client.trust.read_staged(COLLECTION).changes == staged
    assert fake_server.stored_targets(COLLECTION).signed.version == 1


@pytest.mark.parametrize("missing", ["targets metadata", "server snapshot key", "targets private key"])
def test_without_what_it_needs_the_express_publish_asks_nothing(
    client: Client, fake_server: FakeServer, missing: str
) -> None:
    init = client.publisher.init(COLLECTION)
    _stage(client, "app:v1")
    if missing == "targets metadata":
        client.trust.role_metadata_path(COLLECTION, "targets").unlink()
    elif missing == "server snapshot key":
        (client.trust.collection_dir(COLLECTION) / "server-keys.json").unlink()
    else:
        keyfiles.private_path(client.trust.root, init.targets_keyid).unlink()
    fake_server.requests.clear()

    assert _express(client) is None

    assert fake_server.requests == []
    assert client.trust.read_staged(COLLECTION).changes != {}

"""The signing policy, enforced by the signer over real gRPC: every refusal names its reason, maps to a
distinct status, and changes nothing (no high-water mark moved, no audit row)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import grpc
import pytest
from securesystemslib.signer import SSlibKey

from tests.signer.harness import RunningSigner, remote_signer, tuf_payload
from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server.errors import SignerRefusedError, VersionConflictError
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.signer.service import HIGHEST_SIGNED_METADATA

COLLECTION = "wabbit-networks/net-monitor"


@pytest.fixture
def stub(channel: grpc.Channel) -> signer_pb2_grpc.SignerStub:
    return signer_pb2_grpc.SignerStub(channel)


def snapshot_of(running: RunningSigner) -> tuple[object, ...]:
    keys = running.keystore.list_keys(COLLECTION) + running.keystore.list_keys("other/collection")
    return tuple((k.key_id, k.state, k.max_signed_version) for k in keys), tuple(running.keystore.audit_entries())


def refused(stub: signer_pb2_grpc.SignerStub, key: SSlibKey, payload: bytes, collection: str = COLLECTION,
            role: str = "timestamp") -> grpc.RpcError:
    request = signer_pb2.SignRequest(key_id=key.keyid, payload=payload, collection=collection, role=role)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Sign(request, timeout=5)
    return caught.value


@pytest.fixture
def signed_5(client: RemoteSigner) -> SSlibKey:
    key = client.create_key(COLLECTION, "timestamp")
    client.sign(key, tuf_payload("timestamp", 5))
    return key


def test_accepted_signature_is_audited_with_the_client_subject(running: RunningSigner, client: RemoteSigner) -> None:
    key = client.create_key(COLLECTION, "timestamp")
    payload = tuf_payload("timestamp", 1)
    client.sign(key, payload)
    (entry,) = running.keystore.audit_entries()
    assert (entry.key_id, entry.collection, entry.role, entry.version, entry.client_subject) == (
        key.keyid, COLLECTION, "timestamp", 1, "CN=tufnotary-server"
    )
    assert entry.payload_sha256 == hashlib.sha256(payload).hexdigest()


def test_wrong_role_is_refused(running: RunningSigner, stub: signer_pb2_grpc.SignerStub, signed_5: SSlibKey) -> None:
    before = snapshot_of(running)
    error = refused(stub, signed_5, tuf_payload("snapshot", 6))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only signs timestamp metadata, not 'snapshot'" in error.details()
    error = refused(stub, signed_5, tuf_payload("snapshot", 6), role="snapshot")  # naming the role does not help
    assert "belongs to" in error.details()
    assert snapshot_of(running) == before


def test_wrong_collection_is_refused(
    running: RunningSigner, stub: signer_pb2_grpc.SignerStub, client: RemoteSigner, signed_5: SSlibKey
) -> None:
    client.create_key("other/collection", "timestamp")
    before = snapshot_of(running)
    for collection in ("other/collection", ""):
        error = refused(stub, signed_5, tuf_payload("timestamp", 6), collection=collection)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"belongs to {COLLECTION} timestamp" in error.details()
    with pytest.raises(SignerRefusedError, match="belongs to"):
        client.sign(signed_5, tuf_payload("timestamp", 6), collection="other/collection", role="timestamp")
    assert snapshot_of(running) == before


def test_rollback_is_refused(running: RunningSigner, stub: signer_pb2_grpc.SignerStub, signed_5: SSlibKey) -> None:
    before = snapshot_of(running)
    error = refused(stub, signed_5, tuf_payload("timestamp", 4))
    assert error.code() == grpc.StatusCode.ABORTED
    assert "ROLLBACK_REFUSED" in error.details() and "lower version 4" in error.details()
    assert dict(error.trailing_metadata())[HIGHEST_SIGNED_METADATA] == "5"
    assert snapshot_of(running) == before


def test_equal_version_is_refused_as_a_version_conflict(
    running: RunningSigner, stub: signer_pb2_grpc.SignerStub, client: RemoteSigner, signed_5: SSlibKey
) -> None:
    before = snapshot_of(running)
    error = refused(stub, signed_5, tuf_payload("timestamp", 5, timedelta(hours=20)))
    assert error.code() == grpc.StatusCode.ABORTED
    assert "VERSION_ALREADY_SIGNED: version 5 already signed" in error.details()
    with pytest.raises(VersionConflictError) as caught:
        client.sign(signed_5, tuf_payload("timestamp", 5))
    assert caught.value.http_status == 409
    assert caught.value.detail["highest_signed_version"] == 5
    assert snapshot_of(running) == before
    client.sign(signed_5, tuf_payload("timestamp", 6))


@pytest.mark.parametrize("role, allowed", [("timestamp", timedelta(days=1)), ("snapshot", timedelta(days=7))])
def test_expiry_beyond_the_window_is_refused(
    running: RunningSigner, stub: signer_pb2_grpc.SignerStub, client: RemoteSigner, role: str, allowed: timedelta
) -> None:
    key = client.create_key(COLLECTION, role)
    before = snapshot_of(running)
    error = refused(stub, key, tuf_payload(role, 1, allowed + timedelta(minutes=10)), role=role)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "EXPIRY_TOO_LONG" in error.details() and role in error.details()
    assert snapshot_of(running) == before
    client.sign(key, tuf_payload(role, 1, allowed))  # the window itself is allowed


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1]",
        b'{"_type":"timestamp","version":6}',  # no expires, meta, spec_version
        json.dumps(json.loads(tuf_payload("timestamp", 6)), indent=1).encode(),  # not canonical
        tuf_payload("timestamp", 6).replace(b'"version":6', b'"version":0'),
        tuf_payload("timestamp", 6).replace(b'"spec_version":"1.0.31"', b'"spec_version":"2.0.0"'),
    ],
)
def test_non_tuf_bytes_are_refused(
    running: RunningSigner, stub: signer_pb2_grpc.SignerStub, signed_5: SSlibKey, payload: bytes
) -> None:
    before = snapshot_of(running)
    error = refused(stub, signed_5, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert snapshot_of(running) == before


def test_sign_needs_the_collection_and_role(running: RunningSigner) -> None:
    with remote_signer(running.address, running.certs) as fresh:
        key = SSlibKey("0" * 64, "ed25519", "ed25519", {"public": "00" * 32})
        with pytest.raises(SignerRefusedError, match="collection and role"):
            fresh.sign(key, tuf_payload("timestamp", 1))


def test_batch_signs_each_item_on_its_own(running: RunningSigner, client: RemoteSigner) -> None:
    timestamp = client.create_key(COLLECTION, "timestamp")
    snapshot = client.create_key(COLLECTION, "snapshot")
    items = [
        (timestamp, tuf_payload("timestamp", 1)),
        (snapshot, tuf_payload("snapshot", 1)),
        (timestamp, tuf_payload("timestamp", 1)),  # equal version: conflict
        (timestamp, tuf_payload("snapshot", 2)),  # wrong role
        (timestamp, tuf_payload("timestamp", 2, timedelta(days=3))),  # too long
        (timestamp, tuf_payload("timestamp", 2)),
    ]
    results = client.sign_batch(items)
    assert [type(r).__name__ for r in results] == [
        "Signature", "Signature", "VersionConflictError", "SignerRefusedError", "SignerRefusedError", "Signature"
    ]
    assert "EXPIRY_TOO_LONG" in results[4].message  # type: ignore[union-attr]
    assert [(e.role, e.version) for e in running.keystore.audit_entries()] == [
        ("timestamp", 1), ("snapshot", 1), ("timestamp", 2)
    ]
    assert client.sign_batch([]) == []


def test_rotation_over_grpc(running: RunningSigner, client: RemoteSigner) -> None:
    old = client.create_key(COLLECTION, "timestamp")
    client.sign(old, tuf_payload("timestamp", 1))
    new = client.rotate_key(COLLECTION, "timestamp", "ecdsa-sha2-nistp384")
    assert client.get_public_key(COLLECTION, "timestamp") == old
    assert [(i.key.keyid, i.state, i.max_signed_version) for i in client.list_key_info(COLLECTION)] == [
        (old.keyid, "active", 1), (new.keyid, "pending", 1)
    ]
    client.sign(new, tuf_payload("timestamp", 2))  # the first use of the pending key switches over
    assert client.get_public_key(COLLECTION, "timestamp") == new
    assert [i.state for i in client.list_key_info(COLLECTION)] == ["retired", "active"]
    with pytest.raises(SignerRefusedError, match="KEY_RETIRED"):
        client.sign(old, tuf_payload("timestamp", 3))
    assert client.retire_key(new.keyid) is True
    assert client.retire_key("0" * 64) is False
    assert client.get_public_key(COLLECTION, "timestamp") is None

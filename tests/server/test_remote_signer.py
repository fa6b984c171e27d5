"""`RemoteSigner` against real mTLS gRPC signers: an honest one, a slow one and hostile ones.

The hostile servicers stand in for a compromised signer: the client must fail closed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from securesystemslib.signer import CryptoSigner

from tests.pgcluster import free_port
from tests.signer.harness import RunningSigner, custom_signer, inprocess_signer, remote_signer, tuf_payload
from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server.errors import SignerRefusedError, SignerUnavailableError, VersionConflictError
from tufnotary.server.logs import REQUEST_ID_METADATA, reset_request_id, set_request_id
from tufnotary.server.remote_signer import RemoteSigner, tuf_key_id
from tufnotary.signer.certs import DevCertPaths, write_dev_certs

COLLECTION = "wabbit-networks/net-monitor"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertPaths:
    return write_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def running(certs: DevCertPaths, tmp_path: Path) -> Iterator[RunningSigner]:
    with inprocess_signer(certs, tmp_path) as signer:
        yield signer


def _public_key_message(signer: CryptoSigner, key_id: str | None = None) -> signer_pb2.PublicKey:
    key = signer.public_key
    return signer_pb2.PublicKey(
        key_id=key_id or key.keyid, collection=COLLECTION, role="timestamp",
        keytype=key.keytype, scheme=key.scheme, public=key.keyval["public"],
    )


class HostileSigner(signer_pb2_grpc.SignerServicer):
    """Answers with keys whose id lies, or with signatures by another key."""

    def __init__(self) -> None:
        self.key = CryptoSigner.generate_ed25519()
        self.other = CryptoSigner.generate_ed25519()

    def CreateKey(self, request: signer_pb2.CreateKeyRequest, context: grpc.ServicerContext) -> signer_pb2.PublicKey:
        # Claims the id of the honest key but carries the other key's public value.
        return _public_key_message(self.other, key_id=self.key.public_key.keyid)

    def GetPublicKey(self, request: signer_pb2.GetPublicKeyRequest, context: grpc.ServicerContext) -> signer_pb2.PublicKey:
        return _public_key_message(self.key)

    def ListKeys(self, request: signer_pb2.ListKeysRequest, context: grpc.ServicerContext) -> signer_pb2.ListKeysResponse:
        return signer_pb2.ListKeysResponse(keys=[_public_key_message(self.other, key_id=self.key.public_key.keyid)])

    def Sign(self, request: signer_pb2.SignRequest, context: grpc.ServicerContext) -> signer_pb2.SignResponse:
        if request.payload == b"answer with another key id":
            signature = self.other.sign(request.payload)
            return signer_pb2.SignResponse(key_id=signature.keyid, signature=signature.signature)
        if request.payload == b"abort":
            context.set_trailing_metadata((("tufnotary-highest-signed-version", "41"),))
            context.abort(grpc.StatusCode.ABORTED, "VERSION_ALREADY_SIGNED: version 41 already signed")
        forged = self.other.sign(request.payload)  # right key id, wrong key
        return signer_pb2.SignResponse(key_id=request.key_id, signature=forged.signature)

    def SignBatch(self, request: signer_pb2.SignBatchRequest, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        honest = self.key.sign(request.requests[0].payload)
        yield signer_pb2.SignBatchResult(index=0, signature=signer_pb2.SignResponse(key_id=honest.keyid, signature=honest.signature))
        forged = self.other.sign(request.requests[1].payload)
        yield signer_pb2.SignBatchResult(index=1, signature=signer_pb2.SignResponse(key_id=request.requests[1].key_id, signature=forged.signature))
        if len(request.requests) > 2:
            yield signer_pb2.SignBatchResult(index=1, signature=signer_pb2.SignResponse(key_id="x", signature="00"))


class SlowSigner(signer_pb2_grpc.SignerServicer):
    def __init__(self) -> None:
        self.release = threading.Event()

    def ListKeys(self, request: signer_pb2.ListKeysRequest, context: grpc.ServicerContext) -> signer_pb2.ListKeysResponse:
        self.release.wait(10)
        return signer_pb2.ListKeysResponse()


def test_round_trip_through_an_honest_signer(running: RunningSigner) -> None:
    with remote_signer(running.address, running.certs) as client:
        key = client.create_key(COLLECTION, "timestamp")
        assert key.keyid == tuf_key_id(key.keytype, key.scheme, key.keyval["public"])
        assert client.get_public_key(COLLECTION, "timestamp") == key
        payload = tuf_payload("timestamp", 1)
        signature = client.sign(key, payload)
        key.verify_signature(signature, payload)
        payloads = [tuf_payload("timestamp", v) for v in (2, 3)]
        for one, signed in zip(client.sign_batch([(key, p) for p in payloads]), payloads):  # SignBatchGrouped
            key.verify_signature(one, signed)  # type: ignore[arg-type]


def test_keys_listed_while_the_caller_works(running: RunningSigner) -> None:
    with remote_signer(running.address, running.certs) as client:
        key = client.create_key(COLLECTION, "snapshot")
        pending = client.start_list_key_info(COLLECTION)
        assert pending.result() == client.list_key_info(COLLECTION)
        assert [(info.key, info.role, info.state) for info in pending.result()] == [(key, "snapshot", "active")]


def test_keys_listed_later_have_a_deadline_too(certs: DevCertPaths) -> None:
    slow = SlowSigner()
    with custom_signer(certs, slow) as address, remote_signer(address, certs, timeout=0.3) as client:
        try:
            with pytest.raises(SignerUnavailableError) as caught:
                client.start_list_key_info(COLLECTION).result()
        finally:
            slow.release.set()
    assert caught.value.detail == {"method": "ListKeys", "status": "DEADLINE_EXCEEDED", "detail": "Deadline Exceeded"}


class RecordingSigner(signer_pb2_grpc.SignerServicer):
    """Lists no keys, noting the request id each call carried."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []

    def ListKeys(self, request: signer_pb2.ListKeysRequest, context: grpc.ServicerContext) -> signer_pb2.ListKeysResponse:
        self.request_ids.append(dict(context.invocation_metadata()).get(REQUEST_ID_METADATA, ""))
        return signer_pb2.ListKeysResponse()


def test_keys_listed_later_carry_the_callers_request_id(certs: DevCertPaths) -> None:
    recording = RecordingSigner()
    with custom_signer(certs, recording) as address, remote_signer(address, certs) as client:
        token = set_request_id("trace-later-0001")
        try:
            pending = client.start_list_key_info(COLLECTION)
        finally:
            reset_request_id(token)
        assert pending.result() == []
        client.list_key_info(COLLECTION)
    assert recording.request_ids == ["trace-later-0001", ""]


def test_channel_is_opened_lazily(certs: DevCertPaths, tmp_path: Path) -> None:
    # Nothing listens yet and the TLS files are missing: constructing must not fail...
    client = RemoteSigner(f"localhost:{free_port()}", tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key")
    # ...the first call does, as "unavailable".
    with client, pytest.raises(SignerUnavailableError, match="TLS files"):
        client.list_keys(COLLECTION)


def test_unreachable_signer_is_unavailable(certs: DevCertPaths) -> None:
    with remote_signer(f"localhost:{free_port()}", certs, timeout=2) as client:
        with pytest.raises(SignerUnavailableError) as caught:
            client.get_public_key(COLLECTION, "timestamp")
    assert caught.value.http_status == 503


def test_every_call_has_a_deadline(certs: DevCertPaths) -> None:
    slow = SlowSigner()
    with custom_signer(certs, slow) as address, remote_signer(address, certs, timeout=0.3) as client:
        try:
            with pytest.raises(SignerUnavailableError) as caught:
                client.list_keys(COLLECTION)
        finally:
            slow.release.set()
    assert caught.value.detail["status"] == "DEADLINE_EXCEEDED"


def test_key_whose_id_is_not_its_tuf_key_id_is_refused(certs: DevCertPaths) -> None:
    with custom_signer(certs, HostileSigner()) as address, remote_signer(address, certs) as client:
        with pytest.raises(SignerRefusedError, match="not its TUF key id"):
            client.create_key(COLLECTION, "timestamp")
        with pytest.raises(SignerRefusedError, match="not its TUF key id"):
            client.start_list_key_info(COLLECTION).result()


def test_signature_that_does_not_verify_is_refused(certs: DevCertPaths) -> None:
    with custom_signer(certs, HostileSigner()) as address, remote_signer(address, certs) as client:
        key = client.get_public_key(COLLECTION, "timestamp")
        assert key is not None
        with pytest.raises(SignerRefusedError, match="does not verify") as caught:
            client.sign(key, b"metadata")
    assert caught.value.http_status == 502


def test_signature_by_another_key_is_refused(certs: DevCertPaths) -> None:
    with custom_signer(certs, HostileSigner()) as address, remote_signer(address, certs) as client:
        key = client.get_public_key(COLLECTION, "timestamp")
        assert key is not None
        with pytest.raises(SignerRefusedError, match="another key"):
            client.sign(key, b"answer with another key id")


def test_unimplemented_method_is_a_refusal(certs: DevCertPaths) -> None:
    with custom_signer(certs, HostileSigner()) as address, remote_signer(address, certs) as client:
        with pytest.raises(SignerRefusedError) as caught:
            client.retire_key("0" * 64)
    assert caught.value.detail["status"] == "UNIMPLEMENTED"


def test_aborted_maps_to_a_version_conflict_with_the_high_water_mark(certs: DevCertPaths) -> None:
    with custom_signer(certs, HostileSigner()) as address, remote_signer(address, certs) as client:
        key = client.get_public_key(COLLECTION, "timestamp")
        assert key is not None
        with pytest.raises(VersionConflictError) as caught:
            client.sign(key, b"abort")
    assert caught.value.http_status == 409
    assert caught.value.detail["highest_signed_version"] == 41


def test_batch_checks_every_signature(certs: DevCertPaths) -> None:
    """Also the fallback to SignBatch: this signer does not implement SignBatchGrouped."""
    with custom_signer(certs, HostileSigner()) as address, remote_signer(address, certs) as client:
        key = client.get_public_key(COLLECTION, "timestamp")
        assert key is not None
        good, forged = client.sign_batch([(key, b"one"), (key, b"two")])
        key.verify_signature(good, b"one")  # type: ignore[arg-type]
        assert isinstance(forged, SignerRefusedError) and "does not verify" in forged.message
        with pytest.raises(SignerRefusedError, match="wrong index"):
            client.sign_batch([(key, b"one"), (key, b"two"), (key, b"three")])

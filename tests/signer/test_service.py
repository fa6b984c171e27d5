"""The signer's gRPC service through a real in-process server with mutual TLS, with `RemoteSigner` as client."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from securesystemslib.signer import Signature

from tests.signer.harness import RunningSigner, inprocess_signer, remote_signer, tuf_payload
from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server.errors import SignerRefusedError
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.signer.certs import DevCertPaths
from tufnotary.signer.keystore import KeyRecord, KeyStore
from tufnotary.signer.policy import SigningPolicy
from tufnotary.signer.service import CLAIMS_PER_TRANSACTION, SERVICE_NAME

COLLECTION = "wabbit-networks/net-monitor"


def test_create_get_list_sign_delete(client: RemoteSigner) -> None:
    assert client.get_public_key(COLLECTION, "timestamp") is None
    timestamp = client.create_key(COLLECTION, "timestamp")
    assert client.create_key(COLLECTION, "timestamp") == timestamp
    snapshot = client.create_key(COLLECTION, "snapshot", "ecdsa-sha2-nistp256")
    assert snapshot.scheme == "ecdsa-sha2-nistp256"
    assert client.get_public_key(COLLECTION, "timestamp") == timestamp
    assert client.list_keys(COLLECTION) == [timestamp, snapshot]

    payload = tuf_payload("timestamp", 7)
    signature = client.sign(timestamp, payload)
    assert signature.keyid == timestamp.keyid
    timestamp.verify_signature(signature, payload)

    assert client.delete_key(timestamp.keyid) is True
    assert client.delete_key(timestamp.keyid) is False
    assert client.get_public_key(COLLECTION, "timestamp") is None
    assert client.list_keys(COLLECTION) == [snapshot]


def test_unknown_keys_map_to_not_found(channel: grpc.Channel) -> None:
    stub = signer_pb2_grpc.SignerStub(channel)
    calls = [
        (stub.GetPublicKey, signer_pb2.GetPublicKeyRequest(collection=COLLECTION, role="timestamp")),
        (stub.Sign, signer_pb2.SignRequest(key_id="0" * 64, payload=b"x")),
        (stub.RetireKey, signer_pb2.RetireKeyRequest(key_id="0" * 64)),
        (stub.DeleteKey, signer_pb2.DeleteKeyRequest(key_id="0" * 64)),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as caught:
            method(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "KEY_NOT_FOUND" in caught.value.details()


def test_invalid_arguments_map_to_invalid_argument(channel: grpc.Channel, client: RemoteSigner) -> None:
    stub = signer_pb2_grpc.SignerStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateKey(signer_pb2.CreateKeyRequest(collection=COLLECTION, role="root"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timestamp and snapshot" in caught.value.details()
    with pytest.raises(SignerRefusedError, match="unsupported algorithm"):
        client.create_key(COLLECTION, "timestamp", "dsa-sha1")
    assert client.list_keys(COLLECTION) == []


def test_sign_with_a_deleted_key_is_refused(client: RemoteSigner) -> None:
    key = client.create_key(COLLECTION, "timestamp")
    client.delete_key(key.keyid)
    with pytest.raises(SignerRefusedError, match="no key"):
        client.sign(key, tuf_payload("timestamp", 1))


def test_health_answers_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_sign_logs_the_payload_digest_never_the_payload(
    client: RemoteSigner, caplog: pytest.LogCaptureFixture
) -> None:
    key = client.create_key(COLLECTION, "snapshot")
    payload = tuf_payload("snapshot", 3).replace(b'"targets.json"', b'"a1b2c3-marker.json"')
    with caplog.at_level(logging.INFO, logger="tufnotary.signer"):
        client.sign(key, payload)
    signed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("signed ")]
    assert signed == [
        f"signed key_id={key.keyid} collection={COLLECTION} role=snapshot version=3 "
        f"payload_sha256={hashlib.sha256(payload).hexdigest()}"
    ]
    assert not any("a1b2c3" in r.getMessage() for r in caplog.records)


def test_a_batch_longer_than_one_transaction_decides_each_item_in_order(
    running: RunningSigner, client: RemoteSigner, caplog: pytest.LogCaptureFixture
) -> None:
    assert CLAIMS_PER_TRANSACTION < 250
    key = client.create_key(COLLECTION, "timestamp")
    versions = list(range(1, 2 * CLAIMS_PER_TRANSACTION + 51))
    versions[CLAIMS_PER_TRANSACTION] = versions[CLAIMS_PER_TRANSACTION - 1]  # repeats the previous slice's last
    versions[CLAIMS_PER_TRANSACTION + 100] = 5  # far below what the key signed by then
    payloads = [tuf_payload("timestamp", v) for v in versions]
    with caplog.at_level(logging.INFO, logger="tufnotary.signer"):
        results = client.sign_batch([(key, p) for p in payloads])
    refused = {i: type(r).__name__ for i, r in enumerate(results) if isinstance(r, Exception)}
    assert refused == {CLAIMS_PER_TRANSACTION: "VersionConflictError", CLAIMS_PER_TRANSACTION + 100: "VersionConflictError"}
    for payload, result in zip(payloads, results):
        if not isinstance(result, Exception):
            key.verify_signature(result, payload)
    accepted = [v for i, v in enumerate(versions) if i not in refused]
    assert [e.version for e in running.keystore.audit_entries(key_id=key.keyid)] == accepted
    assert running.keystore.get_key(key.keyid).max_signed_version == versions[-1]  # type: ignore[union-attr]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("signed ")]
    assert len(lines) == 3 and all(line.startswith("signed batch items=") for line in lines)
    assert "signed=198 refused=2" in lines[1]  # both refusals fall in the second slice
    assert not any(p.decode() in r.getMessage() for p in payloads[:3] for r in caplog.records)


def test_grouped_batch_answers_as_signbatch_does_one_message_per_transaction(
    running: RunningSigner, channel: grpc.Channel
) -> None:
    stub = signer_pb2_grpc.SignerStub(channel)
    key = running.keystore.create_key(COLLECTION, "timestamp")
    versions = list(range(1, 2 * CLAIMS_PER_TRANSACTION + 51))
    versions[7] = 3  # below what the key signed by then
    requests = [signer_pb2.SignRequest(key_id=key.key_id, payload=tuf_payload("timestamp", v), collection=COLLECTION,
                                       role="timestamp") for v in versions]
    requests.append(signer_pb2.SignRequest(key_id="0" * 64, payload=requests[0].payload, collection=COLLECTION,
                                           role="timestamp"))
    groups = list(stub.SignBatchGrouped(signer_pb2.SignBatchRequest(requests=requests), timeout=60))
    assert [len(g.results) for g in groups] == [CLAIMS_PER_TRANSACTION, CLAIMS_PER_TRANSACTION, 51]
    results = [r for g in groups for r in g.results]
    assert [r.index for r in results] == list(range(len(requests)))
    errors = {r.index: (r.error.code, r.error.highest_signed_version) for r in results if r.HasField("error")}
    assert errors == {7: ("ROLLBACK_REFUSED", 7), len(requests) - 1: ("KEY_NOT_FOUND", 0)}
    public = running.keystore.get_key(key.key_id).to_sslib_key()  # type: ignore[union-attr]
    for request, result in zip(requests, results):
        if result.HasField("signature"):
            public.verify_signature(Signature(result.signature.key_id, result.signature.signature), request.payload)
    assert [e.version for e in running.keystore.audit_entries(key_id=key.key_id)] == versions[:7] + versions[8:]


def test_signbatch_streams_one_message_per_item_with_the_results_of_a_grouped_batch(
    running: RunningSigner, channel: grpc.Channel
) -> None:
    stub = signer_pb2_grpc.SignerStub(channel)

    def mixed(key: KeyRecord) -> signer_pb2.SignBatchRequest:
        payloads = [tuf_payload("timestamp", 1), tuf_payload("timestamp", 1), tuf_payload("snapshot", 2),
                    tuf_payload("timestamp", 2, timedelta(days=3)), tuf_payload("timestamp", 3)]
        requests = [signer_pb2.SignRequest(key_id=key.key_id, payload=p, collection=key.collection, role="timestamp")
                    for p in payloads]
        requests.insert(4, signer_pb2.SignRequest(key_id="0" * 64, payload=payloads[4], collection=COLLECTION,
                                                  role="timestamp"))
        return signer_pb2.SignBatchRequest(requests=requests)

    def summary(results: list[signer_pb2.SignBatchResult], key: KeyRecord) -> list[tuple[object, ...]]:
        """Each result with its key, collection and the clock left out of the messages."""
        def message(text: str) -> str:
            text = text.replace(key.key_id, "KEY").replace(key.collection, "COLLECTION")
            return re.sub(r"expires \S+, |latest allowed now: [^)]*", "", text)
        return [(r.index, "signed") if r.HasField("signature") else
                (r.index, r.error.code, r.error.grpc_status, message(r.error.message), r.error.highest_signed_version)
                for r in results]

    streamed_key = running.keystore.create_key("team/streamed", "timestamp")
    grouped_key = running.keystore.create_key("team/grouped", "timestamp")
    streamed = list(stub.SignBatch(mixed(streamed_key), timeout=30))
    grouped = [r for g in stub.SignBatchGrouped(mixed(grouped_key), timeout=30) for r in g.results]
    assert summary(streamed, streamed_key) == summary(grouped, grouped_key)
    assert [(s[0], s[1]) for s in summary(streamed, streamed_key)] == [
        (0, "signed"), (1, "VERSION_ALREADY_SIGNED"), (2, "INVALID_REQUEST"), (3, "EXPIRY_TOO_LONG"),
        (4, "KEY_NOT_FOUND"), (5, "signed"),
    ]
    assert streamed[1].error.highest_signed_version == 1
    assert streamed[1].error.grpc_status == grpc.StatusCode.ABORTED.value[0]


def test_each_batch_item_reports_the_first_rule_it_breaks(
    running: RunningSigner, channel: grpc.Channel, tmp_path: Path
) -> None:
    """The order of the checks, when an item breaks several rules: the key exists, the request names its collection
    and role, the payload, the private key can be used, the key is not retired, the version. Keys retired or
    deleted by another replica after this signer cached their private halves are refused too."""
    store = running.keystore
    live = store.create_key("team/live", "timestamp")
    retired = store.create_key("team/retired", "timestamp")
    store.retire_key(retired.key_id)
    elsewhere = store.create_key("team/custody", "timestamp")
    gone = store.create_key("team/gone", "timestamp")
    retired_elsewhere = store.create_key("team/retired-elsewhere", "timestamp")
    stub = signer_pb2_grpc.SignerStub(channel)

    def request(key: KeyRecord | str, payload: bytes, collection: str = "", role: str = "timestamp"):
        key_id = key if isinstance(key, str) else key.key_id
        collection = collection or (COLLECTION if isinstance(key, str) else key.collection)
        return signer_pb2.SignRequest(key_id=key_id, payload=payload, collection=collection, role=role)

    # This signer caches the private halves of `gone` and `retired_elsewhere`; another replica then
    # deletes one and retires the other (here: straight in the shared catalog).
    warm = [request(gone, tuf_payload("timestamp", 1)), request(retired_elsewhere, tuf_payload("timestamp", 1))]
    assert all(r.HasField("signature") for g in stub.SignBatchGrouped(signer_pb2.SignBatchRequest(requests=warm),
                                                                      timeout=30) for r in g.results)
    with sqlite3.connect(tmp_path / "signer.db") as db:
        db.execute("DELETE FROM signer_keys WHERE key_id = ?", (gone.key_id,))
        db.execute("UPDATE signer_keys SET state = 'retired', active = 0 WHERE key_id = ?", (retired_elsewhere.key_id,))
        db.execute("UPDATE signer_keys SET custody = 'pkcs11' WHERE key_id = ?", (elsewhere.key_id,))
    db.close()

    good, not_json = tuf_payload("timestamp", 2), b"not json"
    too_long = tuf_payload("timestamp", 2, timedelta(days=3))
    requests = [
        request("0" * 64, not_json),
        request(live, not_json, collection="team/other"),
        request(live, too_long, role="snapshot"),
        request(retired, good, collection="team/other"),
        request(retired, not_json),
        request(retired, good),
        request(elsewhere, good, collection="team/other"),
        request(elsewhere, too_long),
        request(elsewhere, good),
        request(gone, good),
        request(gone, good, collection="team/other"),
        request(retired_elsewhere, good),
        request(retired_elsewhere, good, role="snapshot"),
        request(live, good),
        request(live, good),
    ]
    names = {k.key_id: n for n, k in [("LIVE", live), ("RETIRED", retired), ("CUSTODY", elsewhere), ("GONE", gone),
                                        ("RETIRED_ELSEWHERE", retired_elsewhere)]}

    def message(text: str) -> str:
        for key_id, name in names.items():
            text = text.replace(key_id, name)
        return re.sub(r"expires \S+, | \(latest allowed now: [^)]*\)", "", text)

    results = [r for g in stub.SignBatchGrouped(signer_pb2.SignBatchRequest(requests=requests), timeout=30)
               for r in g.results]
    assert [(r.error.code, message(r.error.message)) if r.HasField("error") else "signed" for r in results] == [
        ("KEY_NOT_FOUND", f"the signer holds no key {'0' * 64}"),
        ("INVALID_REQUEST", "key LIVE belongs to team/live timestamp, not to team/other timestamp"),
        ("INVALID_REQUEST", "key LIVE belongs to team/live timestamp, not to team/live snapshot"),
        ("INVALID_REQUEST", "key RETIRED belongs to team/retired timestamp, not to team/other timestamp"),
        ("INVALID_REQUEST", "the payload is not JSON: the signer only signs TUF timestamp metadata"),
        ("KEY_RETIRED", "key RETIRED is retired: it never signs again"),
        ("INVALID_REQUEST", "key CUSTODY belongs to team/custody timestamp, not to team/other timestamp"),
        ("EXPIRY_TOO_LONG", "timestamp metadata version 2 beyond the signer's maximum window of 1 day, 0:00:00 "
                            "for timestamp"),
        ("KEY_UNWRAP_FAILED", "key CUSTODY is held in 'pkcs11' custody, which this signer is not configured for"),
        ("KEY_NOT_FOUND", "the signer holds no key GONE"),
        ("KEY_NOT_FOUND", "the signer holds no key GONE"),
        ("KEY_RETIRED", "key RETIRED_ELSEWHERE is retired: it never signs again"),
        ("INVALID_REQUEST", "key RETIRED_ELSEWHERE belongs to team/retired-elsewhere timestamp, not to "
                            "team/retired-elsewhere snapshot"),
        "signed",
        ("VERSION_ALREADY_SIGNED", "version 2 already signed: key LIVE (team/live timestamp) signs only versions "
                                   "above 2"),
    ]
    assert [(e.key_id, e.version) for e in store.audit_entries()] == [
        (gone.key_id, 1), (retired_elsewhere.key_id, 1), (live.key_id, 2)
    ]
    single = stub.Sign  # one item: the same order
    for item, expected in [(requests[1], grpc.StatusCode.INVALID_ARGUMENT), (requests[9], grpc.StatusCode.NOT_FOUND),
                           (requests[11], grpc.StatusCode.FAILED_PRECONDITION)]:
        with pytest.raises(grpc.RpcError) as refused:
            single(item, timeout=30)
        assert refused.value.code() == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", ["retire", "delete"])
def test_a_key_another_replica_retires_or_deletes_between_batches_is_refused_on_every_backend(
    replicas: Callable[[], KeyStore], dev_certs: DevCertPaths, tmp_path: Path, change: str
) -> None:
    serving, admin = replicas(), replicas()
    with inprocess_signer(dev_certs, tmp_path, keystore=serving, policy=SigningPolicy()) as running, \
            remote_signer(running.address, dev_certs) as client:
        key = client.create_key(COLLECTION, "timestamp")
        other = client.create_key("team/other", "timestamp")
        first = client.sign_batch([(key, tuf_payload("timestamp", 1)), (other, tuf_payload("timestamp", 1))])
        assert not any(isinstance(r, Exception) for r in first)  # both private halves are cached now
        if change == "retire":
            admin.retire_key(key.keyid)
        else:
            admin.delete_key(key.keyid)
        payload = tuf_payload("timestamp", 2)
        refused, signed = client.sign_batch([(key, payload), (other, payload)])
        assert isinstance(refused, SignerRefusedError)
        assert refused.detail["code"] == ("KEY_RETIRED" if change == "retire" else "KEY_NOT_FOUND")
        other.verify_signature(signed, payload)  # type: ignore[arg-type]
        assert [(e.key_id, e.version) for e in admin.audit_entries()] == [
            (key.keyid, 1), (other.keyid, 1), (other.keyid, 2)
        ]

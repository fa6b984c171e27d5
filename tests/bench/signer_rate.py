"""(8) Our signer's rate over gRPC (single `Sign` and `SignBatch`, through the server's `RemoteSigner`)
beside the raw in-process rate of the same key type (securesystemslib `CryptoSigner`, ed25519): the
physical limit of one core.

The rates are wall-clock and include the client's side (building each payload, verifying each returned
signature), on a machine whose cores the client, the signer and PostgreSQL share. The signer process's
own CPU time per signature (from /proc) is reported too: it does not move with the machine's load, and
1e6 / (CPU µs per signature) is the rate one signer core would reach with the client elsewhere. The per-core
ratios compare it with the raw rate per CPU second of the measuring thread.

Two derived figures split the signer's CPU per batch call into a fixed part and a part per item (from the
batches of 50 and of 200), and a no-op call of a 50-item batch's sizes to a gRPC server built the same way
(`grpc_floor`) shows how much of the fixed part the transport alone costs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import grpc
from securesystemslib.signer import CryptoSigner, Key, Signature
from tuf.api.serialization.json import CanonicalJSONSerializer

from tests.bench import grpc_floor
from tests.bench.procs import cpu_seconds
from tests.stack import Stack
from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server.publish import build_timestamp
from tufnotary.server.remote_signer import RemoteSigner

_SNAPSHOT = b'{"signed":{}}'
RENEWER_BATCH = 200  # the server's default RENEW_BATCH


def _payload(version: int) -> bytes:
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    return CanonicalJSONSerializer().serialize(build_timestamp(version, expires, _SNAPSHOT, 1).signed)


def signer_rates(stack: Stack, prefix: str, seconds: float, keys: int = 50,
                 keys_ready: Callable[[], None] | None = None) -> dict[str, float]:
    """Signatures per second over `seconds` each: single Sign calls cycling over `keys` timestamp
    keys, then batches of one payload per key (and of the renewer's 200 keys), then raw in-process
    ed25519. `keys_ready` is called once the first keys exist (e.g. to start a profiler)."""
    signer = RemoteSigner(stack.signer_address.replace("127.0.0.1", "localhost"), stack.certs.ca_cert,
                          stack.certs.client_cert, stack.certs.client_key, timeout=30)
    try:
        pairs = [(f"{prefix}/k{i}", signer.create_key(f"{prefix}/k{i}", "timestamp")) for i in range(keys)]
        versions = {collection: 0 for collection, _ in pairs}
        if keys_ready:
            keys_ready()

        def next_payload(collection: str) -> bytes:
            versions[collection] += 1
            return _payload(versions[collection])

        proc = stack.procs.get("signer")
        pid = proc.pid if proc is not None else None

        count, started, cpu = 0, time.perf_counter(), cpu_seconds(pid)
        while time.perf_counter() - started < seconds:
            collection, key = pairs[count % keys]
            signer.sign(key, next_payload(collection), collection, "timestamp")
            count += 1
        single = count / (time.perf_counter() - started)
        single_cpu = (cpu_seconds(pid) - cpu) / count

        batch, batch_cpu = _batch_rate(signer, pairs, next_payload, pid, seconds)
        grouped, grouped_cpu = _grouped_rate(stack, pairs, next_payload, pid, seconds)
        # The renewer's batch: RENEW_BATCH (default 200) collections per call.
        more = [(f"{prefix}/k{i}", signer.create_key(f"{prefix}/k{i}", "timestamp")) for i in range(keys, RENEWER_BATCH)]
        versions.update({collection: 0 for collection, _ in more})
        renewer, renewer_cpu = _batch_rate(signer, pairs + more, next_payload, pid, seconds)
    finally:
        signer.close()

    raw_signer, payload = CryptoSigner.generate_ed25519(), _payload(1)
    count, started, started_cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - started < seconds:
        raw_signer.sign(payload)
        count += 1
    raw = count / (time.perf_counter() - started)
    # Per CPU second, as the signer's figures are: a wall-clock rate would drop (and flatter the ratios) whenever
    # this thread waits for a core.
    raw_cpu = count / (time.thread_time() - started_cpu)
    # The signer's CPU per call as a fixed part plus a part per item, from the two batch sizes; beside it what a
    # no-op call of a batch's sizes costs the same kind of gRPC server (the transport's share of the fixed part).
    per_item = (renewer_cpu * RENEWER_BATCH - batch_cpu * keys) / (RENEWER_BATCH - keys)
    fixed = batch_cpu * keys - per_item * keys
    request_bytes, response_bytes = _message_sizes(pairs)
    noop = grpc_floor.noop_call_cpu(stack.certs, request_bytes, response_bytes, seconds)
    return {"signer Sign (gRPC, 1 per call) sig/s": single,
            f"signer SignBatch ({keys} per call) sig/s": batch,
            "raw in-process ed25519 sig/s (1 core)": raw,
            "batch / raw": batch / raw,
            f"signer SignBatchGrouped ({keys} per call, raw stub, client verifies) sig/s": grouped,
            "grouped batch / raw": grouped / raw,
            "signer process CPU µs per Sign": single_cpu * 1e6,
            "signer process CPU µs per SignBatch item": batch_cpu * 1e6,
            "SignBatch sig/s per signer core (1e6 / CPU µs)": 1 / batch_cpu if batch_cpu else 0.0,
            "per signer core / raw": (1 / batch_cpu) / raw_cpu if batch_cpu else 0.0,
            "signer process CPU µs per SignBatchGrouped item": grouped_cpu * 1e6,
            "SignBatchGrouped sig/s per signer core (1e6 / CPU µs)": 1 / grouped_cpu if grouped_cpu else 0.0,
            "grouped per signer core / raw": (1 / grouped_cpu) / raw_cpu if grouped_cpu else 0.0,
            f"signer batch of {RENEWER_BATCH} (the renewer's) sig/s": renewer,
            f"batch of {RENEWER_BATCH} / raw": renewer / raw,
            f"signer process CPU µs per item, batch of {RENEWER_BATCH}": renewer_cpu * 1e6,
            f"batch of {RENEWER_BATCH} per signer core / raw": (1 / renewer_cpu) / raw_cpu if renewer_cpu else 0.0,
            "raw ed25519 CPU µs per signature (the per-core ratios' raw)": 1e6 / raw_cpu,
            f"signer CPU µs per batch call, fixed part (intercept of {keys} and {RENEWER_BATCH} per call)": fixed * 1e6,
            f"signer CPU µs per added batch item (slope from {keys} to {RENEWER_BATCH} per call)": per_item * 1e6,
            f"no-op gRPC call of a {keys}-item batch's sizes (mTLS, thread-pool server): server CPU µs": noop * 1e6}


def _message_sizes(pairs: list[tuple[str, Key]]) -> tuple[int, int]:
    """Serialized sizes of a batch request of one timestamp per (collection, key) and of its grouped answer (ed25519
    signatures, hex)."""
    payload = _payload(1)
    request = _batch_request([(collection, key, payload) for collection, key in pairs])
    answer = signer_pb2.SignBatchResults(results=[
        signer_pb2.SignBatchResult(index=index, signature=signer_pb2.SignResponse(key_id=key.keyid, signature="0" * 128))
        for index, (_, key) in enumerate(pairs)
    ])
    return request.ByteSize(), answer.ByteSize()


def _batch_request(items: list[tuple[str, Key, bytes]]) -> signer_pb2.SignBatchRequest:
    """A batch request signing each (collection, key, payload) as that collection's timestamp."""
    return signer_pb2.SignBatchRequest(requests=[
        signer_pb2.SignRequest(key_id=key.keyid, payload=payload, collection=collection, role="timestamp")
        for collection, key, payload in items
    ])


def _batch_rate(signer: RemoteSigner, pairs: list[tuple[str, Key]], next_payload: Callable[[str], bytes],
                pid: int | None, seconds: float) -> tuple[float, float]:
    """`RemoteSigner.sign_batch` (as the renewer calls it: SignBatchGrouped) of one payload per key, for `seconds`:
    (sig/s, signer CPU seconds per signature)."""
    count, started, cpu = 0, time.perf_counter(), cpu_seconds(pid)
    while time.perf_counter() - started < seconds:
        items = [(key, next_payload(collection)) for collection, key in pairs]
        results = signer.sign_batch(items)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise RuntimeError(f"batch signing refused: {failed[0]}")
        count += len(items)
    return count / (time.perf_counter() - started), (cpu_seconds(pid) - cpu) / count


def _grouped_rate(stack: Stack, pairs: list[tuple[str, Key]], next_payload: Callable[[str], bytes],
                  pid: int | None, seconds: float) -> tuple[float, float]:
    """SignBatchGrouped (one message per group of results) through a plain stub rather than RemoteSigner (which
    calls the same method), doing the client work RemoteSigner does: build each payload, verify each signature.
    Returns (sig/s, signer CPU seconds per signature)."""
    certs = stack.certs
    credentials = grpc.ssl_channel_credentials(
        certs.ca_cert.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    with grpc.secure_channel(stack.signer_address.replace("127.0.0.1", "localhost"), credentials) as channel:
        stub = signer_pb2_grpc.SignerStub(channel)
        count, started, cpu = 0, time.perf_counter(), cpu_seconds(pid)
        while time.perf_counter() - started < seconds:
            items = [(collection, key, next_payload(collection)) for collection, key in pairs]
            for group in stub.SignBatchGrouped(_batch_request(items), timeout=30):
                for result in group.results:
                    if not result.HasField("signature"):
                        raise RuntimeError(f"batch signing refused: {result.error.code}: {result.error.message}")
                    _, key, payload = items[result.index]
                    key.verify_signature(Signature(key.keyid, result.signature.signature), payload)
                    count += 1
        return count / (time.perf_counter() - started), (cpu_seconds(pid) - cpu) / count

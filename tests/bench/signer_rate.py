"""(8) Our signer's rate over gRPC (single `Sign` and `SignBatch`, through the server's `RemoteSigner`)
beside the raw in-process rate of the same key type (securesystemslib `CryptoSigner`, ed25519): the
physical limit of one core."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.serialization.json import CanonicalJSONSerializer

from tests.stack import Stack
from tufnotary.server.publish import build_timestamp
from tufnotary.server.remote_signer import RemoteSigner

_SNAPSHOT = b'{"signed":{}}'


def _payload(version: int) -> bytes:
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    return CanonicalJSONSerializer().serialize(build_timestamp(version, expires, _SNAPSHOT, 1).signed)


def signer_rates(stack: Stack, prefix: str, seconds: float, keys: int = 50,
                 keys_ready: Callable[[], None] | None = None) -> dict[str, float]:
    """Signatures per second over `seconds` each: single Sign calls cycling over `keys` timestamp
    keys, then SignBatch calls of one payload per key, then raw in-process ed25519. `keys_ready` is
    called once the keys exist (e.g. to start a profiler on the signing alone)."""
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

        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            collection, key = pairs[count % keys]
            signer.sign(key, next_payload(collection), collection, "timestamp")
            count += 1
        single = count / (time.perf_counter() - started)

        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            items = [(key, next_payload(collection)) for collection, key in pairs]
            results = signer.sign_batch(items)
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise RuntimeError(f"batch signing refused: {failed[0]}")
            count += len(items)
        batch = count / (time.perf_counter() - started)
    finally:
        signer.close()

    raw_signer, payload = CryptoSigner.generate_ed25519(), _payload(1)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        raw_signer.sign(payload)
        count += 1
    raw = count / (time.perf_counter() - started)
    return {"signer Sign (gRPC, 1 per call) sig/s": single,
            f"signer SignBatch ({keys} per call) sig/s": batch,
            "raw in-process ed25519 sig/s (1 core)": raw,
            "batch / raw": batch / raw}

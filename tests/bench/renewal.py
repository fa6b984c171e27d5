"""(7) Renew the timestamps of many collections: create them directly through the HTTP API with
python-tuf metadata (fast), then time passes of the server's own `renewer.renew_all` against the
stack's database and signer.

The collections are created by a server whose timestamps last one hour; each pass runs with the
renewal clock (`tufnotary.server.publish.utcnow`, in this process only) 40 minutes further on, so
that every timestamp is due (less than half its hour left) and the new one still passes the
signer's expiry window."""

from __future__ import annotations

import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from unittest import mock

from tests.e2e.tuf_http import new_collection
from tests.stack import Stack
from tufnotary.server import publish
from tufnotary.server.config import ServerConfig
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.server.renewer import renew_all
from tufnotary.server.storage import open_store

EXPIRY = timedelta(hours=1)
STEP = timedelta(minutes=40)
# A long signer deadline: creating keys costs the signer one scrypt derivation each (see docs/performance.md),
# and the stack's default of 3 s answers 503 SIGNER_UNAVAILABLE when creations queue up behind each other.
ENV = {"TUFNOTARY_SERVER_TIMESTAMP_EXPIRY_DAYS": str(EXPIRY / timedelta(days=1)),
       "TUFNOTARY_SERVER_RENEW_INTERVAL": "0", "TUFNOTARY_SERVER_SIGNER_TIMEOUT": "30"}


def create_collections(stack: Stack, prefix: str, count: int, threads: int = 2) -> tuple[float, int]:
    """(seconds, 503 answers retried) to create `count` collections, `threads` at a time."""
    retried = 0

    def create(i: int) -> None:
        nonlocal retried
        for attempt in range(5):
            try:
                new_collection(stack, f"{prefix}/c{i}")
                return
            except urllib.error.HTTPError as e:
                if e.code != 503 or attempt == 4:
                    raise
                retried += 1
                time.sleep(1.0)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(count)))
    return time.perf_counter() - started, retried


def renewal_passes(stack: Stack, passes: int) -> list[tuple[float, int]]:
    """(seconds, collections renewed) of each pass."""
    config = ServerConfig(database_url=stack.server_db, timestamp_expiry=EXPIRY)
    store = open_store(stack.server_db)
    signer = RemoteSigner(stack.signer_address.replace("127.0.0.1", "localhost"), stack.certs.ca_cert,
                          stack.certs.client_cert, stack.certs.client_key, timeout=30)
    real_utcnow = publish.utcnow
    results = []
    try:
        for n in range(1, passes + 1):
            with mock.patch.object(publish, "utcnow", lambda n=n: real_utcnow() + n * STEP):
                started = time.perf_counter()
                renewed = renew_all(store, signer, config)
                results.append((time.perf_counter() - started, renewed))
    finally:
        signer.close()
        store.close()
    return results


# --- the server's side of renewal alone ----------------------------------------------------------
# Creating collections through the stack costs the signer a key derivation each (~0.5 s today), so
# 10,000 collections cannot be set up in a benchmark run yet. This measures what renewal costs the
# server and its database with the signer taken out: collections written straight into the store,
# and an in-process ed25519 signer behind the `BatchSigner` interface (no gRPC, no signer database).
# Run: python -m tests.bench.renewal --collections 10000 [--batch 500] [--passes 2]


class InProcessSigner:
    """`BatchSigner` over in-process ed25519 keys: one timestamp and one snapshot key for all."""

    def __init__(self) -> None:
        from securesystemslib.signer import CryptoSigner

        self.keys = {role: CryptoSigner.generate_ed25519() for role in ("timestamp", "snapshot")}

    def sign_batch(self, items, timeout=None):
        by_id = {s.public_key.keyid: s for s in self.keys.values()}
        return [by_id[key.keyid].sign(payload) for key, payload, *_ in items]


def seed_collections(store, signer: InProcessSigner, prefix: str, count: int, expiry: timedelta) -> float:
    """Write `count` published collections (root, targets, snapshot, timestamp) straight into `store`."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root, Targets
    from tuf.api.serialization.json import JSONSerializer

    from tufnotary.server.publish import build_snapshot, build_timestamp
    from tufnotary.server.storage import Commit, NewFile

    started = time.perf_counter()
    now = publish.utcnow()
    owner = CryptoSigner.generate_ed25519()
    root = Metadata(Root(expires=now + timedelta(days=365)))
    for role in ("root", "targets"):
        root.signed.add_key(owner.public_key, role)
    for role, s in signer.keys.items():
        root.signed.add_key(s.public_key, role)
    root.sign(owner)
    targets = Metadata(Targets(expires=now + timedelta(days=90)))
    targets.sign(owner)
    serial = JSONSerializer(compact=True)
    root_bytes, targets_bytes = root.to_bytes(serial), targets.to_bytes(serial)
    snapshot = build_snapshot(1, now + timedelta(days=7), {"targets": 1})
    snapshot.sign(signer.keys["snapshot"])
    snapshot_bytes = snapshot.to_bytes(serial)
    timestamp = build_timestamp(1, now + expiry, snapshot_bytes, 1)
    timestamp.sign(signer.keys["timestamp"])
    timestamp_bytes = timestamp.to_bytes(serial)
    files = [NewFile("root", 1, root_bytes), NewFile("targets", 1, targets_bytes),
             NewFile("snapshot", 1, snapshot_bytes, online_expires=now + timedelta(days=7)),
             NewFile("timestamp", 1, timestamp_bytes, online_expires=now + expiry)]
    expected = {f.role: 0 for f in files}
    for start in range(0, count, 500):
        store.commit_many([Commit(f"{prefix}/c{i}", files, expected) for i in range(start, min(count, start + 500))])
    return time.perf_counter() - started


def server_side_passes(url: str, count: int, batch: int, passes: int) -> list[tuple[float, int]]:
    """(seconds, renewed) of each pass over `count` fresh collections, the signer in-process."""
    store = open_store(url)
    store.migrate()
    signer = InProcessSigner()
    try:
        seeded = seed_collections(store, signer, "bench", count, EXPIRY)
        print(f"seeded {count} collections in {seeded:.1f}s", flush=True)
        config = ServerConfig(database_url=url, timestamp_expiry=EXPIRY, renew_batch=batch)
        real_utcnow = publish.utcnow
        results = []
        for n in range(1, passes + 1):
            now = real_utcnow() + n * STEP
            started = time.perf_counter()
            renewed = renew_all(store, signer, config, now=now)  # type: ignore[arg-type]
            results.append((time.perf_counter() - started, renewed))
            print(f"pass {n}: {renewed} renewed in {results[-1][0]:.2f}s", flush=True)
        return results
    finally:
        store.close()


if __name__ == "__main__":
    import argparse

    from tests.pgcluster import PgCluster

    parser = argparse.ArgumentParser(description=server_side_passes.__doc__)
    parser.add_argument("--collections", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=ServerConfig().renew_batch)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--sqlite", help="an SQLite file instead of a throwaway PostgreSQL")
    args = parser.parse_args()
    if args.sqlite:
        server_side_passes(f"sqlite:///{args.sqlite}", args.collections, args.batch, args.passes)
    else:
        cluster = PgCluster.start()
        try:
            server_side_passes(cluster.new_database(), args.collections, args.batch, args.passes)
        finally:
            cluster.stop()

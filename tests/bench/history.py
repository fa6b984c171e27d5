"""What a long history costs: `current()` (every publish and every uncached read) and a one-role `commit`
(every renewal) on a collection whose timestamp has been renewed N times, on PostgreSQL and SQLite.

A timestamp renewed every 30 minutes has ~17,500 stored versions after a year; every version is kept.
Both operations should cost the same at any N (docs/performance.md, "History").

Run: python -m tests.bench.history [--versions 10,2000,20000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

from tufnotary.server.storage import MetaStore, NewFile, open_store

TOP = {"root": 1, "targets": 1, "snapshot": 1}


def _timestamp(version: int) -> NewFile:
    return NewFile("timestamp", version, b'{"signed":{"_type":"timestamp","version":%d}}' % version,
                   online_expires=datetime.now(timezone.utc))


def grow(store: MetaStore, collection: str, versions: int) -> None:
    """Create `collection` and commit its timestamp until it has `versions` of them, one commit each."""
    store.commit(collection, [NewFile(role, 1, b'{"%s":1}' % role.encode()) for role in TOP] + [_timestamp(1)],
                 expected={})
    for version in range(2, versions + 1):
        store.commit(collection, [_timestamp(version)], expected={**TOP, "timestamp": version - 1})


def median_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(url: str, sizes: list[int], repeat: int) -> list[tuple[int, float, float]]:
    """(versions, current() ms, commit ms) for a collection of each size in `sizes`."""
    store = open_store(url)
    store.migrate()
    try:
        return [(size, *_timed(store, f"history/{size}", size, repeat)) for size in sizes]
    finally:
        store.close()


def _timed(store: MetaStore, collection: str, size: int, repeat: int) -> tuple[float, float]:
    grow(store, collection, size)
    newest = [size]

    def commit_next() -> None:
        newest[0] += 1
        store.commit(collection, [_timestamp(newest[0])], expected={**TOP, "timestamp": newest[0] - 1})

    return median_ms(lambda: store.current(collection, preload=("root", "targets")), repeat), median_ms(commit_next, repeat)


def main() -> None:
    from tests.pgcluster import PgCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default="10,2000,20000", help="stored timestamp versions (comma-separated)")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per figure (median)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.versions.split(",")]
    print("| backend | stored versions | current() ms | commit ms |\n|---|---|---|---|")
    cluster = PgCluster.start()
    try:
        with tempfile.TemporaryDirectory() as work:
            for backend, url in (("PostgreSQL", cluster.new_database()), ("SQLite", f"sqlite:///{work}/h.db")):
                for size, current_ms, commit_ms in measure(url, sizes, args.repeat):
                    print(f"| {backend} | {size:,} | {current_ms:.2f} | {commit_ms:.2f} |", flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

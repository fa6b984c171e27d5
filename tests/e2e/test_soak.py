"""A bounded soak (about a minute) of mixed reads and publishes against the real processes on
PostgreSQL: no 5xx, and the memory (RSS) of the gunicorn workers and of the signer stays flat."""

from __future__ import annotations

import random
import threading
import time

import pytest
from tuf.api.metadata import Metadata

from tests.e2e.faults import NO_AUTH, call, children, publish, rss_bytes
from tests.e2e.tuf_http import get, new_collection
from tests.stack import start_stack

DURATION = 60.0
WARMUP = 15.0  # allocator pools, caches and connection pools fill up first
MAX_GROWTH = 20 * 1024 * 1024  # bytes per process between the end of warm-up and the end


@pytest.fixture(scope="module")
def soak_stack(pg_cluster, tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("soak"), pg_cluster.new_database(), pg_cluster.new_database(),
                        server_env=NO_AUTH)
    yield stack
    stack.stop()


def _memory(stack) -> dict[str, int]:
    sizes = {"signer": rss_bytes(stack.procs["signer"].pid)}
    for pid in children(stack.procs["server"].pid):
        sizes[f"worker-{pid}"] = rss_bytes(pid)
    return sizes


def test_soak_mixed_reads_and_publishes_memory_stays_flat(soak_stack):
    stack = soak_stack
    collections = [f"soak/app-{i}" for i in range(4)]
    repos = {c: new_collection(stack, c) for c in collections}
    locks = {c: threading.Lock() for c in collections}
    counts = {"read": 0, "published": 0, "conflict": 0}
    errors: list = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            c = random.choice(collections)
            name = random.choice(["timestamp.json", "snapshot.json", "targets.json", "root.json", "1.root.json",
                                  "timestamp.key"])
            status, _ = call("GET", stack.base(c) + name)
            counts["read"] += 1
            if status != 200:
                errors.append(("GET", name, status))

    def publisher() -> None:
        n = 0
        while not stop.is_set():
            c = random.choice(collections)
            with locks[c]:
                n += 1
                md = Metadata.from_bytes(get(stack.base(c) + "targets.json"))
                md.signed.version += 1
                repos[c].roles["targets"] = md
                repos[c].add_target(f"build-{threading.get_ident()}-{n}", str(n).encode() * 50)
                data = repos[c].sign("targets")
            status, body = publish(stack, c, {"targets": data})
            if status == 200:
                counts["published"] += 1
            elif status == 409:
                counts["conflict"] += 1
            else:
                errors.append(("POST", status, body))

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=publisher)
                                                                     for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        time.sleep(WARMUP)
        baseline = _memory(stack)
        time.sleep(DURATION - WARMUP)
        final = _memory(stack)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    elapsed = time.monotonic() - started
    growth = {name: final.get(name, 0) - size for name, size in baseline.items()}
    print(f"soak {elapsed:.0f}s: {counts}, RSS growth (MiB): "
          + ", ".join(f"{k}={v / 2**20:.1f}" for k, v in growth.items()))
    assert errors == []
    assert counts["published"] > 50 and counts["read"] > 1000, counts
    assert set(final) == set(baseline), "a worker was replaced during the soak"
    assert all(g < MAX_GROWTH for g in growth.values()), growth

"""The workloads of issue 8. Each takes one system (ours or notary, see `System`) and returns
measurements `{metric: value}` of one run; `run.py` alternates systems and runs and summarises."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Protocol

from tests.bench.loadgen import wrk
from tests.bench.procs import PeakMemory

Measurements = dict[str, float]
READ_TARGETS = 10


class System(Protocol):
    name: str

    def server_pids(self) -> list[int]: ...
    def signer_pids(self) -> list[int]: ...
    def metadata_url(self, collection: str, role: str) -> str: ...
    def init(self, collection: str, bins: int | None = None) -> float: ...
    def stage(self, collection: str, paths: Sequence[str]) -> None: ...
    def add_one(self, collection: str, path: str) -> float: ...
    def publish(self, collection: str) -> float: ...
    def database_bytes(self) -> int: ...


def server_managed(system: System, collection: str) -> None:
    """Give notary's snapshot key to its server, so that publishes are signed as ours are."""
    hand_over = getattr(system, "server_managed_snapshot", None)
    if hand_over:
        hand_over(collection)


def fresh_collection(system: System, collection: str) -> None:
    system.init(collection)
    server_managed(system, collection)


def memory(system: System) -> PeakMemory:
    return PeakMemory({"server": system.server_pids, "signer": system.signer_pids})


def _memory_measurements(peak: PeakMemory, prefix: str) -> Measurements:
    return {f"{prefix} peak RSS {name} MiB": kib / 1024 for name, kib in peak.peak_rss_kib.items()} | {
        f"{prefix} peak PSS {name} MiB": kib / 1024 for name, kib in peak.peak_pss_kib.items()}


# --- (1) and (9): reads --------------------------------------------------------------------------
def setup_read_collection(system: System, collection: str) -> None:
    fresh_collection(system, collection)
    system.stage(collection, [f"read/target-{i}" for i in range(READ_TARGETS)])
    system.publish(collection)


def reads(system: System, collection: str, seconds: float) -> Measurements:
    """GET timestamp.json and root.json with wrk -t2 -c32 and -c2; peak memory meanwhile."""
    out: Measurements = {}
    with memory(system) as peak:
        for role in ("timestamp", "root"):
            for connections in (32, 2):
                result = wrk(system.metadata_url(collection, role), connections, seconds)
                label = f"GET {role}.json c{connections}"
                out[f"{label} req/s"] = result.requests_per_s
                out[f"{label} p50 ms"] = result.p50_ms
                out[f"{label} p99 ms"] = result.p99_ms
                out[f"{label} non-2xx"] = result.non_2xx + result.socket_errors
    return out | _memory_measurements(peak, "(1) reads:")


# --- (2): reads while timestamps are renewed -----------------------------------------------------
def _current_version(url: str, attempts: int = 10) -> int:
    """The served timestamp's version; retried, because notary answers 500 while it races to renew."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return int(json.load(r)["signed"]["version"])
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def reads_during_renewal(system: System, collection: str, seconds: float, connections: int,
                         provoke: Callable[[], None] | None, every: float) -> Measurements:
    """GET timestamp.json while timestamps are renewed: ours renews in the background (the server
    was restarted with a short expiry); for notary `provoke` expires the stored timestamp every
    `every` s so that the next GET re-signs it. Counts non-2xx and the versions minted."""
    url = system.metadata_url(collection, "timestamp")
    before = _current_version(url)
    stop = threading.Event()

    def expire_loop() -> None:
        while not stop.wait(every):
            assert provoke is not None
            provoke()

    thread = threading.Thread(target=expire_loop, daemon=True) if provoke else None
    if thread:
        thread.start()
    try:
        result = wrk(url, connections, seconds)
    finally:
        stop.set()
        if thread:
            thread.join()
    label = f"GET timestamp.json c{connections} during renewal"
    return {f"{label} req/s": result.requests_per_s, f"{label} p99 ms": result.p99_ms,
            f"{label} non-2xx": result.non_2xx + result.socket_errors,
            f"{label} renewals": _current_version(url) - before}


# --- (3), (4), (5): publishes --------------------------------------------------------------------
def publish_one_into_empty(system: System, prefix: str, reps: int) -> Measurements:
    times = []
    for i in range(reps):
        collection = f"{prefix}-{i}"
        fresh_collection(system, collection)
        system.add_one(collection, "images/app:v1")
        times.append(system.publish(collection))
    return {"publish 1 target, empty collection s": statistics.median(times)}


def publish_many(system: System, prefix: str, count: int, reps: int) -> Measurements:
    """The median of `reps` publishes of `count` targets at once, each into a fresh collection."""
    times = []
    for rep in range(reps):
        collection = f"{prefix}-{rep}"
        fresh_collection(system, collection)
        system.stage(collection, [f"images/app-{i}:v1" for i in range(count)])
        times.append(system.publish(collection))
    return {f"publish {count} targets s": statistics.median(times)}


def setup_big_collection(system: System, collection: str, count: int, bins: int) -> Measurements:
    """A collection holding `count` targets (ours in `bins` hash bins; notary has no bins)."""
    system.init(collection, bins=bins)
    server_managed(system, collection)
    system.stage(collection, [f"images/app-{i}:v1" for i in range(count)])
    before = system.database_bytes()
    with memory(system) as peak:
        seconds = system.publish(collection)
    grown = system.database_bytes() - before
    return {f"setup: publish {count} targets at once s": seconds,
            "setup: database bytes per target": grown / count} | _memory_measurements(peak, "setup bulk publish:")


def publish_one_into_big(system: System, collection: str, count: int, run: int) -> Measurements:
    system.add_one(collection, f"images/extra-{run}-{time.time_ns()}:v1")
    before = system.database_bytes()
    with memory(system) as peak:
        seconds = system.publish(collection)
    grown = system.database_bytes() - before
    return {f"publish 1 target into {count} s": seconds,
            "(5) database growth per 1-target publish KiB": grown / 1024} | _memory_measurements(
                peak, f"(5) 1 into {count}:")


# --- (6): many collections -----------------------------------------------------------------------
def create_collections(system: System, prefix: str, count: int) -> Measurements:
    started = time.perf_counter()
    times = [system.init(f"{prefix}-{i}") for i in range(count)]
    total = time.perf_counter() - started
    return {"init 1 collection s": statistics.median(times), "init collections/s": count / total}


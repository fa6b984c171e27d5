"""The server's time per publish upload, measured in-process: the Flask app over PostgreSQL and a
signer process, fed prebuilt multipart bodies, so only the server's handling of the POST counts.

    python -m tests.bench.server_publish [--reps 30] [--bins-targets 20000] [--profile out.prof]

Reports, per workload, the median wall and process-CPU milliseconds of one POST: (a) 1 target
into a freshly initialised collection, (b) 1,000 targets at once into a fresh collection,
(c) 1 target into one hash bin of a collection of `--bins-targets` targets in 256 bins.
The signer runs in its own process, so the CPU time is the server's alone.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Delegations, Metadata, SuccinctRoles, TargetFile, Targets

from tests.pgcluster import PgCluster
from tests.stack import Stack
from tests.tuf_factory import CollectionFactory
from tufnotary.server.app import create_app
from tufnotary.server.auth_config import AuthConfig
from tufnotary.server.config import ServerConfig
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.server.storage import open_store
from tufnotary.signer.certs import write_dev_certs

BOUNDARY = "bench-boundary"
BIN_BITS = 8  # 256 bins, as `init --bins 256`


def multipart(files: dict[str, bytes]) -> bytes:
    return b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{role}"; filename="{role}.json"\r\n'
        f"Content-Type: application/json\r\n\r\n".encode() + data + b"\r\n"
        for role, data in files.items()
    ) + f"--{BOUNDARY}--\r\n".encode()


class Bench:
    def __init__(self, http, profiler: cProfile.Profile | None) -> None:
        self.http = http
        self.profiler = profiler
        self.serial = 0

    def post(self, collection: str, files: dict[str, bytes], timed: bool = True) -> tuple[float, float]:
        """(wall s, process CPU s) of one POST of `files`; profiled if `timed`."""
        body = multipart(files)
        profiler = self.profiler if timed else None
        if profiler:
            profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        response = self.http.post(f"/v2/{collection}/_trust/tuf/", data=body,
                                  content_type=f"multipart/form-data; boundary={BOUNDARY}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler:
            profiler.disable()
        if response.status_code != 200:
            raise RuntimeError(f"publish refused: {response.get_data(as_text=True)[:500]}")
        return wall, cpu

    def key(self, collection: str, role: str) -> SSlibKey:
        body = self.http.get(f"/v2/{collection}/_trust/tuf/{role}.key").get_json()
        return SSlibKey.from_dict(body.pop("keyid"), body)

    def fresh(self) -> tuple[str, CollectionFactory]:
        """An initialised collection (root and empty targets v1 published)."""
        self.serial += 1
        collection = f"bench/c{self.serial}-{time.monotonic_ns()}"
        repo = CollectionFactory(online_keys={r: self.key(collection, r) for r in ("timestamp", "snapshot")})
        self.post(collection, {"root": repo.sign("root"), "targets": repo.sign("targets")}, timed=False)
        return collection, repo


def add_targets(repo: CollectionFactory, count: int, role: str = "targets") -> None:
    for i in range(count):
        data = f"target {i} {time.monotonic_ns()}".encode()
        repo.roles[role].signed.targets[f"files/t{i}-{hashlib.sha256(data).hexdigest()[:8]}"] = TargetFile(
            len(data), {"sha256": hashlib.sha256(data).hexdigest()}, f"files/t{i}")


def one_target(bench: Bench) -> tuple[float, float]:
    collection, repo = bench.fresh()
    add_targets(repo, 1)
    repo.bump("targets")
    return bench.post(collection, {"targets": repo.sign("targets")})


def many_targets(bench: Bench, count: int = 1000) -> tuple[float, float]:
    collection, repo = bench.fresh()
    add_targets(repo, count)
    repo.bump("targets")
    return bench.post(collection, {"targets": repo.sign("targets")})


def big_collection(bench: Bench, count: int) -> Callable[[], tuple[float, float]]:
    """A collection of `count` targets in 256 succinct bins; returns a 1-target publish into one bin."""
    collection, repo = bench.fresh()
    signer = repo.signers["targets"][0]
    succinct = SuccinctRoles([], 1, BIN_BITS, "bins")
    repo.md("targets").signed.delegations = Delegations(keys={}, succinct_roles=succinct)
    repo.md("targets").signed.add_key(signer.public_key, None)
    for name in succinct.get_roles():
        repo.roles[name] = Metadata(Targets(expires=repo.now + timedelta(days=30)))
        repo.signers[name] = [signer]
    for i in range(count):
        data = f"big {i}".encode()
        path = f"files/big-{i}"
        repo.roles[succinct.get_role_for_target(path)].signed.targets[path] = TargetFile(
            len(data), {"sha256": hashlib.sha256(data).hexdigest()}, path)
    repo.bump("targets")
    bench.post(collection, {role: repo.sign(role) for role in repo.roles}, timed=False)
    counter = iter(range(10**9))

    def publish_one() -> tuple[float, float]:
        path = f"files/extra-{next(counter)}"
        role = succinct.get_role_for_target(path)
        repo.roles[role].signed.targets[path] = TargetFile(1, {"sha256": hashlib.sha256(path.encode()).hexdigest()}, path)
        repo.bump(role)
        return bench.post(collection, {role: repo.sign(role)})

    return publish_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--bins-targets", type=int, default=20_000)
    parser.add_argument("--profile", help="write a cProfile of the timed POSTs to this file")
    parser.add_argument("--only", choices=("a", "b", "c"), action="append")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="server-publish-bench-"))
    cluster = PgCluster.start()
    stack = Stack(workdir, write_dev_certs(workdir / "certs"), cluster.new_database(), cluster.new_database())
    store = None
    try:
        stack.start_signer()
        store = open_store(stack.server_db)
        store.migrate()
        signer = RemoteSigner(stack.signer_address.replace("127.0.0.1", "localhost"), stack.certs.ca_cert,
                              stack.certs.client_cert, stack.certs.client_key, timeout=10)
        config = ServerConfig(max_upload_bytes=64 * 1024 * 1024, read_cache_bytes=0,
                              auth=AuthConfig(mode="none", rate_limit=0))
        app = create_app(config, store=store, signer=signer)
        profiler = cProfile.Profile() if args.profile else None
        bench = Bench(app.test_client(), profiler)
        workloads: dict[str, Callable[[], tuple[float, float]]] = {}
        only = set(args.only or ("a", "b", "c"))
        if "a" in only:
            workloads["(a) 1 target, fresh collection"] = lambda: one_target(bench)
        if "b" in only:
            workloads["(b) 1,000 targets, fresh collection"] = lambda: many_targets(bench)
        if "c" in only:
            workloads[f"(c) 1 target into a bin of {args.bins_targets:,}"] = big_collection(bench, args.bins_targets)
        bench.profiler = None
        for run in workloads.values():  # warm up: imports, connections, the gRPC channel
            run()
        bench.profiler = profiler
        results = {}
        for name, run in workloads.items():
            samples = [run() for _ in range(args.reps)]
            results[name] = {"wall_ms": statistics.median(s[0] for s in samples) * 1000,
                             "cpu_ms": statistics.median(s[1] for s in samples) * 1000}
            print(f"{name}: wall {results[name]['wall_ms']:.1f} ms, CPU {results[name]['cpu_ms']:.1f} ms"
                  f" (median of {args.reps})", flush=True)
        if profiler:
            profiler.dump_stats(args.profile)
        print(json.dumps(results))
    finally:
        if store is not None:
            store.close()
        stack.stop()
        cluster.stop()


if __name__ == "__main__":
    main()

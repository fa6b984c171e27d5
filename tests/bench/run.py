"""`python -m tests.bench.run [--compare notary] [--runs N] [--quick] [--json FILE] [--profile DIR]`

Starts a throwaway PostgreSQL cluster, our stack on it and (with `--compare notary`) Debian's notary
stack on the same cluster, runs the workloads of issue 8 alternating the systems run by run, prints
one table of medians and spread, and stops everything it started (also on Ctrl-C, SIGTERM or error).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from tests.bench import profile, renewal, signer_rate, workloads
from tests.bench.loadgen import ensure_wrk
from tests.bench.notary_stack import NotarySystem
from tests.bench.our_stack import OurSystem, new_workdir
from tests.bench.report import Results, table
from tests.pgcluster import PgCluster
from tests.stack import BIN

WORKLOADS = ("reads", "renewal-reads", "publish", "big", "init", "renew", "signer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--compare", choices=["notary"], help="also run Debian's notary 0.7.0 stack")
    p.add_argument("--quick", action="store_true", help="2 runs, short loads, small sizes (for development)")
    p.add_argument("--runs", type=int, help="runs per workload (default 5, --quick 2)")
    p.add_argument("--seconds", type=float, help="wrk duration per case (default 10, --quick 2)")
    p.add_argument("--inits", type=int, help="collections created per run in (6) (default 200 = 1,000 over 5 runs)")
    p.add_argument("--big", type=int, help="targets already in the collection of (5) (default 100,000)")
    p.add_argument("--bins", type=int, default=256, help="hash bins of our big collection (default 256)")
    p.add_argument("--renew-collections", type=int, help="collections renewed in (7) (default 1,000; the target is 10,000: creating them over HTTP costs ~40 ms each)")
    p.add_argument("--renew-passes", type=int, help="timed renewal passes in (7) (default 2, --quick 1)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the work dirs (configs, logs, trust dirs) in /tmp")
    p.add_argument("--profile", type=Path, help="py-spy our server under (1) and (5); write summaries here")
    a = p.parse_args(argv)
    q = a.quick
    a.runs = a.runs or (2 if q else 5)
    a.seconds = a.seconds or (2.0 if q else 10.0)
    a.inits = a.inits if a.inits is not None else (5 if q else 200)
    a.big = a.big or (5_000 if q else 100_000)
    a.renew_collections = a.renew_collections or (100 if q else 1_000)
    a.renew_passes = a.renew_passes or (1 if q else 2)
    a.only = set(a.only.split(",")) if a.only else set(WORKLOADS)
    unknown = a.only - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return a


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, object]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in load],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def alternate(systems: list, run: int) -> list:
    """Run order of the systems in run `run`: ours first in even runs, the other first in odd ones."""
    return systems if run % 2 == 0 else list(reversed(systems))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    ensure_wrk()
    results = Results()
    results.notes["machine"] = machine()
    results.notes["command"] = "python -m tests.bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    tag = str(int(time.time()))
    try:
        run_all(args, results, tag)
    finally:  # what was measured is reported even when a workload fails or the run is interrupted
        print(table(results))
        if args.json:
            results.write_json(args.json)
            log(f"results written to {args.json}")
    return 0


def run_all(args: argparse.Namespace, results: Results, tag: str) -> None:
    with ExitStack() as cleanup:
        log("starting PostgreSQL")
        cluster = PgCluster.start()
        cleanup.callback(cluster.stop)
        log("starting our stack")
        ours_dir = new_workdir("tufnotary-bench-ours-")
        if not args.keep:
            cleanup.callback(shutil.rmtree, ours_dir, True)
        ours = OurSystem(cluster, ours_dir)
        cleanup.callback(ours.stop)
        systems: list = [ours]
        if args.compare == "notary":
            log("starting the notary stack")
            notary_dir = new_workdir("tufnotary-bench-notary-")
            if not args.keep:
                cleanup.callback(shutil.rmtree, notary_dir, True)
            notary = NotarySystem(cluster, notary_dir)
            cleanup.callback(notary.stop)
            systems.append(notary)
            results.notes["notary"] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "notary"],
                                                     capture_output=True, text=True).stdout
        read_collection = f"bench/read-{tag}"
        big_collection = f"bench/big-{tag}"
        for system in systems:
            if args.only & {"reads", "renewal-reads"}:
                workloads.setup_read_collection(system, read_collection)
            if "big" in args.only:
                log(f"{system.name}: setting up a collection of {args.big} targets")
                results.add(system.name, workloads.setup_big_collection(system, big_collection, args.big, args.bins))

        for run in range(args.runs):
            for system in alternate(systems, run):
                name = system.name
                log(f"run {run + 1}/{args.runs}: {name}")
                if "reads" in args.only:
                    results.add(name, workloads.reads(system, read_collection, args.seconds))
                if "publish" in args.only:
                    results.add(name, workloads.publish_one_into_empty(system, f"bench/p1-{tag}-{run}", 3))
                    results.add(name, workloads.publish_many(system, f"bench/p1000-{tag}-{run}", 1000, 3))
                if "big" in args.only:
                    results.add(name, workloads.publish_one_into_big(system, big_collection, args.big, run))
                if "init" in args.only and args.inits:
                    results.add(name, workloads.create_collections(system, f"bench/init-{tag}-{run}", args.inits))

        if "renewal-reads" in args.only:
            # ours: timestamps of ~2.6 s renewed once half gone, renewer every 0.25 s
            ours.restart_server({"TUFNOTARY_SERVER_TIMESTAMP_EXPIRY_DAYS": "0.00003",
                                 "TUFNOTARY_SERVER_RENEW_INTERVAL": "0.25"})
            ours.add_one(read_collection, "read/renewal-start")  # a timestamp with the short expiry
            ours.publish(read_collection)
            for run in range(args.runs):
                for system in alternate(systems, run):
                    log(f"renewal reads {run + 1}/{args.runs}: {system.name}")
                    provoke = (lambda s=system: s.expire_timestamp(read_collection)) if system.name == "notary" else None
                    for connections in (32, 2):
                        results.add(system.name, workloads.reads_during_renewal(
                            system, read_collection, args.seconds, connections, provoke, every=1.0))
            ours.restart_server({})

        if "signer" in args.only:
            for run in range(args.runs):
                log(f"signer rate {run + 1}/{args.runs}")
                results.add("ours", signer_rate.signer_rates(ours.stack, f"bench/signer-{tag}-{run}",
                                                              min(args.seconds, 5.0)))

        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            results.notes["profiles"] = run_profiles(ours, read_collection, big_collection, args)

        if "renew" in args.only:
            ours.restart_server(renewal.ENV)
            log(f"creating {args.renew_collections} collections through the HTTP API")
            created, retried = renewal.create_collections(ours.stack, f"bench/renew-{tag}", args.renew_collections)
            results.add("ours", {f"(7) setup: create {args.renew_collections} collections over HTTP s": created,
                                 "(7) setup: 503 answers retried": retried})
            for seconds, renewed in renewal.renewal_passes(ours.stack, args.renew_passes):
                log(f"renewal pass: {renewed} in {seconds:.1f}s")
                results.add("ours", {f"(7) renewal pass over {args.renew_collections} collections s": seconds,
                                     "(7) timestamps renewed per s": renewed / seconds,
                                     "(7) timestamps renewed in the pass": renewed})


def run_profiles(ours: OurSystem, read_collection: str, big_collection: str,
                 args: argparse.Namespace) -> dict[str, object]:
    """py-spy on every gunicorn process of our server under (1) GET timestamp.json c32 and during
    publishes of 1 target into the big collection (5), and on the signer under (8). Not during the
    measured runs."""
    from tests.bench.loadgen import wrk

    summaries: dict[str, object] = {}
    master = ours.server_pids()[0]
    if "reads" in args.only or "renewal-reads" in args.only:
        out = args.profile / "reads-timestamp-c32.txt"
        log("profiling the server under GET timestamp.json c32")
        recorder = profile.start(master, out, args.seconds + 2)
        time.sleep(1.0)
        wrk(ours.metadata_url(read_collection, "timestamp"), 32, args.seconds)
        profile.finish(recorder)
        summaries["reads"] = profile.summarize(out.read_text()) if out.exists() else "py-spy wrote nothing"
    if "big" in args.only:
        out = args.profile / "publish-1-into-big.txt"
        log("profiling the server during 3 publishes of 1 target into the big collection")
        recorder = profile.start(master, out, 600)
        time.sleep(1.0)
        for i in range(3):
            ours.add_one(big_collection, f"images/profiled-{i}:v1")
            ours.publish(big_collection)
        profile.finish(recorder)
        summaries["publish-1-into-big"] = profile.summarize(out.read_text()) if out.exists() else "py-spy wrote nothing"
    if "publish" in args.only:
        out = args.profile / "cli-publish-1-target.txt"
        log("profiling one CLI publish of 1 target into a fresh collection")
        collection = f"bench/profiled-cli-{time.time_ns()}"
        ours.init(collection)
        ours.add_one(collection, "images/app:v1")
        profile.record_command([str(BIN / "tufnotary"), "publish", collection], ours.env, out)
        summaries["cli-publish"] = profile.summarize(out.read_text()) if out.exists() else "py-spy wrote nothing"
    if "signer" in args.only:
        out = args.profile / "signer-sign-and-batch.txt"
        log("profiling the signer under Sign and SignBatch")
        recorders = []

        def start_recording() -> None:  # after key creation: profile the signing only
            recorders.append(profile.start(ours.signer_pids()[0], out, 30))
            time.sleep(1.0)

        signer_rate.signer_rates(ours.stack, f"bench/signer-profiled-{time.time_ns()}", 3.0, keys=20,
                                 keys_ready=start_recording)
        profile.finish(recorders[0])
        summaries["signer"] = profile.summarize(out.read_text()) if out.exists() else "py-spy wrote nothing"
    (args.profile / "summary.json").write_text(json.dumps(summaries, indent=2))
    return summaries


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped")
        sys.exit(130)

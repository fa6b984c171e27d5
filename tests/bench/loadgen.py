"""The load generator: `wrk --latency`, installed with apt when missing, always bounded in time."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.bench.stats import WrkResult, parse_wrk


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed and we are not root: apt-get install wrk")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def wrk(url: str, connections: int, seconds: float, threads: int = 2) -> WrkResult:
    threads = min(threads, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "--latency", url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return parse_wrk(proc.stdout)

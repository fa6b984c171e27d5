"""Processes the harness starts and watches: a process-tree lister and a peak-memory sampler over /proc."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's children file)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (e.g. a gunicorn master and its workers)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children(current)
    return pids


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB over `pids`; PSS splits pages shared between forks fairly."""
    return sum(_status_kib(p, "VmRSS") for p in pids), sum(_pss_kib(p) for p in pids)


class PeakMemory:
    """Samples the RSS and PSS sums of each named group of processes every `interval` s; keeps the peaks.

    `groups` maps a name to a callable returning the root pids of that group (re-evaluated at each
    sample, so gunicorn workers that are replaced are counted)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.1) -> None:
        self._groups = groups
        self._interval = interval
        self._stop = threading.Event()
        self.peak_rss_kib: dict[str, int] = {name: 0 for name in groups}
        self.peak_pss_kib: dict[str, int] = {name: 0 for name in groups}
        self._thread = threading.Thread(target=self._run, name="bench-peak-memory", daemon=True)

    def _sample(self) -> None:
        for name, roots in self._groups.items():
            pids = [p for root in roots() for p in tree(root)]
            rss, pss = memory_kib(pids)
            self.peak_rss_kib[name] = max(self.peak_rss_kib[name], rss)
            self.peak_pss_kib[name] = max(self.peak_pss_kib[name], pss)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

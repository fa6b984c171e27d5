"""Helpers of the fault and soak tests: HTTP calls that return the status instead of raising, process
lookups, and an independent check (python-tuf's ngclient, from a pinned root) that a collection is whole."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from tuf.api.metadata import Metadata

from tests.e2e.tuf_http import post, updater

_checks = itertools.count()
NO_AUTH = {"TUFNOTARY_SERVER_AUTH": "none"}  # these tests are about faults, not access control


def call(method: str, url: str, timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def publish(stack, collection: str, files: dict[str, bytes]) -> tuple[int, dict]:
    """(status, body) of a publish; status 0 when the connection broke before an answer."""
    try:
        return 200, post(stack, collection, files)
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, {"raw": body[:200].decode("utf-8", "replace")}
    except (ConnectionError, OSError) as e:
        return 0, {"connection": type(e).__name__}


def error_code(body: dict) -> str:
    try:
        return body["errors"][0]["code"]
    except (KeyError, IndexError, TypeError):
        return ""


def version_of(data: bytes) -> int:
    return Metadata.from_bytes(data).signed.version


def assert_whole(stack, collection: str, root_v1: bytes, workdir: Path) -> Metadata:
    """The collection as stored verifies from its first root with ngclient: timestamp -> snapshot ->
    targets line up (no partial publish). Returns the current targets as the client sees them."""
    directory = workdir / f"check-{next(_checks)}"
    client = updater(stack.base(collection), root_v1, directory)
    client.refresh()
    targets = Metadata.from_file(str(directory / "client-metadata" / "targets.json"))
    status, current = call("GET", stack.base(collection) + "targets.json")
    assert status == 200 and version_of(current) == targets.signed.version
    return targets


def children(pid: int) -> list[int]:
    """Child processes of `pid` (gunicorn's workers under its master)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def kill_workers(master_pid: int) -> list[int]:
    workers = children(master_pid)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    return workers


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

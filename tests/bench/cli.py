"""Running a publisher CLI as a subprocess and timing it, for either system."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Mapping, Sequence


class CommandError(RuntimeError):
    pass


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float = 600.0) -> float:
    """Run `argv` to completion; return its wall time in seconds; raise CommandError if it fails."""
    started = time.perf_counter()
    proc = subprocess.run(list(argv), env=dict(env), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise CommandError(f"{' '.join(argv[:4])}… exited {proc.returncode}:\n"
                           f"{proc.stdout.decode(errors='replace')[-1500:]}{proc.stderr.decode(errors='replace')[-1500:]}")
    return elapsed


def fake_digest(path: str) -> str:
    """A stable SHA-256 hex digest for a target that exists only by name."""
    return hashlib.sha256(path.encode()).hexdigest()

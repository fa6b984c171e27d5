"""Sampling profiles of our server under load with py-spy (the `bench` extra), summarised from
py-spy's collapsed-stack output: where the samples are (self time) and which frames they pass
through (inclusive time)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float) -> subprocess.Popen:
    """Record `pid` and its children (all gunicorn workers) for at most `seconds`."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                             "--format", "raw", "--rate", "200", "--duration", str(int(seconds) + 1),
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def record_command(argv: list[str], env: dict[str, str], out: Path) -> None:
    """Run `argv` under py-spy (e.g. one CLI publish), writing collapsed stacks to `out`."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    subprocess.run([exe, "record", "--format", "raw", "--rate", "500", "--output", str(out), "--", *argv],
                   env=env, check=True, capture_output=True, timeout=300)


def finish(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_IDLE = ("EpollSelector.select", "PollSelector.select", "_worker (thread.py)", "Arbiter.sleep",
         "PollableMethodQueue", "Condition.wait", "Event.wait")


def _frame_name(frame: str) -> str:
    """'fn (path/to/module.py:12)' -> 'fn (module.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').split(':')[0]).name})" if where else name


def summarize(collapsed: str, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares (percent of samples) of the busiest frames, idle workers left out."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        if frames[-1].startswith(_IDLE):
            continue  # an idle master, or a worker thread waiting for a request
        count = int(count_text)
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(f, 100.0 * c / total) for f, c in self_time.most_common(top)],
        "inclusive": [(f, 100.0 * c / total) for f, c in inclusive.most_common(top * 3)
                      if not f.startswith(("<module>", "process ", "Thread.", "_worker (", "_WorkItem.run"))][:top * 2],
    }

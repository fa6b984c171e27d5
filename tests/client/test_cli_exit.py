"""The `tufnotary` console script exits without tearing the interpreter down (`cli.run`,
`cli.exit_now`), and still exits as `sys.exit` would: same status, every byte of output written,
atexit handlers run, other threads finished first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_EXIT_NOW = """
import atexit, sys, threading, time
from tufnotary.client.cli import exit_now
atexit.register(lambda: print("atexit ran", file=sys.stderr))
if "thread" in sys.argv:
    def late():
        time.sleep(0.3)
        print("thread finished", flush=True)
    threading.Thread(target=late).start()
if "profiled" in sys.argv:
    sys.setprofile(lambda *args: None)
print("x" * 200_000)  # block-buffered when stdout is a pipe: lost unless flushed
try:
    exit_now(int(sys.argv[1]))
finally:  # runs on the way out of sys.exit, never after os._exit
    print("unwound", file=sys.stderr)
print("never printed")
"""


def script() -> Path:
    return Path(sys.executable).parent / "tufnotary"


@pytest.mark.parametrize("status", [0, 1, 3])
def test_exit_now_keeps_the_status_the_output_and_atexit_handlers(status: int) -> None:
    proc = subprocess.run([sys.executable, "-c", _EXIT_NOW, str(status)], capture_output=True, text=True, timeout=60)

    assert proc.returncode == status
    assert proc.stdout == "x" * 200_000 + "\n"
    assert proc.stderr == "atexit ran\n"  # and no "unwound": the interpreter was not torn down


def test_exit_now_under_a_profiler_exits_normally_so_it_can_report() -> None:
    proc = subprocess.run([sys.executable, "-c", _EXIT_NOW, "2", "profiled"], capture_output=True, text=True,
                          timeout=60)

    assert proc.returncode == 2
    assert proc.stdout == "x" * 200_000 + "\n"
    assert proc.stderr == "unwound\natexit ran\n"


def test_exit_now_waits_for_a_running_thread_as_sys_exit_does() -> None:
    proc = subprocess.run([sys.executable, "-c", _EXIT_NOW, "4", "thread"], capture_output=True, text=True,
                          timeout=60)

    assert proc.returncode == 4
    assert proc.stdout.endswith("thread finished\n")
    assert "never printed" not in proc.stdout
    assert proc.stderr == "unwound\natexit ran\n"


def test_exit_now_into_a_closed_pipe_exits_as_python_does() -> None:
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-c", _EXIT_NOW, "0"], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=60)
    os.close(write)

    assert proc.returncode != 0  # not a silent success with the output lost
    assert "BrokenPipeError" in proc.stderr


def test_console_script_output_and_status(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
    env["TUFNOTARY_TRUST_DIR"] = str(tmp_path / "trust")

    listed = subprocess.run([str(script()), "key", "list"], env=env, capture_output=True, text=True, timeout=60)
    missing = subprocess.run([str(script()), "add", "not-initialised", "app:v1", "--digest", "sha256:" + "ab" * 32,
                              "--length", "1"], env=env, capture_output=True, text=True, timeout=60)

    assert listed.returncode == 0, listed.stderr
    assert missing.returncode == 1
    assert missing.stderr.startswith("tufnotary: error: not-initialised is not initialised")
    assert missing.stdout == ""

"""Run the real stack for tests: a `tufnotary-signer serve` process and a gunicorn-served
`tufnotary-server serve` process, on loopback, with mutual TLS between them.

Every process is stopped at teardown (terminate, then kill).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.pgcluster import free_port
from tufnotary.signer.certs import DevCertPaths, write_dev_certs

BIN = Path(sys.executable).parent


def _wait(what: str, proc: subprocess.Popen, ready, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Stack:
    workdir: Path
    certs: DevCertPaths
    server_db: str
    signer_db: str
    url: str = ""
    signer_address: str = ""
    server_env: dict[str, str] = field(default_factory=dict)  # extra TUFNOTARY_SERVER_* settings
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def base(self, collection: str) -> str:
        return f"{self.url}/v2/{collection}/_trust/tuf/"

    def start_signer(self) -> None:
        """Start the signer; a restart reuses its address, which the server already knows."""
        port = int(self.signer_address.rsplit(":", 1)[1]) if self.signer_address else free_port()
        self.signer_address = f"127.0.0.1:{port}"
        passphrase = self.workdir / "signer-passphrase"
        if not passphrase.exists():
            passphrase.touch(mode=0o600)
            passphrase.write_text("integration test passphrase")
        env = {
            **os.environ,
            "TUFNOTARY_SIGNER_LISTEN": self.signer_address,
            "TUFNOTARY_SIGNER_DATABASE_URL": self.signer_db,
            "TUFNOTARY_SIGNER_TLS_CERT": str(self.certs.signer_cert),
            "TUFNOTARY_SIGNER_TLS_KEY": str(self.certs.signer_key),
            "TUFNOTARY_SIGNER_TLS_CLIENT_CA": str(self.certs.ca_cert),
            "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(passphrase),
        }
        log = self.workdir / "signer.log"
        proc = subprocess.Popen([str(BIN / "tufnotary-signer"), "serve"], env=env,
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.procs["signer"] = proc

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        _wait("tufnotary-signer", proc, listening, log)

    def start_server(self, workers: int = 2) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "TUFNOTARY_SERVER_DATABASE_URL": self.server_db,
            "TUFNOTARY_SERVER_SIGNER_ADDRESS": self.signer_address.replace("127.0.0.1", "localhost"),
            "TUFNOTARY_SERVER_SIGNER_CA": str(self.certs.ca_cert),
            "TUFNOTARY_SERVER_SIGNER_CLIENT_CERT": str(self.certs.client_cert),
            "TUFNOTARY_SERVER_SIGNER_CLIENT_KEY": str(self.certs.client_key),
            "TUFNOTARY_SERVER_SIGNER_TIMEOUT": "10",  # generous: the suite shares 2 cores
            # Authentication off unless a test's server_env configures it (tests/e2e/test_auth*.py).
            "TUFNOTARY_SERVER_AUTH": "none",
            "TUFNOTARY_SERVER_RATE_LIMIT": "0",
            **self.server_env,
        }
        log = self.workdir / "server.log"
        proc = subprocess.Popen(
            [str(BIN / "tufnotary-server"), "serve", "--migrate", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers)],
            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        self.procs["server"] = proc

        def pinging() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as r:
                    return r.status == 200
            except urllib.error.HTTPError as e:
                return e.code == 401  # up, with authentication on
            except OSError:
                return False

        _wait("tufnotary-server", proc, pinging, log)

    def stop(self) -> None:
        for name in ("server", "signer"):
            if name in self.procs:
                stop_process(self.procs[name])


def start_stack(workdir: Path, server_db: str, signer_db: str, server_env: dict[str, str] | None = None) -> Stack:
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir, write_dev_certs(workdir / "certs"), server_db, signer_db, server_env=server_env or {})
    try:
        stack.start_signer()
        stack.start_server()
    except Exception:
        stack.stop()
        raise
    return stack


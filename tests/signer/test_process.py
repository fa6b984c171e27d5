"""The real `tufnotary-signer` process: serve over mTLS from env config, stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.pgcluster import free_port
from tests.signer.harness import PASSPHRASE, remote_signer, tuf_payload
from tufnotary.signer.certs import DevCertPaths

SIGNER_BIN = Path(sys.executable).parent / "tufnotary-signer"
COLLECTION = "wabbit-networks/net-monitor"


@dataclass
class SignerProcess:
    proc: subprocess.Popen[str]
    address: str
    certs: DevCertPaths
    _log: list[str] = field(default_factory=list)
    _drain: threading.Thread | None = None

    def start_draining(self) -> None:
        """Read stderr continuously: a full pipe would block the signer's logging, and with it the signer."""
        stream = self.proc.stderr
        assert stream is not None
        self._drain = threading.Thread(target=lambda: self._log.extend(iter(stream.readline, "")), daemon=True)
        self._drain.start()

    def log(self) -> str:
        """Everything the signer wrote to stderr; complete once it has exited."""
        if self.proc.poll() is not None and self._drain is not None:
            self._drain.join(10)
        return "".join(self._log)


def signer_env(certs: DevCertPaths, tmp_path: Path, port: int, database_url: str = "") -> dict[str, str]:
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    passphrase_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_SIGNER_")}
    env.update(
        TUFNOTARY_SIGNER_LISTEN=f"127.0.0.1:{port}",
        TUFNOTARY_SIGNER_DATABASE_URL=database_url or f"sqlite:///{tmp_path / 'signer.db'}",
        TUFNOTARY_SIGNER_TLS_CERT=str(certs.signer_cert),
        TUFNOTARY_SIGNER_TLS_KEY=str(certs.signer_key),
        TUFNOTARY_SIGNER_TLS_CLIENT_CA=str(certs.ca_cert),
        TUFNOTARY_SIGNER_PASSPHRASE_FILE=str(passphrase_file),
    )
    return env


def wait_until_serving(process: SignerProcess, deadline_seconds: float = 20.0) -> None:
    certs = process.certs
    credentials = grpc.ssl_channel_credentials(
        certs.ca_cert.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    deadline = time.monotonic() + deadline_seconds
    with grpc.secure_channel(process.address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.proc.poll() is not None:
                raise AssertionError(f"signer exited early: {process.log()}")
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("signer did not become healthy in time")
            time.sleep(0.05)


@contextmanager
def running_signer(certs: DevCertPaths, env: dict[str, str]) -> Iterator[SignerProcess]:
    """`tufnotary-signer serve` with `env` (its listen address must be set); killed if still alive at the end."""
    proc = subprocess.Popen(
        [str(SIGNER_BIN), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process = SignerProcess(proc, env["TUFNOTARY_SIGNER_LISTEN"].replace("127.0.0.1", "localhost"), certs)
    process.start_draining()
    try:
        wait_until_serving(process)
        yield process
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        process.log()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def signer_process(dev_certs: DevCertPaths, tmp_path: Path) -> Iterator[SignerProcess]:
    with running_signer(dev_certs, signer_env(dev_certs, tmp_path, free_port())) as process:
        yield process


def test_serves_over_mtls_and_stops_cleanly_on_sigterm(signer_process: SignerProcess) -> None:
    with remote_signer(signer_process.address, signer_process.certs) as client:
        key = client.create_key(COLLECTION, "timestamp")
        assert client.get_public_key(COLLECTION, "timestamp") == key
        assert client.list_keys(COLLECTION) == [key]
        payload = tuf_payload("timestamp", 1)
        signature = client.sign(key, payload)
        key.verify_signature(signature, payload)
        assert client.delete_key(key.keyid) is True

    signer_process.proc.send_signal(signal.SIGTERM)
    assert signer_process.proc.wait(timeout=10) == 0
    stderr = signer_process.log()
    assert "signer stopped" in stderr
    assert f"signed key_id={key.keyid}" in stderr
    assert PASSPHRASE not in stderr
    assert "Traceback" not in stderr


def test_serve_without_configuration_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_SIGNER_")}
    result = subprocess.run(
        [str(SIGNER_BIN), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "TUFNOTARY_SIGNER_TLS_CERT" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_without_passphrase_says_what_to_set(dev_certs: DevCertPaths, tmp_path: Path) -> None:
    env = signer_env(dev_certs, tmp_path, free_port())
    del env["TUFNOTARY_SIGNER_PASSPHRASE_FILE"]
    result = subprocess.run([str(SIGNER_BIN), "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "TUFNOTARY_SIGNER_PASSPHRASE_FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_gen_certs_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = subprocess.run(
        [str(SIGNER_BIN), "gen-certs", "--out", str(out)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    names = {"ca.crt", "ca.key", "signer.crt", "signer.key", "server-client.crt", "server-client.key"}
    assert {p.name for p in out.iterdir()} == names
    for key in ("ca.key", "signer.key", "server-client.key"):
        assert (out / key).stat().st_mode & 0o777 == 0o600

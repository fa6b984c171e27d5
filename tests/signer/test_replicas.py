"""The real `tufnotary-signer` processes under stress: two replicas racing over one PostgreSQL key store,
SIGKILL in the middle of a batch, SIGTERM finishing in-flight work, passphrase rewrap while serving,
and the PKCS#11 store behind a real process."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from tests.pgcluster import free_port
from tests.signer.conftest import SOFTHSM_LABEL, SOFTHSM_PIN
from tests.signer.harness import PASSPHRASE, remote_signer, tuf_payload
from tests.signer.test_process import SIGNER_BIN, running_signer, signer_env
from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server.errors import VersionConflictError
from tufnotary.signer.certs import DevCertPaths
from tufnotary.signer.config import Pkcs11Config

COLLECTION = "wabbit-networks/net-monitor"


def batch_stub(address: str, certs: DevCertPaths) -> tuple[grpc.Channel, signer_pb2_grpc.SignerStub]:
    credentials = grpc.ssl_channel_credentials(
        certs.ca_cert.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    channel = grpc.secure_channel(address, credentials)
    return channel, signer_pb2_grpc.SignerStub(channel)


def test_two_signer_processes_racing_on_one_version_exactly_one_signs(
    dev_certs: DevCertPaths, tmp_path: Path, postgres_url: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env_a = signer_env(dev_certs, tmp_path / "a", free_port(), postgres_url)
    env_b = signer_env(dev_certs, tmp_path / "b", free_port(), postgres_url)
    with running_signer(dev_certs, env_a) as a, running_signer(dev_certs, env_b) as b:
        with remote_signer(a.address, dev_certs) as client_a, remote_signer(b.address, dev_certs) as client_b:
            key = client_a.create_key(COLLECTION, "timestamp")
            assert client_b.get_public_key(COLLECTION, "timestamp") == key
            for version in range(1, 6):
                payloads = {id(c): tuf_payload("timestamp", version) for c in (client_a, client_b)}
                barrier = threading.Barrier(2)
                outcomes: list[str] = []

                def race(client: object) -> None:
                    barrier.wait()
                    try:
                        client.sign(key, payloads[id(client)])  # type: ignore[attr-defined]
                        outcomes.append("signed")
                    except VersionConflictError:
                        outcomes.append("conflict")

                threads = [threading.Thread(target=race, args=(c,)) for c in (client_a, client_b)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert sorted(outcomes) == ["conflict", "signed"], version
            info = client_b.list_key_info(COLLECTION)
            assert [i.max_signed_version for i in info] == [5]


def test_sigkill_mid_batch_loses_no_audit_row_for_a_returned_signature(dev_certs: DevCertPaths, tmp_path: Path) -> None:
    env = signer_env(dev_certs, tmp_path, free_port())
    received: list[tuple[int, str]] = []
    with running_signer(dev_certs, env) as process:
        with remote_signer(process.address, dev_certs) as client:
            key = client.create_key(COLLECTION, "timestamp")
        payloads = [tuf_payload("timestamp", v) for v in range(1, 3001)]
        requests = [signer_pb2.SignRequest(key_id=key.keyid, payload=p, collection=COLLECTION, role="timestamp")
                    for p in payloads]
        channel, stub = batch_stub(process.address, dev_certs)
        with channel:
            with pytest.raises(grpc.RpcError):
                for result in stub.SignBatch(signer_pb2.SignBatchRequest(requests=requests), timeout=60):
                    assert result.HasField("signature")
                    received.append((result.index + 1, hashlib.sha256(payloads[result.index]).hexdigest()))
                    if len(received) == 50:
                        process.proc.send_signal(signal.SIGKILL)
        assert process.proc.wait(timeout=10) == -signal.SIGKILL
    conn = sqlite3.connect(tmp_path / "signer.db")
    try:
        audited = set(conn.execute("SELECT version, payload_sha256 FROM signer_audit WHERE key_id = ?", (key.keyid,)))
    finally:
        conn.close()
    assert 50 <= len(received) < len(payloads)  # killed mid-batch
    assert set(received) <= audited


def test_sigterm_finishes_the_batch_in_flight(dev_certs: DevCertPaths, tmp_path: Path) -> None:
    env = signer_env(dev_certs, tmp_path, free_port())
    with running_signer(dev_certs, env) as process:
        with remote_signer(process.address, dev_certs) as client:
            key = client.create_key(COLLECTION, "snapshot")
        requests = [
            signer_pb2.SignRequest(key_id=key.keyid, payload=tuf_payload("snapshot", v), collection=COLLECTION,
                                   role="snapshot")
            for v in range(1, 301)
        ]
        channel, stub = batch_stub(process.address, dev_certs)
        results = []
        with channel:
            for result in stub.SignBatch(signer_pb2.SignBatchRequest(requests=requests), timeout=60):
                results.append(result)
                if len(results) == 1:
                    process.proc.send_signal(signal.SIGTERM)
        assert len(results) == len(requests) and all(r.HasField("signature") for r in results)
        assert process.proc.wait(timeout=20) == 0
        stderr = process.log()
        assert "finishing in-flight calls" in stderr and "signer stopped" in stderr


def test_rewrap_cli_while_the_signer_serves(dev_certs: DevCertPaths, tmp_path: Path) -> None:
    passphrases = tmp_path / "passphrases"
    passphrases.write_text(f"# alias=passphrase\nold={PASSPHRASE}\nnew=the second passphrase\n")
    passphrases.chmod(0o600)  # the signer refuses world-readable secret files
    env = signer_env(dev_certs, tmp_path, free_port())
    del env["TUFNOTARY_SIGNER_PASSPHRASE_FILE"]
    env.update(TUFNOTARY_SIGNER_PASSPHRASES_FILE=str(passphrases), TUFNOTARY_SIGNER_PASSPHRASE_ALIAS="old")
    with running_signer(dev_certs, env) as process:
        with remote_signer(process.address, dev_certs) as client:
            keys = [client.create_key(f"team/c{i}", "timestamp") for i in range(3)]
            stop, errors, versions = threading.Event(), [], [0]

            def traffic() -> None:
                try:
                    while not stop.is_set():
                        versions[0] += 1
                        for key in keys:
                            client.sign(key, tuf_payload("timestamp", versions[0]))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            thread = threading.Thread(target=traffic)
            thread.start()
            try:
                result = subprocess.run(
                    [str(SIGNER_BIN), "rewrap", "--to", "new"], env={**env, "TUFNOTARY_SIGNER_PASSPHRASE_ALIAS": "new"},
                    capture_output=True, text=True, timeout=60,
                )
                after = versions[0]
                while versions[0] < after + 2 and thread.is_alive():
                    threading.Event().wait(0.01)
            finally:
                stop.set()
                thread.join(30)
            assert errors == []
        process.proc.send_signal(signal.SIGTERM)
        process.proc.wait(timeout=20)
        log = process.log()
    assert result.returncode == 0, result.stderr
    assert "rewrapped 3 key(s) under passphrase alias 'new'" in result.stdout
    for output in (result.stdout, result.stderr, log):
        assert PASSPHRASE not in output and "the second passphrase" not in output
    conn = sqlite3.connect(tmp_path / "signer.db")
    try:
        assert {row[0] for row in conn.execute("SELECT passphrase_alias FROM signer_keys")} == {"new"}
    finally:
        conn.close()


def test_pkcs11_signer_process(dev_certs: DevCertPaths, tmp_path: Path, softhsm: Pkcs11Config) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(SOFTHSM_PIN + "\n")
    pin_file.chmod(0o600)
    env = signer_env(dev_certs, tmp_path, free_port())
    del env["TUFNOTARY_SIGNER_PASSPHRASE_FILE"]
    env.update(
        TUFNOTARY_SIGNER_KEYSTORE="pkcs11",
        TUFNOTARY_SIGNER_PKCS11_TOKEN_LABEL=SOFTHSM_LABEL,
        TUFNOTARY_SIGNER_PKCS11_PIN_FILE=str(pin_file),
    )
    with running_signer(dev_certs, env) as process:
        with remote_signer(process.address, dev_certs) as client:
            key = client.create_key(COLLECTION, "timestamp", "ecdsa-sha2-nistp256")
            client.sign(key, tuf_payload("timestamp", 1))  # RemoteSigner verified it against the TUF key
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(timeout=20) == 0
        log = process.log()
    assert "pkcs11 key store" in log and SOFTHSM_PIN not in log

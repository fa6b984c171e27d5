"""The signer refuses every connection that does not present a client certificate from its CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.signer.harness import RunningSigner, inprocess_signer, remote_signer
from tufnotary.server.errors import SignerRefusedError, SignerUnavailableError
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.signer.certs import DevCertPaths


@pytest.fixture(scope="module")
def running(dev_certs: DevCertPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSigner]:
    with inprocess_signer(dev_certs, tmp_path_factory.mktemp("db")) as signer:
        yield signer


def health_check(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=3).status


def test_valid_client_certificate_is_accepted(running: RunningSigner) -> None:
    certs = running.certs
    credentials = grpc.ssl_channel_credentials(
        certs.ca_cert.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    with grpc.secure_channel(running.address, credentials) as channel:
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
    with remote_signer(running.address, certs) as client:
        assert client.list_keys("wabbit-networks/net-monitor") == []


def test_client_without_certificate_is_refused(running: RunningSigner) -> None:
    credentials = grpc.ssl_channel_credentials(running.certs.ca_cert.read_bytes())
    with grpc.secure_channel(running.address, credentials) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            health_check(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_another_ca_is_refused(running: RunningSigner, foreign_certs: DevCertPaths) -> None:
    credentials = grpc.ssl_channel_credentials(
        running.certs.ca_cert.read_bytes(),
        foreign_certs.client_key.read_bytes(),
        foreign_certs.client_cert.read_bytes(),
    )
    with grpc.secure_channel(running.address, credentials) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            health_check(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    client = RemoteSigner(
        running.address, running.certs.ca_cert, foreign_certs.client_cert, foreign_certs.client_key, timeout=3
    )
    with client, pytest.raises(SignerUnavailableError):
        client.create_key("wabbit-networks/net-monitor", "timestamp")
    assert running.keystore.list_keys("wabbit-networks/net-monitor") == []


def test_signer_certificate_from_an_untrusted_ca_is_refused_by_the_client(
    running: RunningSigner, foreign_certs: DevCertPaths
) -> None:
    client = RemoteSigner(
        running.address, foreign_certs.ca_cert, running.certs.client_cert, running.certs.client_key, timeout=3
    )
    with client, pytest.raises(SignerUnavailableError):
        client.list_keys("wabbit-networks/net-monitor")


def test_plaintext_channel_is_refused(running: RunningSigner) -> None:
    with grpc.insecure_channel(running.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            health_check(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_subject_not_on_the_allow_list_is_refused(dev_certs: DevCertPaths, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from tufnotary.signer.certs import _write_private_key, issue_cert

    ca_cert = x509.load_pem_x509_certificate(dev_certs.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(dev_certs.ca_key.read_bytes(), None)
    intruder_cert, intruder_key = issue_cert(ca_cert, ca_key, "build-bot", server=False)  # type: ignore[arg-type]
    (tmp_path / "bot.crt").write_bytes(intruder_cert.public_bytes(serialization.Encoding.PEM))
    _write_private_key(tmp_path / "bot.key", intruder_key)

    with inprocess_signer(dev_certs, tmp_path, allowed_client_subjects=("CN=tufnotary-server",)) as running:
        with remote_signer(running.address, dev_certs) as allowed:
            allowed.create_key("wabbit-networks/net-monitor", "timestamp")
        intruder = RemoteSigner(running.address, dev_certs.ca_cert, tmp_path / "bot.crt", tmp_path / "bot.key", timeout=3)
        with intruder:
            for call in (
                lambda: intruder.list_keys("wabbit-networks/net-monitor"),
                lambda: intruder.create_key("wabbit-networks/other", "timestamp"),
            ):
                with pytest.raises(SignerRefusedError) as caught:
                    call()
                assert caught.value.detail["status"] == "PERMISSION_DENIED"
                assert "CN=build-bot" in caught.value.message
        assert running.keystore.list_keys("wabbit-networks/other") == []


def test_readiness_follows_the_key_store(dev_certs: DevCertPaths, tmp_path: Path, postgres_url: str) -> None:
    """NOT_SERVING while the key database refuses connections, SERVING again once it is back."""
    import psycopg2

    from tufnotary.signer.sql_keystore import SqlKeyStore

    dbname = postgres_url.rsplit("/", 1)[1]
    admin_url = postgres_url.rsplit("/", 1)[0] + "/postgres"

    def admin(statement: str) -> None:
        conn = psycopg2.connect(admin_url)
        conn.autocommit = True
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()

    keystore = SqlKeyStore(postgres_url, {"default": "pw"}, "default")
    try:
        with inprocess_signer(dev_certs, tmp_path, keystore=keystore, health_interval=0.1) as running:
            credentials = grpc.ssl_channel_credentials(
                dev_certs.ca_cert.read_bytes(), dev_certs.client_key.read_bytes(), dev_certs.client_cert.read_bytes()
            )
            with grpc.secure_channel(running.address, credentials) as channel:
                assert wait_for_status(channel, health_pb2.HealthCheckResponse.SERVING)
                admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
                admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}'")
                try:
                    assert wait_for_status(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
                finally:
                    admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
                assert wait_for_status(channel, health_pb2.HealthCheckResponse.SERVING)
    finally:
        keystore.close()


def wait_for_status(channel: grpc.Channel, status: int, seconds: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if health_check(channel) == status:
            return True
        time.sleep(0.05)
    return False

"""The signer refuses every connection that does not present a client certificate from its CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.signer.harness import RunningSigner, inprocess_signer, remote_signer
from tufnotary.server.errors import SignerUnavailableError
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

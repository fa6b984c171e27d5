"""Fixtures for client tests: a running fake metadata server and library objects on a temp trust dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.fake_server import FakeServer
from tufnotary.client.consumer import Consumer
from tufnotary.client.http import HttpConfig, ServerClient
from tufnotary.client.keys import KeyStore
from tufnotary.client.publisher import Publisher
from tufnotary.client.trustdir import TrustDir

PASSPHRASE = "correct horse battery staple"
COLLECTION = "wabbit-networks/net-monitor"


@dataclass
class Client:
    trust: TrustDir
    keys: KeyStore
    consumer: Consumer
    publisher: Publisher


def make_client(trust_dir: Path, server_url: str, passphrase: str = PASSPHRASE, timeout: float = 5) -> Client:
    trust = TrustDir(trust_dir)
    keys = KeyStore(trust, lambda keyid, new: passphrase)
    server = ServerClient(HttpConfig(server=server_url, read_timeout=timeout))
    # As the CLI builds them: the consumer fetches metadata over the server client's pool.
    consumer = Consumer(trust, server_url, socket_timeout=timeout,
                        fetcher=server.metadata_fetcher(int(timeout)))
    return Client(trust, keys, consumer, Publisher(trust, keys, server, consumer))


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def client(tmp_path: Path, fake_server: FakeServer) -> Client:
    return make_client(tmp_path / "trust", fake_server.url)

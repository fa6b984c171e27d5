"""Fixtures for the server tests: the Flask app over a real SQLite store and a real mTLS signer."""

from __future__ import annotations

import pytest

from tests.signer.harness import inprocess_signer, remote_signer
from tufnotary.server.app import create_app
from tufnotary.server.auth_config import AuthConfig
from tufnotary.server.config import ServerConfig
from tufnotary.server.storage import open_store
from tufnotary.signer.certs import write_dev_certs


@pytest.fixture(scope="session")
def server_certs(tmp_path_factory):
    return write_dev_certs(tmp_path_factory.mktemp("server-certs"))


@pytest.fixture
def running_signer(server_certs, tmp_path):
    with inprocess_signer(server_certs, tmp_path) as running:
        yield running


@pytest.fixture
def store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def app(store, running_signer, server_certs):
    signer = remote_signer(running_signer.address, server_certs)
    # Authentication off, said explicitly: these tests are about everything else (test_auth*.py).
    config = ServerConfig(max_upload_bytes=1024 * 1024, auth=AuthConfig(mode="none", rate_limit=0))
    app = create_app(config, store=store, signer=signer)
    yield app
    app.extensions["tufnotary"].close()  # its listener would outlive the database (PostgreSQL stores)
    signer.close()


@pytest.fixture
def http(app):
    return app.test_client()

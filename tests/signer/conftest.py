"""Fixtures for the signer tests: development certificates from our own generator, a foreign CA, a
throwaway SoftHSM2 token, and key stores over every backend (SQLite, PostgreSQL, SoftHSM2 with its catalog
on SQLite), opened as replicas of one another."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from collections.abc import Callable, Iterator

import grpc

from tests.signer.harness import RunningSigner, inprocess_signer, remote_signer
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.signer.certs import DevCertPaths, write_dev_certs
from tufnotary.signer.config import Pkcs11Config
from tufnotary.signer.keystore import KeyStore
from tufnotary.signer.pkcs11_keystore import Pkcs11KeyStore
from tufnotary.signer.policy import SigningPolicy
from tufnotary.signer.sql_keystore import SqlKeyStore


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertPaths:
    return write_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertPaths:
    """Certificates from another, unrelated CA."""
    return write_dev_certs(tmp_path_factory.mktemp("foreign-certs"))


@pytest.fixture
def running(dev_certs: DevCertPaths, tmp_path: Path) -> Iterator[RunningSigner]:
    """An in-process signer over mutual TLS, with the default signing policy."""
    with inprocess_signer(dev_certs, tmp_path, policy=SigningPolicy()) as signer:
        yield signer


@pytest.fixture
def client(running: RunningSigner) -> Iterator[RemoteSigner]:
    """The metadata server's handle on `running`."""
    with remote_signer(running.address, running.certs) as c:
        yield c


@pytest.fixture
def channel(running: RunningSigner) -> Iterator[grpc.Channel]:
    """A raw mTLS channel to `running`, for calls RemoteSigner does not make."""
    certs = running.certs
    credentials = grpc.ssl_channel_credentials(
        certs.ca_cert.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    with grpc.secure_channel(running.address, credentials) as ch:
        yield ch


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_LABEL = "tufnotary-test"
SOFTHSM_PIN = "8642-test-user-pin"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Pkcs11Config:
    """A throwaway SoftHSM2 token, initialised here: SOFTHSM2_CONF points into a temp dir for this process
    (set before the PKCS#11 module is first loaded) and for the signer processes the tests start."""
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).exists():
        pytest.fail("SoftHSM2 is not installed: run tests/system-deps.sh (Debian package softhsm2)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", SOFTHSM_LABEL,
         "--pin", SOFTHSM_PIN, "--so-pin", "9753-test-so-pin"],
        check=True, capture_output=True, timeout=30,
    )
    return Pkcs11Config(token_label=SOFTHSM_LABEL, pin=SOFTHSM_PIN, module=SOFTHSM_MODULE)


@pytest.fixture(params=["sqlite", "postgres", "softhsm"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Callable[[], KeyStore]]:
    """(catalog database URL, factory of store instances over the same keys — i.e. replicas)."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'signer.db'}"
    if request.param == "softhsm":
        token: Pkcs11Config = request.getfixturevalue("softhsm")
        return url, lambda: Pkcs11KeyStore(url, token)
    return url, lambda: SqlKeyStore(url, {"default": "contract passphrase"}, "default")


@pytest.fixture
def replicas(backend: tuple[str, Callable[[], KeyStore]]) -> Iterator[Callable[[], KeyStore]]:
    opened: list[KeyStore] = []

    def open_replica() -> KeyStore:
        store = backend[1]()
        store.migrate()
        opened.append(store)
        return store

    yield open_replica
    for store in opened:
        store.close()

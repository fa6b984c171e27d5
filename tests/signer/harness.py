"""Test helpers: run a real signer gRPC server in-process with mutual TLS on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from tufnotary.proto import signer_pb2_grpc
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.signer.app import create_server, server_credentials
from tufnotary.signer.certs import DevCertPaths
from tufnotary.signer.config import SignerConfig
from tufnotary.signer.service import add_health
from tufnotary.signer.sql_keystore import SqlKeyStore

PASSPHRASE = "correct horse battery staple"


def signer_config(certs: DevCertPaths, database_url: str) -> SignerConfig:
    return SignerConfig(
        tls_cert_file=str(certs.signer_cert),
        tls_key_file=str(certs.signer_key),
        tls_client_ca_file=str(certs.ca_cert),
        passphrases={"default": PASSPHRASE},
        listen="127.0.0.1:0",
        database_url=database_url,
    )


@dataclass
class RunningSigner:
    address: str
    keystore: SqlKeyStore
    certs: DevCertPaths


@contextmanager
def inprocess_signer(certs: DevCertPaths, db_dir: Path) -> Iterator[RunningSigner]:
    """The real `create_server` over a fresh SQLite key store."""
    config = signer_config(certs, f"sqlite:///{db_dir / 'signer.db'}")
    keystore = SqlKeyStore(config.database_url, config.passphrases, config.default_alias)
    keystore.migrate()
    server, port = create_server(config, keystore)
    server.start()
    try:
        yield RunningSigner(f"localhost:{port}", keystore, certs)
    finally:
        server.stop(None)
        keystore.close()


@contextmanager
def custom_signer(certs: DevCertPaths, servicer: signer_pb2_grpc.SignerServicer) -> Iterator[str]:
    """A real mTLS gRPC server running any servicer (e.g. a hostile one); yields its address."""
    config = signer_config(certs, "sqlite:///unused.db")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    signer_pb2_grpc.add_SignerServicer_to_server(servicer, server)
    add_health(server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(config))
    server.start()
    try:
        yield f"localhost:{port}"
    finally:
        server.stop(None)


def remote_signer(address: str, certs: DevCertPaths, timeout: float = 5.0) -> RemoteSigner:
    return RemoteSigner(address, certs.ca_cert, certs.client_cert, certs.client_key, timeout=timeout)

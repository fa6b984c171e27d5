"""Test helpers: run a real signer gRPC server in-process with mutual TLS on a free port, and build
real TUF payloads for it to sign."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tuf.api.metadata import MetaFile, Metadata, Snapshot, Timestamp

from tufnotary.proto import signer_pb2_grpc
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.signer.app import SignerServer, create_server, server_credentials
from tufnotary.signer.certs import DevCertPaths
from tufnotary.signer.config import SignerConfig
from tufnotary.signer.keystore import KeyStore
from tufnotary.signer.policy import SigningPolicy
from tufnotary.signer.sql_keystore import SqlKeyStore

PASSPHRASE = "correct horse battery staple"

# The server tests move the *server's* clock days ahead (renewal) while the signer keeps the real one,
# so the signer they talk to allows long expiries. The signer's own tests use the default policy.
LENIENT_POLICY = SigningPolicy(max_expiry={"timestamp": timedelta(days=60), "snapshot": timedelta(days=60)})


def signer_config(
    certs: DevCertPaths,
    database_url: str,
    *,
    policy: SigningPolicy = LENIENT_POLICY,
    allowed_client_subjects: tuple[str, ...] = (),
    health_interval: float = 0.0,
) -> SignerConfig:
    return SignerConfig(
        tls_cert_file=str(certs.signer_cert),
        tls_key_file=str(certs.signer_key),
        tls_client_ca_file=str(certs.ca_cert),
        passphrases={"default": PASSPHRASE},
        listen="127.0.0.1:0",
        database_url=database_url,
        policy=policy,
        allowed_client_subjects=allowed_client_subjects,
        health_interval=health_interval,
    )


@dataclass
class RunningSigner:
    address: str
    keystore: KeyStore
    certs: DevCertPaths
    server: SignerServer | None = None


@contextmanager
def inprocess_signer(
    certs: DevCertPaths,
    db_dir: Path,
    *,
    keystore: KeyStore | None = None,
    policy: SigningPolicy = LENIENT_POLICY,
    allowed_client_subjects: tuple[str, ...] = (),
    health_interval: float = 0.0,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[RunningSigner]:
    """The real `create_server` over `keystore` (default: a fresh SQLite `SqlKeyStore`)."""
    config = signer_config(
        certs, f"sqlite:///{db_dir / 'signer.db'}", policy=policy,
        allowed_client_subjects=allowed_client_subjects, health_interval=health_interval,
    )
    owned = keystore is None
    if keystore is None:
        keystore = SqlKeyStore(config.database_url, config.passphrases, config.default_alias)
    keystore.migrate()
    signer = create_server(config, keystore, clock=clock)
    signer.start()
    try:
        yield RunningSigner(f"localhost:{signer.port}", keystore, certs, signer)
    finally:
        signer.stop(None)
        if owned:
            keystore.close()


@contextmanager
def custom_signer(certs: DevCertPaths, servicer: signer_pb2_grpc.SignerServicer) -> Iterator[str]:
    """A real mTLS gRPC server running any servicer (e.g. a hostile one); yields its address."""
    config = signer_config(certs, "sqlite:///unused.db")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    signer_pb2_grpc.add_SignerServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(config))
    server.start()
    try:
        yield f"localhost:{port}"
    finally:
        server.stop(None)


def remote_signer(address: str, certs: DevCertPaths, timeout: float = 5.0) -> RemoteSigner:
    return RemoteSigner(address, certs.ca_cert, certs.client_cert, certs.client_key, timeout=timeout)


def tuf_payload(role: str, version: int, expires_in: timedelta = timedelta(hours=12)) -> bytes:
    """The canonical JSON of a real TUF `signed` object of `role`, as the metadata server sends it."""
    expires = datetime.now(timezone.utc).replace(microsecond=0) + expires_in
    if role == "timestamp":
        signed: Timestamp | Snapshot = Timestamp(version=version, expires=expires, snapshot_meta=MetaFile(version=1))
    else:
        signed = Snapshot(version=version, expires=expires, meta={"targets.json": MetaFile(version=1)})
    return Metadata(signed).signed_bytes

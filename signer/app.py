"""Building the signer: its key store from the configuration, and its gRPC server (mutual TLS, the
Signer service, readiness).

`create_server` only builds and binds; the caller starts and stops it (see `cli.serve`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc

from tufnotary.signer.config import SignerConfig
from tufnotary.signer.errors import ConfigError
from tufnotary.signer.health import Readiness
from tufnotary.signer.keystore import KeyStore
from tufnotary.signer.metrics import TimedKeyStore
from tufnotary.signer.service import SERVICE_NAME, SignerServicer, add_signer


@dataclass
class SignerServer:
    """A bound, not yet started signer: the gRPC server, its port and its readiness reporter."""

    server: grpc.Server
    port: int
    readiness: Readiness

    def start(self) -> None:
        self.server.start()
        self.readiness.start()

    def stop(self, grace: float | None) -> None:
        """NOT_SERVING at once, then stop accepting calls; in-flight calls get `grace` seconds."""
        self.readiness.shutdown()
        self.server.stop(grace).wait()


def open_keystore(config: SignerConfig) -> KeyStore:
    """The key store the configuration names (not yet migrated)."""
    if config.keystore == "pkcs11":
        try:
            from tufnotary.signer.pkcs11_keystore import Pkcs11KeyStore
        except ImportError as e:
            raise ConfigError(f"TUFNOTARY_SIGNER_KEYSTORE=pkcs11 needs python-pkcs11 ({e}): install the signer "
                              "with pip install 'tufnotary[hsm]'") from None

        assert config.pkcs11 is not None
        return Pkcs11KeyStore(config.database_url, config.pkcs11)
    from tufnotary.signer.sql_keystore import SqlKeyStore

    return SqlKeyStore(config.database_url, config.passphrases, config.default_alias)


def server_credentials(config: SignerConfig) -> grpc.ServerCredentials:
    """TLS credentials that require a client certificate issued by the configured client CA."""
    cert, key, client_ca = (
        _read(config.tls_cert_file, "TLS certificate"),
        _read(config.tls_key_file, "TLS key"),
        _read(config.tls_client_ca_file, "TLS client CA"),
    )
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=True)


def create_server(
    config: SignerConfig, keystore: KeyStore, *, clock: Callable[[], datetime] | None = None
) -> SignerServer:
    """A bound, not yet started signer for `keystore` (listen port 0 picks a free port)."""
    credentials = server_credentials(config)
    keystore = TimedKeyStore(keystore)  # type: ignore[assignment]  # same interface, every call timed
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.max_workers))
    readiness = Readiness(keystore, (SERVICE_NAME,), interval=config.health_interval)
    servicer = SignerServicer(
        keystore, config.policy, config.allowed_client_subjects, readiness, **({"clock": clock} if clock else {})
    )
    add_signer(server, servicer)
    readiness.add_to_server(server)
    try:
        port = server.add_secure_port(config.listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen}: the address is invalid or in use")
    return SignerServer(server, port, readiness)


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the signer's {what} {path}: {e.strerror}") from None
    if not data.strip():
        raise ConfigError(f"the signer's {what} {path} is empty")
    return data

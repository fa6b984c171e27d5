"""Building the signer's gRPC server: mutual TLS, the Signer service and the health service.

`create_server` only builds and binds; the caller starts and stops it (see `cli.serve`).
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc

from tufnotary.proto import signer_pb2_grpc
from tufnotary.signer.config import SignerConfig
from tufnotary.signer.errors import ConfigError
from tufnotary.signer.keystore import KeyStore
from tufnotary.signer.service import SignerServicer, add_health


def server_credentials(config: SignerConfig) -> grpc.ServerCredentials:
    """TLS credentials that require a client certificate issued by the configured client CA."""
    cert, key, client_ca = (
        _read(config.tls_cert_file, "TLS certificate"),
        _read(config.tls_key_file, "TLS key"),
        _read(config.tls_client_ca_file, "TLS client CA"),
    )
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=True)


def create_server(config: SignerConfig, keystore: KeyStore) -> tuple[grpc.Server, int]:
    """A bound, not yet started gRPC server for `keystore`, and the port it bound (listen port 0 picks one)."""
    credentials = server_credentials(config)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.max_workers))
    signer_pb2_grpc.add_SignerServicer_to_server(SignerServicer(keystore), server)
    add_health(server)
    try:
        port = server.add_secure_port(config.listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen}: the address is invalid or in use")
    return server, port


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the signer's {what} {path}: {e.strerror}") from None
    if not data.strip():
        raise ConfigError(f"the signer's {what} {path} is empty")
    return data

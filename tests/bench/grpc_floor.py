"""The transport's share of (8): the CPU one call costs a gRPC server that does nothing, built as the signer is
(`grpc.server` on a thread pool, mutual TLS), fed messages of the sizes a signer call carries.

What the signer spends per call beyond this is its own (the policy, the claim transaction, the signatures). The
server runs in a process of its own, on loopback, and stops by itself after `lifetime` seconds.

    python -m tests.bench.grpc_floor CERT KEY CLIENT_CA RESPONSE_BYTES LIFETIME   (the server; prints its port)
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc

from tests.bench.procs import cpu_seconds
from tufnotary.signer.certs import DevCertPaths

_METHOD = "/tufnotary.bench.Noop/Call"


def _identity(data: bytes) -> bytes:
    return data


def noop_call_cpu(certs: DevCertPaths, request_bytes: int, response_bytes: int, seconds: float) -> float:
    """Server CPU seconds per no-op unary call of `request_bytes` answered with `response_bytes`, over `seconds`."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.grpc_floor", str(certs.signer_cert), str(certs.signer_key),
         str(certs.ca_cert), str(response_bytes), str(int(seconds) + 60)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        credentials = grpc.ssl_channel_credentials(
            certs.ca_cert.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
        )
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            call = channel.unary_unary(_METHOD, request_serializer=_identity, response_deserializer=_identity)
            request = b"\x00" * request_bytes
            for _ in range(100):  # connection, TLS handshake, warm caches
                call(request, timeout=10)
            count, started, cpu = 0, time.perf_counter(), cpu_seconds(server.pid)
            while time.perf_counter() - started < seconds:
                call(request, timeout=10)
                count += 1
            return (cpu_seconds(server.pid) - cpu) / count
    finally:
        server.kill()
        server.wait()


def _serve(cert: Path, key: Path, client_ca: Path, response_bytes: int, lifetime: float) -> None:
    response = b"\x00" * response_bytes
    handler = grpc.method_handlers_generic_handler("tufnotary.bench.Noop", {
        "Call": grpc.unary_unary_rpc_method_handler(
            lambda request, context: response, request_deserializer=_identity, response_serializer=_identity
        ),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))  # the signer's default max_workers
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=client_ca.read_bytes(), require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(port, flush=True)
    server.wait_for_termination(timeout=lifetime)
    server.stop(0)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))

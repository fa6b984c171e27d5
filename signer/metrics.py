"""Prometheus metrics of the signer, served over plain HTTP on their own port
(`TUFNOTARY_SIGNER_METRICS_LISTEN`), apart from the mutual-TLS gRPC port.

They hold counts and timings only: roles, algorithms, refusal codes, key-store operations.
The signer is one process (a thread pool), so the default registry sees everything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

from tufnotary.signer.errors import ConfigError

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

signatures = Counter(
    "tufnotary_signer_signatures_total", "Signatures made, by role and algorithm (TUF key scheme)", ["role", "algorithm"]
)
refusals = Counter(
    "tufnotary_signer_refusals_total", "Requests refused, by gRPC method and reason (error code)", ["method", "reason"]
)
rpc_latency = Histogram(
    "tufnotary_signer_rpc_duration_seconds", "Time to answer a gRPC call, by method", ["method"], buckets=_BUCKETS
)
keystore_latency = Histogram(
    "tufnotary_signer_keystore_duration_seconds", "Time of each key-store operation, by operation and outcome",
    ["operation", "outcome"], buckets=_BUCKETS,
)

# The labelled children of the hot metrics, looked up once per label set (`labels` takes a lock and builds
# the label tuple on every call). Their label sets are few: methods, roles and algorithms.
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, kept."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*labels))
    return child


def rpc_timer(method: str) -> Any:
    return _child(rpc_latency, method)


def signature_counter(role: str, algorithm: str) -> Any:
    return _child(signatures, role, algorithm)


def serve_metrics(listen: str) -> int:
    """Serve /metrics on `listen` ("host:port", port 0 picks one) in a daemon thread; return the port."""
    host, _, port = listen.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
    except (ValueError, OSError) as e:
        raise ConfigError(f"cannot serve metrics on {listen}: {e}") from None
    return int(server.server_address[1])


class TimedKeyStore:
    """A key store whose every method call is timed into `tufnotary_signer_keystore_duration_seconds`."""

    def __init__(self, keystore: Any) -> None:
        self._keystore = keystore

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._keystore, name)
        if name.startswith("_") or not callable(attr):
            return attr
        timed = _timed(name, attr)
        # Kept: later lookups find it without coming here (a new wrapper per call cost ~5 µs).
        self.__dict__[name] = timed
        return timed


def _timed(operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
    ok = keystore_latency.labels(operation, "ok")  # the labelled child, looked up once

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = call(*args, **kwargs)
        except Exception:
            keystore_latency.labels(operation, "error").observe(time.perf_counter() - started)
            raise
        ok.observe(time.perf_counter() - started)
        return result

    return timed

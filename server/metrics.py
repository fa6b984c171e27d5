"""Prometheus metrics of the metadata server, and their exposition on `/metrics`.

gunicorn runs several worker processes; each keeps its own counters. `tufnotary-server serve`
points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory before any worker starts, so every worker
writes its samples there and `/metrics`, whichever worker answers, adds them all up
(prometheus-client's multiprocess mode). Without that variable (tests, `create_app()` in one
process) the process's own registry is exposed.

Labels are bounded: routes are Flask rule templates, never raw paths or collection names.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

http_requests = Counter(
    "tufnotary_http_requests_total", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
http_latency = Histogram(
    "tufnotary_http_request_duration_seconds", "Time to answer an HTTP request, by route template and method",
    ["route", "method"], buckets=_LATENCY_BUCKETS,
)
http_errors = Counter(
    "tufnotary_http_errors_total", "Error answers by the stable error code of their body", ["code", "status"],
)
publishes = Counter("tufnotary_publishes_total", "Publishes stored")
publish_refusals = Counter(
    "tufnotary_publish_refusals_total", "Publishes refused, by error code (validation, conflict, signer, storage)",
    ["code"],
)
conditional_reads = Counter(
    "tufnotary_conditional_reads_total",
    "Reads carrying If-None-Match: result=hit answered 304 from the client's cache, miss sent the file",
    ["result"],
)
read_cache = Counter(
    "tufnotary_read_cache_total",
    "Metadata reads by where they came from: hit (worker memory), miss (store, then kept), bypass (store: "
    "the cache is off or not hearing every change)",
    ["result"],
)
renewals = Counter("tufnotary_timestamp_renewals_total", "Collections whose timestamp (and snapshot) were renewed")
renewal_failures = Counter(
    "tufnotary_timestamp_renewal_failures_total", "Renewals that failed and will be retried, by error code",
    ["code"],
)
signer_latency = Histogram(
    "tufnotary_signer_call_duration_seconds", "Time of each gRPC call to the signer, by method and outcome",
    ["method", "outcome"], buckets=_LATENCY_BUCKETS,
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(path: str) -> None:
    """Create `path` and remove the sample files of earlier runs (stale workers would count twice)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: fold the dead worker's live gauges away (counters are kept)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker's metrics (or this process's), and its content type."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

"""Operations endpoints and per-request plumbing: health, readiness, metrics, the OpenAPI document,
the request id and the access log line.

- `GET /_tufnotary/health`: liveness; 200 whenever the process answers.
- `GET /_tufnotary/ready`: 200 when the database and the signer answer, else 503 with which failed.
  `?checks=database` leaves the signer out (reads do not need it: see docs/operations.md).
- `GET /metrics`: Prometheus exposition (every gunicorn worker's samples; see `metrics.py`).
- `GET /_tufnotary/openapi.json`: the OpenAPI 3 description of the HTTP API.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from tufnotary.server import metrics
from tufnotary.server.errors import ServerError
from tufnotary.server.logs import REQUEST_ID_HEADER, accept_request_id, reset_request_id, set_request_id
from tufnotary.server.openapi import openapi_document

log = logging.getLogger("tufnotary.server.access")
bp = Blueprint("ops", __name__)

READY_PROBE_COLLECTION = "tufnotary-readiness-probe"  # never a valid collection name: no "/" path needed
READY_TIMEOUT = 2.0  # seconds; load balancers probe often and must not pile up behind a slow signer
PUBLISH_ENDPOINT = "tuf.post_metadata"


@bp.get("/_tufnotary/health")
def health() -> Response:
    return jsonify({"status": "ok"})


def _check_database() -> dict[str, Any]:
    store = current_app.extensions["tufnotary"].store
    try:
        store.get(READY_PROBE_COLLECTION, "root", 1)  # one indexed SELECT
    except ServerError as e:
        return {"ok": False, "error": e.code, "message": e.message}
    return {"ok": True}


def _check_signer() -> dict[str, Any]:
    signer = current_app.extensions["tufnotary"].signer
    check = getattr(signer, "check_health", None)
    if check is None:
        return {"ok": True, "detail": "not checked (in-process signer)"}
    try:
        check(timeout=READY_TIMEOUT)
    except ServerError as e:
        return {"ok": False, "error": e.code, "message": e.message}
    return {"ok": True}


@bp.get("/_tufnotary/ready")
def ready() -> Response:
    wanted = request.args.get("checks", "database,signer").split(",")
    probes = {"database": _check_database, "signer": _check_signer}
    checks = {name: probe() for name, probe in probes.items() if name in wanted}
    ok = all(result["ok"] for result in checks.values())
    response = jsonify({"status": "ready" if ok else "unready", "checks": checks})
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


@bp.get("/_tufnotary/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


def _before() -> None:
    g.tufnotary_started = time.perf_counter()
    g.tufnotary_request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    g.tufnotary_request_id_token = set_request_id(g.tufnotary_request_id)


def _error_code(response: Response) -> str:
    if response.status_code < 400 or not response.is_json:
        return ""
    body = response.get_json(silent=True) or {}
    try:
        return str(body["errors"][0]["code"])
    except (KeyError, IndexError, TypeError):
        return "UNKNOWN"


def _after(response: Response) -> Response:
    started = g.get("tufnotary_started")
    elapsed = time.perf_counter() - started if started is not None else 0.0
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    request_id = g.get("tufnotary_request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    record(route, request.endpoint, request.method, request.path, response.status_code, _error_code(response),
           elapsed, conditional=bool(request.headers.get("If-None-Match")),
           bytes_in=request.content_length or 0)
    return response


def record(route: str, endpoint: str | None, method: str, path: str, status: int, code: str, elapsed: float,
           *, conditional: bool, bytes_in: int) -> None:
    """Count a finished request in the metrics and write its access log line."""
    metrics.http_requests.labels(route, method, str(status)).inc()
    metrics.http_latency.labels(route, method).observe(elapsed)
    if code:
        metrics.http_errors.labels(code, str(status)).inc()
    if endpoint == PUBLISH_ENDPOINT:
        if status == 200:
            metrics.publishes.inc()
        elif code:
            metrics.publish_refusals.labels(code).inc()
    if conditional and method == "GET" and status in (200, 304):
        metrics.conditional_reads.labels("hit" if status == 304 else "miss").inc()
    # The path, not the query string or any header: nothing a client sends as a secret is logged.
    log.info(
        "%s %s %d", method, path, status,
        extra={"method": method, "path": path, "route": route, "status": status,
               "duration_ms": round(elapsed * 1000, 1), "error_code": code or None, "bytes_in": bytes_in},
    )


def _teardown(exc: BaseException | None) -> None:
    token = g.pop("tufnotary_request_id_token", None)
    if token is not None:
        try:
            reset_request_id(token)
        except ValueError:  # set in another context (should not happen): nothing to undo
            pass


def init_app(app: Flask) -> None:
    """Register the operations routes and the request id, metrics and access-log hooks."""
    app.register_blueprint(bp)
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)

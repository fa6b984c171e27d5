"""Health, readiness, metrics, request ids and the OpenAPI document, through Flask's test client
over a real SQLite store and a real mTLS signer."""

from __future__ import annotations

import io
import re

from tests.tuf_factory import CollectionFactory
from tufnotary.server.app import create_app
from tufnotary.server.openapi import openapi_document
from tufnotary.server.remote_signer import RemoteSigner

COLLECTION = "ops/health"


def _online_keys(http) -> dict:
    from securesystemslib.signer import SSlibKey

    keys = {}
    for role in ("timestamp", "snapshot"):
        body = http.get(f"/v2/{COLLECTION}/_trust/tuf/{role}.key").json
        keys[role] = SSlibKey.from_dict(body.pop("keyid"), body)
    return keys


def _publish(http, files: dict[str, bytes]):
    data = {role: (io.BytesIO(content), f"{role}.json") for role, content in files.items()}
    return http.post(f"/v2/{COLLECTION}/_trust/tuf/", data=data, content_type="multipart/form-data")


def test_health_and_ready(http):
    assert http.get("/_tufnotary/health").json == {"status": "ok"}
    ready = http.get("/_tufnotary/ready")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": {"database": {"ok": True}, "signer": {"ok": True}}}


def test_ready_reports_an_unreachable_signer_and_database(app, store, server_certs, tmp_path):
    config = app.extensions["tufnotary"].config  # the fixture's (authentication off)
    signer = RemoteSigner("localhost:1", server_certs.ca_cert, server_certs.client_cert, server_certs.client_key,
                          timeout=1)
    broken = create_app(config, store=store, signer=signer).test_client()
    answer = broken.get("/_tufnotary/ready")
    assert answer.status_code == 503
    assert answer.json["checks"]["signer"]["error"] == "SIGNER_UNAVAILABLE"
    assert answer.json["checks"]["database"] == {"ok": True}
    # Reads do not need the signer: a probe can leave it out.
    assert broken.get("/_tufnotary/ready?checks=database").status_code == 200
    assert broken.get("/_tufnotary/health").status_code == 200

    from tufnotary.server.storage import open_store

    gone = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'server.db'}")
    no_db = create_app(config, store=gone, signer=signer).test_client()
    answer = no_db.get("/_tufnotary/ready?checks=database")
    assert answer.status_code == 503 and answer.json["checks"]["database"]["error"] == "STORAGE_UNAVAILABLE"


def test_request_id_is_echoed_or_made(http):
    assert http.get("/v2/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = http.get("/v2/").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    # An id that would let a client inject into logs is replaced.
    replaced = http.get("/v2/", headers={"X-Request-ID": "x\" injected=1"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_publishes_refusals_and_signer_calls(http):
    before = http.get("/metrics").get_data(as_text=True)
    repo = CollectionFactory(online_keys=_online_keys(http))
    assert _publish(http, {"root": repo.sign("root"), "targets": repo.sign("targets")}).status_code == 200
    assert _publish(http, {"targets": b"not json"}).status_code == 400
    etag = http.get(f"/v2/{COLLECTION}/_trust/tuf/root.json").headers["ETag"]
    assert http.get(f"/v2/{COLLECTION}/_trust/tuf/root.json", headers={"If-None-Match": etag}).status_code == 304
    after = http.get("/metrics").get_data(as_text=True)

    def grew(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    route = "/v2/<path:collection>/_trust/tuf/"
    assert grew("tufnotary_http_requests_total", route=route, method="POST", status="200") == 1
    assert grew("tufnotary_http_requests_total", route=route, method="POST", status="400") == 1
    assert grew("tufnotary_http_request_duration_seconds_count", route=route, method="POST") == 2
    assert grew("tufnotary_publishes_total") == 1
    assert grew("tufnotary_publish_refusals_total", code="METADATA_MALFORMED") == 1
    assert grew("tufnotary_conditional_reads_total", result="hit") == 1
    assert grew("tufnotary_signer_call_duration_seconds_count", method="Sign", outcome="ok") == 2
    # Route templates, never collection names, label the series.
    assert COLLECTION not in after


def _flask_paths(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def _spec_paths(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method != "parameters"}


def test_openapi_describes_exactly_the_real_routes(http, app):
    served = http.get("/_tufnotary/openapi.json")
    assert served.status_code == 200 and served.json == openapi_document()
    document = served.json
    assert document["openapi"].startswith("3.")
    flask, spec = _flask_paths(app), _spec_paths(document)
    assert flask - spec == set(), f"routes missing from server/openapi.py: {sorted(flask - spec)}"
    assert spec - flask == set(), f"server/openapi.py describes routes that do not exist: {sorted(spec - flask)}"
    for path, item in document["paths"].items():  # every path parameter is declared
        declared = {p["name"] for p in item.get("parameters", [])}
        for op in item.values():
            if isinstance(op, dict):
                declared |= {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        assert set(re.findall(r"{([^}]+)}", path)) <= declared, path


def test_openapi_lists_every_error_code_the_server_can_answer(http):
    from tufnotary.server.errors import ServerError

    described = http.get("/_tufnotary/openapi.json").json["components"]["schemas"]["Error"]
    text = str(described)
    stack = [ServerError]
    while stack:
        cls = stack.pop()
        assert cls.code in text
        stack.extend(cls.__subclasses__())

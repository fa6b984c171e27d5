"""The fast read path answers metadata GETs exactly as the Flask route would, and only those.

Every case is asked twice over the same app and store: through the app as served (`FastReads` in
front) and through the Flask application behind it; status, headers and body must agree.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from flask.wrappers import Response
from prometheus_client import REGISTRY
from werkzeug.test import Client

from tests.server.auth_helpers import bearer, repo_access
from tests.server.test_auth import ADMIN_ACCESS, BASE, COLLECTION, init, issuer, make_app  # noqa: F401
from tufnotary.server.fastread import ROUTE, FastReads

_VARYING = {"X-Request-ID", "Date", "Server"}


def _served(app):
    """(client through FastReads, client of Flask alone, counter of requests Flask dispatched)."""
    fast = app.wsgi_app
    assert isinstance(fast, FastReads)
    dispatched = []
    original = app.full_dispatch_request

    def counting():
        dispatched.append(1)
        return original()

    app.full_dispatch_request = counting
    return Client(fast, Response), Client(fast.inner, Response), dispatched


def _answer(response) -> tuple:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in _VARYING)
    body = response.get_data()
    if response.status_code >= 400:
        body = json.loads(body)
    return response.status_code, headers, body


@pytest.fixture
def anonymous_app(store, running_signer, server_certs, tmp_path, issuer):  # noqa: F811
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer, anonymous_pull=True)
    init(app.test_client(), bearer(issuer.token("admin", ADMIN_ACCESS)))
    yield app
    signer.close()


def test_fast_answers_equal_flask_answers_and_skip_flask(anonymous_app, issuer):  # noqa: F811
    fast, flask_only, dispatched = _served(anonymous_app)
    etag = fast.get(BASE + "timestamp.json").headers["ETag"]
    other = bearer(issuer.token("bob", repo_access("elsewhere/*", "pull")))
    cases = {
        "current": (BASE + "timestamp.json", {}),
        "versioned": (BASE + "1.root.json", {}),
        "not modified": (BASE + "timestamp.json", {"If-None-Match": etag}),
        "stale etag": (BASE + "timestamp.json", {"If-None-Match": '"0000"'}),
        "with a good token": (BASE + "root.json", bearer(issuer.token("admin", ADMIN_ACCESS))),
        "bad token": (BASE + "root.json", {"Authorization": "Bearer not-a-jwt"}),
        "not a bearer": (BASE + "root.json", {"Authorization": "Basic eDp5"}),
        "token for another collection": (BASE + "root.json", other),
    }
    for name, (path, headers) in cases.items():
        dispatched.clear()
        answer = _answer(fast.get(path, headers=headers))
        assert dispatched == [], f"{name}: Flask dispatched a request the fast path should answer"
        assert answer == _answer(flask_only.get(path, headers=headers)), name
    statuses = {name: _answer(fast.get(p, headers=h))[0] for name, (p, h) in cases.items()}
    assert statuses == {"current": 200, "versioned": 200, "not modified": 304, "stale etag": 200,
                        "with a good token": 200, "bad token": 401, "not a bearer": 401,
                        "token for another collection": 403}


def test_everything_else_goes_to_flask_and_is_answered_the_same(anonymous_app):
    fast, flask_only, dispatched = _served(anonymous_app)
    cases = {
        "role not stored": BASE + "nobody.json",
        "version not stored": BASE + "99.root.json",
        "collection not stored": "/v2/nobody/here/_trust/tuf/root.json",
        "bad collection name": "/v2/UPPER/case/_trust/tuf/root.json",
        "bad role name": BASE + "..json",
        "not a metadata name": BASE + "root.txt",
        "online key": BASE + "timestamp.key",
        "ping": "/v2/",
    }
    for name, path in cases.items():
        dispatched.clear()
        answer = _answer(fast.get(path))
        assert dispatched == [1], f"{name}: should have been left to Flask"
        assert answer == _answer(flask_only.get(path)), name
    assert fast.head(BASE + "timestamp.json").status_code == 200  # HEAD: Flask's, with no body


def test_without_anonymous_pull_a_read_needs_a_token(store, running_signer, server_certs, tmp_path, issuer):  # noqa: F811
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer)
    try:
        init(app.test_client(), bearer(issuer.token("admin", ADMIN_ACCESS)))
        fast, flask_only, _ = _served(app)
        refused = fast.get(BASE + "timestamp.json")
        assert refused.status_code == 401
        assert 'scope="repository:wabbit-networks/net-monitor:pull"' in refused.headers["WWW-Authenticate"]
        assert _answer(refused) == _answer(flask_only.get(BASE + "timestamp.json"))
        reader = bearer(issuer.token("reader", repo_access(COLLECTION, "pull")))
        assert fast.get(BASE + "timestamp.json", headers=reader).status_code == 200
    finally:
        signer.close()


def test_a_request_is_rate_charged_once_whichever_path_answers(store, running_signer, server_certs, tmp_path,
                                                               issuer):  # noqa: F811
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer, anonymous_pull=True,
                           rate_limit=0.001, rate_burst=3)
    try:
        init(app.test_client(), bearer(issuer.token("admin", ADMIN_ACCESS)))  # 3 requests: the burst
        app.extensions["tufnotary_auth"].limiter._buckets.clear()  # a fresh burst of 3 for the reads
        fast, _, _ = _served(app)
        assert fast.get(BASE + "99.root.json").status_code == 404  # fast path, then Flask: one charge
        assert fast.get(BASE + "timestamp.json").status_code == 200
        assert fast.get(BASE + "root.json").status_code == 200
        refused = fast.get(BASE + "root.json")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert json.loads(refused.get_data())["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    finally:
        signer.close()


def test_fast_answers_are_counted_under_the_routes_label(anonymous_app):
    fast, _, _ = _served(anonymous_app)

    def count(status: str) -> float:
        return REGISTRY.get_sample_value("tufnotary_http_requests_total",
                                         {"route": ROUTE, "method": "GET", "status": status}) or 0.0

    before = count("200"), count("304")
    etag = fast.get(BASE + "timestamp.json").headers["ETag"]
    fast.get(BASE + "timestamp.json", headers={"If-None-Match": etag})
    assert (count("200"), count("304")) == (before[0] + 1, before[1] + 1)


def test_current_files_may_be_kept_by_shared_caches_when_configured(store, running_signer, server_certs, tmp_path,
                                                                   issuer):  # noqa: F811
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer, anonymous_pull=True)
    try:
        init(app.test_client(), bearer(issuer.token("admin", ADMIN_ACCESS)))
        fast, _, _ = _served(app)
        assert fast.get(BASE + "timestamp.json").headers["Cache-Control"] == "no-cache"  # the default
        services = app.extensions["tufnotary"]
        services.config = dataclasses.replace(services.config, shared_max_age=10)
        assert fast.get(BASE + "timestamp.json").headers["Cache-Control"] == "public, max-age=0, s-maxage=10"
        assert fast.get(BASE + "1.root.json").headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert services.reads.hits == 0  # SQLite: no cache, every read from the store
    finally:
        signer.close()

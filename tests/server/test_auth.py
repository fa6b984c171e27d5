"""Token auth through Flask's test client over the real store and mTLS signer: every route
refuses every bad token with nothing changed, grants (globs, catalog, pull-only), anonymous pull,
the server's own token endpoint, rate limits, refusal to start open, and no secret in the logs."""

from __future__ import annotations

import base64
import io
import logging
import time

import pytest

from tests.server.auth_helpers import (
    CATALOG,
    EXTERNAL_ISSUER,
    SERVICE,
    ExternalIssuer,
    bearer,
    own_issuer_files,
    repo_access,
    foreign_pem,
)
from tests.signer.harness import remote_signer
from tests.tuf_factory import CollectionFactory
from tufnotary.server.app import create_app
from tufnotary.server.auth_config import AuthConfig
from tufnotary.server.config import ServerConfig

COLLECTION = "wabbit-networks/net-monitor"
BASE = f"/v2/{COLLECTION}/_trust/tuf/"
ADMIN_ACCESS = repo_access("*", "*") + CATALOG
PASSWORD = "correct horse battery staple"


_ISSUER_KEYS: dict[str, bytes] = {}


@pytest.fixture
def issuer() -> ExternalIssuer:
    if not _ISSUER_KEYS:
        _ISSUER_KEYS.update(ExternalIssuer.create("ext-1", "ext-2").keys)
    return ExternalIssuer(dict(_ISSUER_KEYS))


def make_app(store, running_signer, server_certs, tmp_path, issuer, **auth):
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    users_file, key = own_issuer_files(tmp_path, {
        "alice": (PASSWORD, ["repository:wabbit-networks/*:pull,push"]),
        "root": ("root password", ["repository:*:*", "registry:catalog:*"]),
    })
    settings = dict(service=SERVICE, issuer=EXTERNAL_ISSUER, jwks_file=str(jwks), users_file=str(users_file),
                    token_key=str(key), leeway=5, rate_limit=0)
    settings.update(auth)
    signer = remote_signer(running_signer.address, server_certs)
    app = create_app(ServerConfig(auth=AuthConfig(**settings)), store=store, signer=signer)
    return app, signer


@pytest.fixture
def app(store, running_signer, server_certs, tmp_path, issuer):
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer)
    yield app
    app.extensions["tufnotary"].close()
    signer.close()


@pytest.fixture
def http(app):
    return app.test_client()


def admin(issuer: ExternalIssuer) -> dict[str, str]:
    return bearer(issuer.token("admin", ADMIN_ACCESS))


def upload(http, files: dict[str, bytes], headers: dict[str, str], collection: str = COLLECTION):
    data = {role: (io.BytesIO(content), f"{role}.json") for role, content in files.items()}
    return http.post(f"/v2/{collection}/_trust/tuf/", data=data, content_type="multipart/form-data",
                     headers=headers)


def init(http, headers: dict[str, str], collection: str = COLLECTION) -> CollectionFactory:
    from securesystemslib.signer import SSlibKey

    keys = {}
    for role in ("timestamp", "snapshot"):
        response = http.get(f"/v2/{collection}/_trust/tuf/{role}.key", headers=headers)
        assert response.status_code == 200, response.json
        body = response.json
        keys[role] = SSlibKey.from_dict(body.pop("keyid"), body)
    repo = CollectionFactory(online_keys=keys)
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")}, headers, collection)
    assert response.status_code == 200, response.json
    return repo


@pytest.fixture
def published(http, issuer) -> CollectionFactory:
    return init(http, admin(issuer))


def state(app) -> tuple:
    services = app.extensions["tufnotary"]
    store = services.store
    return (
        store.collections(),
        {c: {r: (f.version, f.sha256) for r, f in store.current(c).items()} for c in store.collections()},
        [r.hash for r in store.audit_records(limit=1000)],
        sorted(k.keyid for k in services.signer.list_keys(COLLECTION)),
    )


def error_code(response) -> str:
    return response.json["errors"][0]["code"]


# --- every route x every bad token --------------------------------------------------------

ROUTES = {
    # name: (method, path, level)
    "ping": ("GET", "/v2/", "ping"),
    "current": ("GET", BASE + "timestamp.json", "pull"),
    "versioned": ("GET", BASE + "1.root.json", "pull"),
    "get-key": ("GET", BASE + "snapshot.key", "push"),
    "rotate-key": ("POST", BASE + "timestamp.key", "admin"),
    "publish": ("POST", BASE, "push"),
    "delete": ("DELETE", BASE, "admin"),
    "changefeed": ("GET", f"/v2/{COLLECTION}/_trust/changefeed", "pull"),
    "global-changefeed": ("GET", "/v2/_trust/changefeed", "catalog"),
}


def bad_token(kind: str, issuer: ExternalIssuer) -> dict[str, str]:
    now = int(time.time())
    return {

        "none": {},
        "expired": bearer(issuer.token("admin", ADMIN_ACCESS, exp=now - 600, nbf=now - 900, iat=now - 900)),
        "not-yet-valid": bearer(issuer.token("admin", ADMIN_ACCESS, nbf=now + 600)),
        "wrong-audience": bearer(issuer.token("admin", ADMIN_ACCESS, aud="another-service")),
        "wrong-issuer": bearer(issuer.token("admin", ADMIN_ACCESS, iss="https://evil.example")),
        "wrong-signature": bearer(issuer.token("admin", ADMIN_ACCESS, key=foreign_pem())),
        "unknown-kid": bearer(issuer.token("admin", ADMIN_ACCESS, kid="ext-9", key=foreign_pem())),
        "alg-none": bearer(issuer.unsigned_token(ADMIN_ACCESS)),
        "hs256-public-key": bearer(issuer.hs256_with_public_key(ADMIN_ACCESS)),
        "not-a-jwt": bearer("not.a.jwt"),
        "basic-not-bearer": {"Authorization": "Basic " + base64.b64encode(b"root:root password").decode()},
        "other-collection": bearer(issuer.token("ci", repo_access("other/thing", "*"))),
        "pull-only": bearer(issuer.token("ci", repo_access(COLLECTION, "pull"))),
    }[kind]


UNAUTHENTICATED = ["none", "expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "wrong-signature",
                   "unknown-kid", "alg-none", "hs256-public-key", "not-a-jwt", "basic-not-bearer"]
UNAUTHORISED = ["other-collection", "pull-only"]


def request_route(http, published: CollectionFactory, route: str, headers: dict[str, str]):
    method, path, _ = ROUTES[route]
    if route == "publish":
        published.add_target("evil.tar", b"evil")
        published.bump("targets")
        return upload(http, {"targets": published.sign("targets")}, headers)
    return http.open(path, method=method, headers=headers)


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_refuses_bad_tokens_and_changes_nothing(app, http, issuer, published, route):
    """One collection per route, every kind of bad token in turn (a fresh app per pair would
    spend minutes starting signers for the same checks)."""
    level = ROUTES[route][2]
    checked = []
    for kind in UNAUTHENTICATED + UNAUTHORISED:
        if kind in UNAUTHORISED and (level == "ping" or (kind == "pull-only" and level == "pull")):
            continue  # this token may do this
        before = state(app)
        response = request_route(http, published, route, bad_token(kind, issuer))
        expected = 401 if kind in UNAUTHENTICATED else 403
        assert response.status_code == expected, (route, kind, response.json)
        assert error_code(response) == ("UNAUTHORIZED" if expected == 401 else "DENIED"), (route, kind)
        assert set(response.json["errors"][0]) == {"code", "message", "detail"}
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="http://localhost/_tufnotary/token",service="tufnotary-test"')
        assert state(app) == before, (route, kind)
        checked.append(kind)
    assert len(checked) >= len(UNAUTHENTICATED)


def test_an_admin_token_passes_every_route(http, issuer, published):
    for route in ROUTES:  # in this order: delete last
        response = request_route(http, published, route, admin(issuer))
        assert response.status_code == 200, (route, response.json)


def test_challenge_names_the_scope_a_publisher_needs(http):
    response = upload(http, {}, {})
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="http://localhost/_tufnotary/token",service="tufnotary-test",'
        f'scope="repository:{COLLECTION}:pull,push"')
    delete = http.delete(BASE)
    assert f'scope="repository:{COLLECTION}:*"' in delete.headers["WWW-Authenticate"]
    bad = http.get(BASE + "root.json", headers=bearer("x.y.z"))
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_glob_grants(http, issuer):
    token = bearer(issuer.token("team", repo_access("wabbit-networks/*", "pull", "push")))
    init(http, token, "wabbit-networks/net-monitor")
    init(http, token, "wabbit-networks/deep/nested")
    for outside in ("wabbit-networksx/net-monitor", "other/net-monitor", "wabbit-networks"):
        response = http.get(f"/v2/{outside}/_trust/tuf/timestamp.key", headers=token)
        assert response.status_code == 403, outside
    assert http.delete(BASE, headers=token).status_code == 403  # push does not include *
    assert http.get("/v2/_trust/changefeed", headers=token).status_code == 403


def test_key_rotation_by_kid(http, issuer):
    """The JWKS lists ext-1 and ext-2: tokens of both verify, each with its own key only."""
    for kid in ("ext-1", "ext-2"):
        token = bearer(issuer.token("ci", repo_access(COLLECTION, "pull"), kid=kid))
        assert http.get("/v2/", headers=token).status_code == 200
    swapped = issuer.token("ci", repo_access(COLLECTION, "pull"), kid="ext-2", key=issuer.keys["ext-1"])
    assert http.get("/v2/", headers=bearer(swapped)).status_code == 401


def test_only_the_new_kid_after_rotation(store, running_signer, server_certs, tmp_path, issuer):
    rotated = ExternalIssuer({"ext-2": issuer.keys["ext-2"]})
    app, signer = make_app(store, running_signer, server_certs, tmp_path, rotated)
    try:
        http = app.test_client()
        assert http.get("/v2/", headers=bearer(issuer.token(kid="ext-2"))).status_code == 200
        assert http.get("/v2/", headers=bearer(issuer.token(kid="ext-1"))).status_code == 401
    finally:
        signer.close()


def test_anonymous_pull_reads_metadata_only(store, running_signer, server_certs, tmp_path, issuer):
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer, anonymous_pull=True)
    try:
        http = app.test_client()
        init(http, admin(issuer))
        assert http.get("/v2/").status_code == 200
        assert http.get(BASE + "timestamp.json").status_code == 200
        assert http.get(BASE + "1.root.json").status_code == 200
        before = state(app)
        assert http.get(BASE + "timestamp.key").status_code == 401
        assert http.get("/v2/other/new/_trust/tuf/timestamp.key").status_code == 401
        assert upload(http, {}, {}).status_code == 401
        assert http.delete(BASE).status_code == 401
        assert http.get(f"/v2/{COLLECTION}/_trust/changefeed").status_code == 401  # names and addresses
        assert state(app) == before
    finally:
        signer.close()


def test_anonymous_pull_is_off_by_default(http):
    assert AuthConfig().anonymous_pull is False
    assert http.get("/v2/").status_code == 401
    assert http.get(BASE + "timestamp.json").status_code == 401


# --- the server's own issuer -----------------------------------------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get_token(http, user: str, password: str, *scopes: str, service: str = SERVICE):
    query = "&".join([f"service={service}"] + [f"scope={s}" for s in scopes])
    return http.get(f"/_tufnotary/token?{query}", headers=basic(user, password))


def test_own_token_endpoint_grants_the_intersection(http):
    response = get_token(http, "alice", PASSWORD, f"repository:{COLLECTION}:pull,push,*",
                         "repository:other/thing:pull", "registry:catalog:*")
    assert response.status_code == 200, response.json
    assert response.json["expires_in"] == 300 and response.json["token"] == response.json["access_token"]
    token = bearer(response.json["token"])
    init(http, token)  # pull, push
    assert http.delete(BASE, headers=token).status_code == 403  # alice has no *
    assert http.get("/v2/other/thing/_trust/tuf/root.json", headers=token).status_code == 403
    assert http.get("/v2/_trust/changefeed", headers=token).status_code == 403
    root = bearer(get_token(http, "root", "root password", f"repository:{COLLECTION}:*").json["token"])
    assert http.delete(BASE, headers=root).status_code == 200


@pytest.mark.parametrize("user, password", [("alice", "wrong"), ("nobody", PASSWORD), ("alice", "")])
def test_own_token_endpoint_refuses_wrong_credentials(http, user, password):
    response = get_token(http, user, password, f"repository:{COLLECTION}:pull")
    assert response.status_code == 401 and error_code(response) == "UNAUTHORIZED"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert http.get("/_tufnotary/token?service=tufnotary-test").status_code == 401


def test_own_token_endpoint_refuses_another_service_and_bad_scopes(http):
    assert get_token(http, "alice", PASSWORD, "repository:x:pull", service="registry").status_code == 400
    assert get_token(http, "alice", PASSWORD, "repository:UPPER:pull").status_code == 400
    assert get_token(http, "alice", PASSWORD, "nonsense").status_code == 400


def test_users_file_is_reread_when_it_changes(http, tmp_path):
    from tufnotary.server.users import write_user

    assert get_token(http, "bob", "bob's password").status_code == 401
    write_user(tmp_path / "users.toml", "bob", "bob's password", ["repository:bob/*:pull"], rounds=4)
    assert get_token(http, "bob", "bob's password").status_code == 200


def test_no_token_password_or_hash_reaches_the_logs(http, issuer, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    response = get_token(http, "alice", PASSWORD, f"repository:{COLLECTION}:pull,push")
    token = response.json["token"]
    get_token(http, "alice", "a wrong password")
    forged = issuer.hs256_with_public_key(ADMIN_ACCESS)
    http.get(BASE + "root.json", headers=bearer(forged))
    http.get(BASE + "root.json", headers=bearer(token))
    init(http, bearer(token))
    hashes = [line.split('"')[1] for line in (tmp_path / "users.toml").read_text().splitlines()
              if line.startswith("password_bcrypt")]
    text = caplog.text
    assert "issued a token to alice" in text  # the logs do say what happened
    for secret in [token, token.split(".")[2], forged.split(".")[2], PASSWORD, "a wrong password", *hashes]:
        assert secret not in text
    assert PASSWORD not in repr(http.application.extensions["tufnotary_auth"].users.authenticate("alice", PASSWORD))


# --- limits and refusing to start open -----------------------------------------------------------

def test_rate_limit_per_client_answers_429_with_retry_after(store, running_signer, server_certs, tmp_path, issuer):
    app, signer = make_app(store, running_signer, server_certs, tmp_path, issuer, rate_limit=0.5, rate_burst=3)
    try:
        http = app.test_client()
        answers = [http.get("/v2/", environ_base={"REMOTE_ADDR": "192.0.2.1"}) for _ in range(4)]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        assert error_code(answers[3]) == "TOO_MANY_REQUESTS" and int(answers[3].headers["Retry-After"]) >= 1
        # another client has its own bucket
        assert http.get("/v2/", environ_base={"REMOTE_ADDR": "192.0.2.2"}).status_code == 401
    finally:
        signer.close()


def test_the_default_configuration_refuses_to_start(store, running_signer, server_certs):
    signer = remote_signer(running_signer.address, server_certs)
    try:
        with pytest.raises(ValueError, match="nothing is configured to authenticate"):
            create_app(ServerConfig(), store=store, signer=signer)
        # pull-only: anonymous pull and no issuer runs, and refuses every write
        app = create_app(ServerConfig(auth=AuthConfig(anonymous_pull=True)), store=store, signer=signer)
        assert app.test_client().delete(BASE).status_code == 401
    finally:
        signer.close()


def test_serve_refuses_auth_none_beyond_loopback():
    from tufnotary.server.cli import _check_auth

    off = ServerConfig(auth=AuthConfig(mode="none"))
    _check_auth(off, "127.0.0.1:4443")
    with pytest.raises(ValueError, match="loopback"):
        _check_auth(off, "0.0.0.0:4443")
    with pytest.raises(ValueError):
        _check_auth(ServerConfig(), "127.0.0.1:4443")


@pytest.mark.parametrize("settings", [
    {"algorithms": ("HS256",)}, {"algorithms": ("none",)}, {"mode": "open"},
    {"issuer": "x"}, {"users_file": "/x"},
])
def test_unsafe_auth_settings_are_refused(settings):
    with pytest.raises(ValueError):
        AuthConfig(**settings)


def test_auth_settings_from_the_environment():
    from tufnotary.server.config import config_from_env

    config = config_from_env({"TUFNOTARY_SERVER_AUTH_ANONYMOUS_PULL": "true", "TUFNOTARY_SERVER_RATE_LIMIT": "5",
                              "TUFNOTARY_SERVER_AUTH_ALGORITHMS": "ES256, RS256"})
    assert config.auth.anonymous_pull and config.auth.rate_limit == 5.0
    assert config.auth.algorithms == ("ES256", "RS256") and config.auth.enabled
    with pytest.raises(ValueError):
        config_from_env({"TUFNOTARY_SERVER_AUTH_ALGORITHMS": "RS256,HS512"})

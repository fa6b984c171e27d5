"""Audit records through the API (who, from where, what: roles, versions, per-target digests) for
each kind of change, the changefeeds, `tufnotary-server audit verify` on a tampered database,
and collection-name fuzzing that never reaches storage."""

from __future__ import annotations

import hashlib
import sqlite3
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.auth_helpers import CATALOG, bearer, repo_access
from tests.server.test_auth import (  # noqa: F401  (fixtures)
    BASE,
    COLLECTION,
    admin,
    app,
    http,
    init,
    issuer,
    upload,
)
from tufnotary.server.names import _COLLECTION_RE


def feed(http, headers, collection: str | None = COLLECTION, **query):
    path = f"/v2/{collection}/_trust/changefeed" if collection else "/v2/_trust/changefeed"
    response = http.get(path, query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def test_each_kind_of_change_is_recorded_with_subject_client_and_target_digests(http, issuer):
    publisher = bearer(issuer.token("ci-bot", repo_access(COLLECTION, "pull", "push")))
    repo = init(http, publisher)
    repo.add_target("app.tar", b"app v1")
    repo.add_target("doc.txt", b"doc")
    repo.bump("targets")
    assert upload(http, {"targets": repo.sign("targets")}, publisher).status_code == 200
    repo.add_target("app.tar", b"app v2")
    del repo.md("targets").signed.targets["doc.txt"]
    repo.add_target("new.bin", b"new")
    repo.bump("targets")
    assert upload(http, {"targets": repo.sign("targets")}, publisher).status_code == 200
    owner = admin(issuer)
    assert http.post(BASE + "timestamp.key", headers=owner).status_code == 200
    assert http.delete(BASE, headers=owner).status_code == 200

    records = feed(http, owner)["records"]
    assert [(r["action"], r["subject"]) for r in records] == [
        ("key-create", "ci-bot"), ("key-create", "ci-bot"), ("publish", "ci-bot"), ("publish", "ci-bot"),
        ("publish", "ci-bot"), ("key-rotate", "admin"), ("delete", "admin")]
    assert all(r["client"] == "127.0.0.1" and r["collection"] == COLLECTION for r in records)
    assert all(r["details"]["issuer"] == "https://auth.example.test" for r in records)
    assert records[2]["details"]["roles"] == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    first, second = records[3]["details"], records[4]["details"]
    assert first["roles"] == {"targets": 2, "snapshot": 2, "timestamp": 2} and first["previous"]["targets"] == 1
    sha = {data: hashlib.sha256(data).hexdigest() for data in (b"app v1", b"app v2", b"doc", b"new")}
    assert [(c["path"], c["change"], c["new_sha256"]) for c in first["targets"]["targets"]] == [
        ("app.tar", "added", sha[b"app v1"]), ("doc.txt", "added", sha[b"doc"])]
    assert second["targets"]["targets"] == [
        {"path": "app.tar", "change": "changed", "old_sha256": sha[b"app v1"], "new_sha256": sha[b"app v2"],
         "old_length": 6, "new_length": 6},
        {"path": "doc.txt", "change": "removed", "old_sha256": sha[b"doc"], "old_length": 3},
        {"path": "new.bin", "change": "added", "new_sha256": sha[b"new"], "new_length": 3}]
    assert records[5]["details"]["role"] == "timestamp" and records[5]["details"]["state"] == "pending"
    assert records[6]["details"]["roles"]["targets"] == 3 and len(records[6]["details"]["signer_keys"]) == 3
    # the collection is gone, its records are not; the chain links them all
    assert http.get(BASE + "root.json", headers=owner).status_code == 404
    assert [r["prev_hash"] for r in records[1:]] == [r["hash"] for r in records[:-1]]


def test_changefeed_pages_and_the_global_one_needs_catalog(http, issuer):
    owner = admin(issuer)
    for name in ("a/one", "a/two"):
        init(http, owner, name)
    page = feed(http, owner, "a/one", limit=2)
    assert len(page["records"]) == 2 and page["more"] is True
    rest = feed(http, owner, "a/one", since=page["next"])
    assert [r["action"] for r in rest["records"]] == ["publish"] and rest["more"] is False
    everything = feed(http, owner, None)
    assert {r["collection"] for r in everything["records"]} == {"a/one", "a/two"}
    puller = bearer(issuer.token("reader", repo_access("a/*", "pull")))
    assert feed(http, puller, "a/two")["records"]
    assert http.get("/v2/_trust/changefeed", headers=puller).status_code == 403
    catalog = bearer(issuer.token("auditor", CATALOG))
    assert len(feed(http, catalog, None)["records"]) == len(everything["records"])
    for bad in ({"since": "-1"}, {"limit": "0"}, {"limit": "1001"}, {"since": "x"}):
        response = http.get("/v2/a/one/_trust/changefeed", query_string=bad, headers=owner)
        assert response.status_code == 400 and response.json["errors"][0]["code"] == "REQUEST_INVALID"


def test_renewal_is_recorded_as_the_server(app, http, issuer):
    from datetime import timedelta

    from tufnotary.server.config import ServerConfig
    from tufnotary.server.publish import utcnow
    from tufnotary.server.renewer import renew

    init(http, admin(issuer))
    services = app.extensions["tufnotary"]
    assert renew(services.store, services.signer, ServerConfig(), COLLECTION, now=utcnow() + timedelta(days=2))
    last = services.store.audit_records(COLLECTION)[-1]
    assert (last.action, last.subject) == ("renew", "tufnotary-server")


def test_audit_verify_command_names_the_tampered_record(app, http, issuer, store, tmp_path, monkeypatch, capsys):
    from tufnotary.server.cli import main

    for name in ("v/one", "v/two"):
        init(http, admin(issuer), name)
    monkeypatch.setenv("TUFNOTARY_SERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'server.db'}")
    assert main(["audit", "verify"]) == 0
    assert "audit log OK: 6 records" in capsys.readouterr().out
    db = sqlite3.connect(tmp_path / "server.db")
    db.execute("UPDATE audit_log SET subject = 'someone-else' WHERE seq = 3")
    db.commit()
    assert main(["audit", "verify"]) == 3
    assert "BROKEN at record 3" in capsys.readouterr().err
    db.execute("DELETE FROM audit_log WHERE seq IN (2, 3)")
    db.commit()
    db.close()
    assert main(["audit", "verify"]) == 3
    assert "record 2 is missing" in capsys.readouterr().err


class SpyStore:
    """Forwards to the real store, failing the test if any call names an invalid collection."""

    def __init__(self, store) -> None:
        self._store, self.calls = store, 0

    def __getattr__(self, name):
        method = getattr(self._store, name)

        def checked(*args, **kwargs):
            self.calls += 1
            collection = kwargs.get("collection", args[0] if args and isinstance(args[0], str) else None)
            assert collection is None or _COLLECTION_RE.fullmatch(collection), collection
            return method(*args, **kwargs)

        return checked


_name_chars = string.ascii_letters + string.digits + "._-/:@%~ \t\u00e9\u0130\u212a"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(_name_chars, min_size=1, max_size=40),
                      st.text(min_size=1, max_size=20), st.just("a" * 256), st.just("a/" * 128 + "b")))
def test_fuzzed_collection_names_never_reach_storage_invalid(fuzz_client, name):
    http, spy, headers = fuzz_client  # the spy fails the test if storage sees an invalid name
    path = quote(name, safe="/")
    for method, suffix in (("GET", "_trust/tuf/root.json"), ("POST", "_trust/tuf/"), ("DELETE", "_trust/tuf/"),
                           ("GET", "_trust/tuf/timestamp.key"), ("GET", "_trust/changefeed")):
        response = http.open(f"/v2/{path}/{suffix}", method=method, headers=headers)
        if not _COLLECTION_RE.fullmatch(name) or len(name) > 255:
            assert response.status_code in (308, 400, 404, 405), (name, method, response.status_code)
            if response.status_code == 400:
                assert response.json["errors"][0]["code"] == "NAME_INVALID"


@pytest.fixture
def fuzz_client(store, running_signer, server_certs, tmp_path):
    from tests.signer.harness import remote_signer
    from tufnotary.server.app import create_app
    from tufnotary.server.auth_config import AuthConfig
    from tufnotary.server.config import ServerConfig

    spy = SpyStore(store)
    signer = remote_signer(running_signer.address, server_certs)
    app = create_app(ServerConfig(auth=AuthConfig(mode="none", rate_limit=0)), store=spy, signer=signer)
    yield app.test_client(), spy, {}
    signer.close()

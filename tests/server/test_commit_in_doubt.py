"""A COMMIT whose connection broke is in doubt: the publish answers what actually happened. It reads the
collection again and answers 200 when the upload was stored; otherwise 503 saying the outcome is unknown
(never a plain "not stored" for a change that may be there)."""

from __future__ import annotations

import pytest

from tests.server.test_api import COLLECTION, error_code, online_key, upload
from tests.tuf_factory import CollectionFactory
from tufnotary.server.errors import CommitInDoubtError

IN_DOUBT = "connection broke while committing, so whether the change was stored is unknown"


@pytest.fixture
def repo(http) -> CollectionFactory:
    repo = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    assert upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")}).status_code == 200
    return repo


def _commit_then_break(store, monkeypatch, applied: bool) -> None:
    real = store.commit

    def commit(*args, **kwargs):
        if applied:
            real(*args, **kwargs)
        raise CommitInDoubtError(f"PostgreSQL test: server closed the connection; {IN_DOUBT}")

    monkeypatch.setattr(store, "commit", commit)


def test_an_in_doubt_commit_that_was_applied_answers_200(http, store, repo, monkeypatch):
    repo.bump("targets")
    _commit_then_break(store, monkeypatch, applied=True)

    response = upload(http, {"targets": repo.sign("targets")})

    assert response.status_code == 200, response.json
    assert response.json["versions"]["targets"] == 2
    assert store.current(COLLECTION)["targets"].version == 2


def test_an_in_doubt_commit_that_was_not_applied_answers_503_saying_so(http, store, repo, monkeypatch):
    before = {role: f.version for role, f in store.current(COLLECTION).items()}
    repo.bump("targets")
    _commit_then_break(store, monkeypatch, applied=False)

    response = upload(http, {"targets": repo.sign("targets")})

    assert (response.status_code, error_code(response)) == (503, "STORAGE_UNAVAILABLE")
    assert IN_DOUBT in response.json["errors"][0]["message"]
    assert {role: f.version for role, f in store.current(COLLECTION).items()} == before

"""Renewing many collections in passes, over SQLite and PostgreSQL with a real signer: claims in
chunks, one SignBatch per role per chunk, concurrent renewers, and the collections left alone."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from tuf.api.metadata import Metadata

from tests.server.test_api import online_key, upload
from tests.signer.harness import remote_signer
from tests.tuf_factory import CollectionFactory
from tufnotary.server import metrics
from tufnotary.server.config import ServerConfig
from tufnotary.server.publish import utcnow
from tufnotary.server.renewer import renew_all
from tufnotary.server.storage import NewFile, open_store

COUNT = 5
NAMES = [f"many/c{i}" for i in range(COUNT)]
LATER = timedelta(hours=13)  # past half of the default 1-day timestamp lifetime
CONFIG = ServerConfig(renew_batch=2)  # three chunks for five collections


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'server.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    opened = open_store(url)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def collections(http):
    """COUNT published collections, each with its own server-held timestamp and snapshot keys."""
    repos = {}
    for name in NAMES:
        repo = CollectionFactory(online_keys={r: online_key(http, r, name) for r in ("timestamp", "snapshot")})
        response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")}, name)
        assert response.status_code == 200, response.json
        repos[name] = repo
    return repos


def signer_of(app):
    return app.extensions["tufnotary"].signer


def timestamp_versions(store) -> dict[str, int]:
    return {name: store.get(name, "timestamp").version for name in NAMES}


def failures(code: str) -> float:
    return metrics.renewal_failures.labels(code)._value.get()


class CountingClaims:
    """The store, recording what each claim returned."""

    def __init__(self, store):
        self._store, self.claims = store, []

    def claim_renewals(self, *args):
        names = self._store.claim_renewals(*args)
        if names:
            self.claims.append(names)
        return names

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_all_due_collections_renewed_in_one_pass_one_claim_each(app, store, collections, monkeypatch):
    monkeypatch.setattr("tufnotary.server.publish.utcnow", lambda: utcnow() + LATER)
    counting = CountingClaims(store)
    renewals_before = metrics.renewals._value.get()
    assert renew_all(counting, signer_of(app), CONFIG) == COUNT
    assert sorted(n for names in counting.claims for n in names) == NAMES
    assert [len(names) for names in counting.claims] == [2, 2, 1]
    assert timestamp_versions(store) == {name: 2 for name in NAMES}
    assert metrics.renewals._value.get() == renewals_before + COUNT
    for name in NAMES:
        root = Metadata.from_bytes(store.get(name, "root").data)
        timestamp = Metadata.from_bytes(store.get(name, "timestamp").data)
        root.signed.verify_delegate("timestamp", timestamp.signed_bytes, timestamp.signatures)
        assert timestamp.signed.snapshot_meta.version == 1
    renewals = [r for r in store.audit_records(since=0, limit=1000) if r.action == "renew"]
    assert sorted(r.collection for r in renewals) == NAMES
    # Renewed: nothing is due any more, so the next pass claims nothing.
    counting.claims.clear()
    assert renew_all(counting, signer_of(app), CONFIG) == 0
    assert counting.claims == []


def test_snapshots_renewed_with_their_timestamps_in_batches(app, store, collections):
    assert renew_all(store, signer_of(app), CONFIG, now=utcnow() + timedelta(days=4)) == COUNT
    for name in NAMES:
        assert store.get(name, "snapshot").version == 2
        timestamp = Metadata.from_bytes(store.get(name, "timestamp").data).signed
        assert timestamp.version == 2 and timestamp.snapshot_meta.version == 2


def test_nothing_due_nothing_claimed_nothing_written(app, store, collections):
    counting = CountingClaims(store)
    assert renew_all(counting, signer_of(app), CONFIG) == 0
    assert counting.claims == []
    assert timestamp_versions(store) == {name: 1 for name in NAMES}


def test_two_renewers_at_once_renew_each_collection_once(app, store, store_url_of, collections, server_certs,
                                                        running_signer):
    refused_before = failures("SIGNER_REFUSED"), failures("VERSION_CONFLICT")
    results: list[int] = []
    barrier = threading.Barrier(2)

    def renewer() -> None:
        own_store = open_store(store_url_of(store))
        own_signer = remote_signer(running_signer.address, server_certs)
        try:
            barrier.wait()
            results.append(renew_all(own_store, own_signer, CONFIG, now=utcnow() + LATER))
        finally:
            own_signer.close()
            own_store.close()

    threads = [threading.Thread(target=renewer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(results) == COUNT and len(results) == 2
    assert timestamp_versions(store) == {name: 2 for name in NAMES}  # no double versions
    assert (failures("SIGNER_REFUSED"), failures("VERSION_CONFLICT")) == refused_before


def test_a_root_without_the_server_key_is_skipped_and_unchanged(app, store, collections, caplog):
    victim = collections[NAMES[0]]
    victim.rotate("timestamp")  # the owner's own key: the server can no longer sign the timestamp
    victim.bump("root")
    store.commit(NAMES[0], [NewFile("root", 2, victim.sign("root", victim.signers["root"]))], {"root": 1})
    before = failures("ONLINE_KEY_MISMATCH")
    with caplog.at_level(logging.WARNING, logger="tufnotary.server.renewer"):
        assert renew_all(store, signer_of(app), CONFIG, now=utcnow() + LATER) == COUNT - 1
    assert timestamp_versions(store) == {NAMES[0]: 1, **{name: 2 for name in NAMES[1:]}}
    assert failures("ONLINE_KEY_MISMATCH") == before + 1
    assert any(NAMES[0] in r.getMessage() and "does not list the key" in r.getMessage() for r in caplog.records)
    # The next pass tries it again (its claim was released), and only it.
    counting = CountingClaims(store)
    assert renew_all(counting, signer_of(app), CONFIG, now=utcnow() + LATER) == 0
    assert counting.claims == [[NAMES[0]]]
    assert failures("ONLINE_KEY_MISMATCH") == before + 2
    assert store.get(NAMES[0], "timestamp").version == 1


def test_signer_down_fails_the_pass_and_the_next_one_renews(app, store, collections, running_signer, server_certs):
    unreachable = remote_signer("127.0.0.1:1", server_certs, timeout=0.5)  # nothing listens there
    before = failures("SIGNER_UNAVAILABLE")
    try:
        assert renew_all(store, unreachable, ServerConfig(renew_batch=2, signer_timeout=0.5),
                         now=utcnow() + LATER) == 0
    finally:
        unreachable.close()
    assert failures("SIGNER_UNAVAILABLE") == before + CONFIG.renew_batch  # the first chunk, then it stopped
    assert timestamp_versions(store) == {name: 1 for name in NAMES}
    assert renew_all(store, signer_of(app), CONFIG, now=utcnow() + LATER) == COUNT  # claims were released


@pytest.fixture
def store_url_of(tmp_path):
    """The URL another store of the same database opens."""

    def url(store) -> str:
        return f"sqlite:///{store.path}" if hasattr(store, "path") else store._url

    return url


def test_a_back_filled_owner_signed_snapshot_is_left_alone_and_untracked(app, http, store):
    """Migration 0003 assumed every stored snapshot server-signed; the signer's KEY_NOT_FOUND corrects it."""
    name = "many/own-snapshot"
    repo = CollectionFactory(online_keys={"timestamp": online_key(http, "timestamp", name)})
    repo.snapshot_for({"targets": 1})
    files = {"root": repo.sign("root"), "targets": repo.sign("targets"), "snapshot": repo.sign("snapshot")}
    assert upload(http, files, name).status_code == 200
    assert store.renewal_state([name])[name].snapshot_online is False
    snapshot_expires = Metadata.from_bytes(files["snapshot"]).signed.expires
    store._run(lambda cur: cur.execute(store._q("UPDATE collections SET snapshot_expires = ? WHERE name = ?"),
                                       (store._encode_time(snapshot_expires), name)), write=True)
    assert store.renewal_state([name])[name].snapshot_online is True  # as back-filled
    later = utcnow() + timedelta(days=4)
    assert renew_all(store, signer_of(app), CONFIG, now=later) == 1
    assert store.get(name, "snapshot").version == 1  # the owner's, untouched
    assert store.get(name, "timestamp").version == 2
    assert store.renewal_state([name])[name].snapshot_online is False


def test_a_damaged_stored_file_fails_that_collection_only(app, store, collections):
    store.commit(NAMES[0], [NewFile("timestamp", 2, b"\x00not json", online_expires=utcnow())], {"timestamp": 1})
    before = failures("METADATA_MALFORMED")
    assert renew_all(store, signer_of(app), CONFIG, now=utcnow() + LATER) == COUNT - 1
    assert failures("METADATA_MALFORMED") == before + 1
    assert timestamp_versions(store) == {NAMES[0]: 2, **{name: 2 for name in NAMES[1:]}}
    assert store.get(NAMES[0], "timestamp").data == b"\x00not json"

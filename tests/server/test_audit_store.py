"""The audit chain in the `MetaStore` contract, over SQLite and PostgreSQL: appended in the same
transaction as the change, linear under concurrent publishes, kept after deletion, and
`verify_chain` catching an edited, a deleted and a truncated record."""

from __future__ import annotations

import threading

import pytest

from tests.server.test_storage import COLLECTION, TOP_ROLES, init, new, store, store_url, versions  # noqa: F401
from tufnotary.server.audit import GENESIS_HASH, AuditEntry, verify_chain
from tufnotary.server.errors import VersionConflictError
from tufnotary.server.storage import MetaStore, open_store


def entry(collection: str = COLLECTION, action: str = "publish", **details) -> AuditEntry:
    return AuditEntry(action, collection, "alice", "127.0.0.1", details)


def all_records(store: MetaStore):
    return store.audit_records(since=0, limit=10_000)


def test_commit_appends_its_record_and_a_conflict_appends_nothing(store: MetaStore) -> None:
    assert store.audit_head() == (0, GENESIS_HASH)
    store.commit(COLLECTION, [new(r, 1) for r in TOP_ROLES], {r: 0 for r in TOP_ROLES}, audit=entry(n=1))
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("timestamp", 3)], {"timestamp": 2}, audit=entry(n=2))
    records = all_records(store)
    assert [(r.seq, r.action, r.subject, r.client) for r in records] == [(1, "publish", "alice", "127.0.0.1")]
    assert records[0].to_dict()["details"] == {"n": 1}
    assert store.audit_head() == (1, records[0].hash)
    assert verify_chain(records, store.audit_head()).ok


def test_delete_keeps_the_records_and_appends_its_own(store: MetaStore) -> None:
    init(store)
    store.append_audit(entry(action="key-create", role="timestamp"))
    assert store.delete_collection(COLLECTION, audit=entry(action="delete"))
    assert not store.delete_collection(COLLECTION, audit=entry(action="delete"))
    assert [r.action for r in store.audit_records(COLLECTION)] == ["key-create", "delete"]
    assert verify_chain(all_records(store), store.audit_head()).ok


def test_changefeed_pages_by_collection(store: MetaStore) -> None:
    for i in range(5):
        store.append_audit(entry("a/one" if i % 2 else "a/two", n=i))
    one = store.audit_records("a/one")
    assert [r.seq for r in one] == [2, 4]
    assert [r.seq for r in store.audit_records(since=1, limit=2)] == [2, 3]
    assert [r.seq for r in store.audit_records("a/two", since=3)] == [5]
    with pytest.raises(ValueError):
        store.audit_records(since=-1)


def test_concurrent_publishes_to_different_collections_keep_one_linear_chain(store: MetaStore, store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(i: int, s: MetaStore) -> None:
        try:
            barrier.wait()
            for n in range(5):
                s.commit(f"race/c{i}-{n}", [new(r, 1) for r in TOP_ROLES], {r: 0 for r in TOP_ROLES},
                         audit=entry(f"race/c{i}-{n}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    assert not errors
    records = all_records(store)
    assert [r.seq for r in records] == list(range(1, 21))
    assert verify_chain(records, store.audit_head()).ok


def _execute(store_url: str, sql: str) -> None:
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite://"):])
        conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        import psycopg2

        conn = psycopg2.connect(store_url)
        with conn, conn.cursor() as cur:
            cur.execute(sql)
        conn.close()


@pytest.mark.parametrize("tamper, broken_at, words", [
    ("UPDATE audit_log SET subject = 'mallory' WHERE seq = 2", 2, "edited"),
    ("UPDATE audit_log SET details = '{\"n\":9}' WHERE seq = 3", 3, "edited"),
    ("DELETE FROM audit_log WHERE seq = 2", 2, "missing"),
    ("DELETE FROM audit_log WHERE seq = 4", 4, "deleted from the end"),
])
def test_tampering_is_detected_at_the_record_that_broke(store: MetaStore, store_url: str, tamper: str,
                                                       broken_at: int, words: str) -> None:
    for i in range(4):
        store.append_audit(entry(n=i))
    assert verify_chain(all_records(store), store.audit_head()).ok
    _execute(store_url, tamper)
    report = verify_chain(all_records(store), store.audit_head())
    assert not report.ok
    assert report.broken_at == broken_at and words in report.reason


def test_rewriting_a_record_and_its_hash_breaks_the_next_link(store: MetaStore, store_url: str) -> None:
    for i in range(3):
        store.append_audit(entry(n=i))
    first = all_records(store)[0]
    forged = first.__class__(**{**first.__dict__, "subject": "mallory"})
    _execute(store_url, f"UPDATE audit_log SET subject = 'mallory', hash = '{forged.computed_hash()}' WHERE seq = 1")
    report = verify_chain(all_records(store), store.audit_head())
    assert report.broken_at == 2 and "does not link" in report.reason

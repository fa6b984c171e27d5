"""The renewal part of the `MetaStore` contract, over SQLite and PostgreSQL: tracked expiries,
claims (one claimer per collection, leases), `renewal_state`, `commit_many` and the back-fill of
migration 0003."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.server.test_storage import (  # noqa: F401 - store and store_url are fixtures
    COLLECTION, TOP_ROLES, new, payload, store, store_url, versions)
from tufnotary.server.audit import AuditEntry, verify_chain
from tufnotary.server.errors import VersionConflictError
from tufnotary.server.storage import Commit, MetaStore, NewFile, open_store
from tufnotary.server.storage.sql import SqlMetaStore

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
LEASE = timedelta(minutes=5)


def online(role: str, version: int, expires: datetime | None, tag: str = "") -> NewFile:
    return NewFile(role, version, payload(role, version, tag), online_expires=expires)


def create(store: MetaStore, name: str, timestamp_expires: datetime | None,
           snapshot_expires: datetime | None = None) -> None:
    store.commit(name, [new("root", 1), new("targets", 1), online("snapshot", 1, snapshot_expires),
                        online("timestamp", 1, timestamp_expires)], {r: 0 for r in TOP_ROLES})


def claim(store: MetaStore, now: datetime = NOW, limit: int = 100, lease: timedelta = LEASE) -> list[str]:
    """Claim what is due within the hour (timestamp) or the day (snapshot)."""
    return store.claim_renewals(now + timedelta(hours=1), now + timedelta(days=1), now, lease, limit)


def test_claim_finds_due_timestamps_and_snapshots_only(store: MetaStore) -> None:
    create(store, "due/timestamp", NOW + timedelta(minutes=30), NOW + timedelta(days=5))
    create(store, "due/snapshot", NOW + timedelta(hours=20), NOW + timedelta(hours=2))
    create(store, "due/expired", NOW - timedelta(days=3))
    create(store, "fresh", NOW + timedelta(hours=20), NOW + timedelta(days=5))
    create(store, "untracked", None, None)  # e.g. written without expiries: never claimed
    assert claim(store) == ["due/expired", "due/snapshot", "due/timestamp"]


def test_a_claimed_collection_is_not_claimed_again_until_released_or_its_lease_ends(store: MetaStore) -> None:
    for i in range(3):
        create(store, f"c{i}", NOW)
    assert claim(store, limit=2) == ["c0", "c1"]  # most urgent first: equal here, any two
    assert claim(store) == ["c2"]
    assert claim(store) == []
    store.release_renewals(["c1", "no/such/collection"])
    assert claim(store) == ["c1"]
    assert claim(store, now=NOW + LEASE + timedelta(seconds=1)) == ["c0", "c1", "c2"]


def test_release_of_more_names_than_one_statement_binds(store: MetaStore) -> None:
    create(store, COLLECTION, NOW)
    assert claim(store) == [COLLECTION]
    store.release_renewals([f"other/{i}" for i in range(2500)] + [COLLECTION])
    assert claim(store) == [COLLECTION]


def test_concurrent_claimers_never_share_a_collection(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    stores[0].migrate()
    for i in range(40):
        create(stores[0], f"c{i:02}", NOW)
    barrier = threading.Barrier(len(stores))
    claimed: list[list[str]] = [[] for _ in stores]

    def run(i: int) -> None:
        barrier.wait()
        while names := claim(stores[i], limit=3):
            claimed[i].extend(names)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        every = [name for names in claimed for name in names]
        assert sorted(every) == [f"c{i:02}" for i in range(40)]  # each exactly once
    finally:
        for s in stores:
            s.close()


def test_commits_track_the_newest_online_expiry(store: MetaStore) -> None:
    create(store, COLLECTION, NOW, NOW + timedelta(days=5))
    assert claim(store) == [COLLECTION]
    store.release_renewals([COLLECTION])
    # A renewal writes a later timestamp: no longer due.
    store.commit(COLLECTION, [online("timestamp", 2, NOW + timedelta(hours=20))], {"timestamp": 1})
    assert claim(store) == []
    # An owner-signed snapshot stops the tracking of the snapshot's expiry.
    store.commit(COLLECTION, [online("snapshot", 1 + 1, None), online("timestamp", 3, NOW + timedelta(hours=20))],
                 {"snapshot": 1, "timestamp": 2})
    assert claim(store, now=NOW + timedelta(days=6)) == [COLLECTION]  # the timestamp is due by then
    store.release_renewals([COLLECTION])
    assert store.renewal_state([COLLECTION])[COLLECTION].snapshot_online is False


def test_release_can_stop_tracking_a_snapshot(store: MetaStore) -> None:
    create(store, COLLECTION, NOW + timedelta(hours=20), NOW)
    assert claim(store) == [COLLECTION]
    assert store.renewal_state([COLLECTION])[COLLECTION].snapshot_online is True
    store.release_renewals([COLLECTION], snapshot_offline=[COLLECTION])
    assert claim(store) == []
    assert store.renewal_state([COLLECTION])[COLLECTION].snapshot_online is False


def test_renewal_state_reads_root_snapshot_and_timestamp_of_many(store: MetaStore) -> None:
    create(store, "a", NOW)
    create(store, "b", NOW)
    store.commit("b", [new("targets/bin", 1), online("timestamp", 2, NOW, "b2")], {"timestamp": 1})
    states = store.renewal_state(["a", "b", "missing"])
    assert set(states) == {"a", "b"}
    assert set(states["b"].files) == {"root", "snapshot", "timestamp"}
    assert states["b"].files["timestamp"].version == 2
    assert states["b"].files["timestamp"].data == payload("timestamp", 2, "b2")
    assert states["a"].files["root"].data == payload("root", 1)
    assert store.renewal_state([]) == {}


def test_commit_many_isolates_a_conflict(store: MetaStore) -> None:
    for name in ("a", "b", "c"):
        create(store, name, NOW)
    audit = [AuditEntry("renew", name, "tufnotary-server", None, {"n": name}) for name in ("a", "b", "c")]
    results = store.commit_many([
        Commit("a", [online("timestamp", 2, NOW)], {"timestamp": 1}, audit[0]),
        Commit("b", [online("timestamp", 2, NOW)], {"timestamp": 7}, audit[1]),  # stale
        Commit("c", [online("timestamp", 2, NOW), online("snapshot", 1, NOW)], {"timestamp": 1}, audit[2]),  # dup
    ])
    assert results[0] is None
    assert isinstance(results[1], VersionConflictError) and isinstance(results[2], VersionConflictError)
    assert versions(store, "a")["timestamp"] == 2
    assert versions(store, "b")["timestamp"] == 1 and versions(store, "c")["timestamp"] == 1
    assert store.get("c", "timestamp", 2) is None
    records = store.audit_records(since=0, limit=100)
    assert [json.loads(r.details) for r in records] == [{"n": "a"}]


def test_commit_many_creates_collections_and_chains_their_records(store: MetaStore) -> None:
    create(store, "old", NOW)
    audit = {name: AuditEntry("publish", name, "alice", None, {"n": name}) for name in ("new1", "new2", "bad", "old")}
    results = store.commit_many([
        Commit("new1", [new(r, 1) for r in TOP_ROLES], {r: 0 for r in TOP_ROLES}, audit["new1"]),
        Commit("bad", [new("timestamp", 2)], {"timestamp": 1}, audit["bad"]),  # expects what does not exist
        Commit("old", [online("timestamp", 2, NOW)], {"timestamp": 1}, audit["old"]),
        Commit("new2", [new("root", 1)], {"root": 0}, audit["new2"]),
    ])
    assert [r is None for r in results] == [True, False, True, True]
    assert store.collections() == ["new1", "new2", "old"]  # the conflicting one was not created
    assert versions(store, "new2") == {"root": 1} and versions(store, "old")["timestamp"] == 2
    records = store.audit_records(since=0, limit=100)
    assert [json.loads(r.details)["n"] for r in records] == ["new1", "old", "new2"]
    assert verify_chain(records, store.audit_head()).ok


def test_commit_many_bad_arguments_store_nothing(store: MetaStore) -> None:
    create(store, "a", NOW)
    good = Commit("a", [online("timestamp", 2, NOW)], {"timestamp": 1})
    for bad in ([good, Commit("a", [online("timestamp", 3, NOW)], {"timestamp": 2})],  # twice
                [good, Commit("b", [], {})],
                [good, Commit("b", [online("targets", 1, NOW)], {})],  # not an online role
                [good, Commit("b", [online("timestamp", 1, datetime(2030, 1, 1))], {})]):  # naive time
        with pytest.raises(ValueError):
            store.commit_many(bad)
    with pytest.raises(ValueError):
        store.commit("a", [online("root", 2, NOW)], {"root": 1})
    assert versions(store, "a") == {r: 1 for r in TOP_ROLES}
    assert store.collections() == ["a"]
    assert store.commit_many([]) == []


def test_claim_bad_arguments(store: MetaStore) -> None:
    create(store, COLLECTION, NOW)
    with pytest.raises(ValueError):
        claim(store, limit=0)
    with pytest.raises(ValueError):
        claim(store, lease=timedelta(0))
    with pytest.raises(ValueError):
        store.release_renewals([""])
    assert claim(store) == [COLLECTION]  # nothing was claimed by the refused calls


def test_migration_back_fills_the_expiries_from_stored_json(store_url: str) -> None:
    fresh = open_store(store_url)
    assert isinstance(fresh, SqlMetaStore)
    try:
        everything = fresh.migrations()
        fresh.migrations = lambda: everything[:2]  # type: ignore[method-assign]
        fresh.migrate()

        def tuf(role: str, version: int, expires: str) -> bytes:
            return json.dumps({"signed": {"_type": role, "version": version, "expires": expires},
                               "signatures": []}).encode()

        # Rows as the code before migration 0003 wrote them (its commit knew no expiries).
        rows = {COLLECTION: [("root", 1, "2031-01-01T00:00:00Z"), ("snapshot", 1, "2030-01-05T00:00:00Z"),
                             ("timestamp", 1, "2029-12-01T00:00:00Z"), ("timestamp", 2, "2030-01-01T12:30:00Z")],
                "other": [("root", 1, "2031-01-01T00:00:00Z"), ("timestamp", 1, "2030-01-09T00:00:00Z")],
                "damaged": [("timestamp", 1, None), ("snapshot", 1, "not a time")]}

        def insert(cur) -> None:
            for name, files in rows.items():
                cur.execute(fresh._q("INSERT INTO collections (name, created_at) VALUES (?, ?)"),
                            (name, fresh._encode_time(NOW)))
                cur.execute(fresh._q("SELECT id FROM collections WHERE name = ?"), (name,))
                collection_id = cur.fetchone()[0]
                for role, version, expires in files:
                    # None: not JSON at all (no stored file should be; the upgrade must not fail on one).
                    data = b"\xff\x00 not json" if expires is None else tuf(role, version, expires)
                    cur.execute(fresh._q("INSERT INTO files (collection_id, role, version, data, sha256, length,"
                                         " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                                (collection_id, role, version, data, "0" * 64, len(data), fresh._encode_time(NOW)))

        fresh._run(insert, write=True)
        fresh.migrations = lambda: everything  # type: ignore[method-assign]
        assert fresh.migrate() == [name for name, _ in everything[2:]]
        # The newest timestamp (v2) expires within the hour: due; "other" is not.
        assert fresh.claim_renewals(NOW + timedelta(hours=1), NOW, NOW, LEASE, 10) == [COLLECTION]
        fresh.release_renewals([COLLECTION])
        # Its snapshot is due within 4 days, "other" has none.
        assert fresh.claim_renewals(NOW, NOW + timedelta(days=4), NOW, LEASE, 10) == [COLLECTION]
        assert fresh.claim_renewals(NOW, NOW + timedelta(days=3), NOW + LEASE * 2, LEASE, 10) == []
    finally:
        fresh.close()

"""The `KeyStore` contract, one module over every store: `SqlKeyStore` on SQLite and on a real PostgreSQL,
and `Pkcs11KeyStore` on a real SoftHSM2 token (its catalog on SQLite); the `backend` and `replicas` fixtures
are in conftest.py."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from tuf.api.metadata import Key, Metadata, Root, Timestamp, MetaFile

from tufnotary.signer.catalog import MIGRATIONS
from tufnotary.signer.claims import Claim
from tufnotary.signer.errors import (
    InvalidRequestError,
    KeyNotFoundError,
    KeyRetiredError,
    RollbackRefusedError,
    VersionAlreadySignedError,
)
from tufnotary.signer.keystore import ALGORITHMS, KeyStore

COLLECTION = "wabbit-networks/net-monitor"
SHA = "ab" * 32


@pytest.fixture
def store(replicas: Callable[[], KeyStore]) -> KeyStore:
    return replicas()


@pytest.fixture
def url(backend: tuple[str, Callable[[], KeyStore]]) -> str:
    return backend[0]


def raw_query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Bypass the store: read or write the catalog database directly."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with conn:
                return conn.execute(statement, params).fetchall()
        finally:
            conn.close()
    pg = psycopg2.connect(url)
    try:
        with pg, pg.cursor() as cur:
            cur.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    finally:
        pg.close()


def state(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    keys = raw_query(url, "SELECT key_id, state, max_signed_version, wrapped_private FROM signer_keys ORDER BY key_id")
    audit = raw_query(url, "SELECT * FROM signer_audit ORDER BY id")
    return keys, audit


def test_migrate_is_idempotent(store: KeyStore, url: str) -> None:
    store.migrate()
    versions = [row[0] for row in raw_query(url, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in MIGRATIONS]


def test_create_key_is_idempotent_per_collection_and_role(store: KeyStore) -> None:
    first = store.create_key(COLLECTION, "timestamp")
    assert store.create_key(COLLECTION, "timestamp", "ecdsa-sha2-nistp256") == first
    assert first.scheme == "ed25519" and first.state == "active" and first.max_signed_version == 0
    snapshot = store.create_key(COLLECTION, "snapshot")
    other = store.create_key("wabbit-networks/other", "timestamp")
    assert len({first.key_id, snapshot.key_id, other.key_id}) == 3


def test_concurrent_creates_on_replicas_agree_on_one_key(replicas: Callable[[], KeyStore], url: str) -> None:
    workers = [replicas() for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    results: list[str] = []

    def create(store: KeyStore) -> None:
        barrier.wait()
        results.append(store.create_key(COLLECTION, "timestamp").key_id)

    threads = [threading.Thread(target=create, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(workers) and len(set(results)) == 1
    assert [row[0] for row in raw_query(url, "SELECT key_id FROM signer_keys")] == results[:1]


def test_get_list_and_delete(store: KeyStore) -> None:
    assert store.get_active(COLLECTION, "timestamp") is None
    assert store.list_keys(COLLECTION) == []
    timestamp = store.create_key(COLLECTION, "timestamp")
    snapshot = store.create_key(COLLECTION, "snapshot")
    store.create_key("someone/else", "timestamp")
    assert store.get_active(COLLECTION, "timestamp") == timestamp
    assert store.get_key(snapshot.key_id) == snapshot
    assert store.list_keys(COLLECTION) == [timestamp, snapshot]
    assert store.delete_key(timestamp.key_id) is True
    assert store.delete_key(timestamp.key_id) is False
    assert store.get_active(COLLECTION, "timestamp") is None
    assert store.list_keys(COLLECTION) == [snapshot]
    with pytest.raises(KeyNotFoundError, match=timestamp.key_id):
        store.signer_for(timestamp.key_id)
    assert store.create_key(COLLECTION, "timestamp").key_id != timestamp.key_id


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signature_is_a_valid_tuf_signature(store: KeyStore, algorithm: str) -> None:
    record = store.create_key(COLLECTION, "timestamp", algorithm)
    assert record.scheme == algorithm
    key = record.to_sslib_key()
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    md = Metadata(Timestamp(version=1, expires=expires, snapshot_meta=MetaFile(version=1)))
    signature = store.signer_for(record.key_id).sign(md.signed_bytes)
    assert signature.keyid == record.key_id
    md.signatures[signature.keyid] = signature
    # Verified the way a TUF client does: a root that lists the key for the timestamp role.
    root = Root(expires=expires)
    root.add_key(Key.from_dict(record.key_id, key.to_dict()), "timestamp")
    root.verify_delegate("timestamp", md.signed_bytes, md.signatures)


def test_versions_only_go_up_across_replicas_and_refusals_record_nothing(
    replicas: Callable[[], KeyStore], url: str
) -> None:
    store, replica = replicas(), replicas()
    record = store.create_key(COLLECTION, "timestamp")
    store.record_signature(record.key_id, 3, SHA, "CN=server")
    before = state(url)
    with pytest.raises(VersionAlreadySignedError, match="version 3 already signed") as equal:
        replica.record_signature(record.key_id, 3, SHA, "CN=server")
    assert equal.value.highest == 3
    with pytest.raises(RollbackRefusedError, match=f"{record.key_id}.*version 3.*lower version 2"):
        replica.record_signature(record.key_id, 2, SHA, "CN=server")
    assert state(url) == before
    replica.record_signature(record.key_id, 4, SHA, "CN=server")
    assert store.get_key(record.key_id).max_signed_version == 4  # type: ignore[union-attr]
    with pytest.raises(KeyNotFoundError):
        store.record_signature("0" * 64, 1, SHA, "CN=server")


def test_replicas_racing_on_one_version_exactly_one_wins(replicas: Callable[[], KeyStore], url: str) -> None:
    workers = [replicas() for _ in range(4)]
    record = workers[0].create_key(COLLECTION, "timestamp")
    barrier = threading.Barrier(len(workers))
    outcomes: list[str] = []

    def claim(store: KeyStore) -> None:
        barrier.wait()
        try:
            store.record_signature(record.key_id, 7, SHA, "CN=server")
            outcomes.append("won")
        except VersionAlreadySignedError:
            outcomes.append("lost")

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 3 + ["won"]
    assert len(raw_query(url, "SELECT * FROM signer_audit WHERE version = 7")) == 1


def test_audit_rows_are_appended_and_cannot_be_changed(store: KeyStore, url: str) -> None:
    record = store.create_key(COLLECTION, "snapshot")
    store.record_signature(record.key_id, 1, "11" * 32, "CN=tufnotary-server")
    store.record_signature(record.key_id, 2, "22" * 32, "CN=tufnotary-server")
    entries = store.audit_entries(key_id=record.key_id)
    assert [(e.version, e.payload_sha256, e.collection, e.role, e.client_subject) for e in entries] == [
        (1, "11" * 32, COLLECTION, "snapshot", "CN=tufnotary-server"),
        (2, "22" * 32, COLLECTION, "snapshot", "CN=tufnotary-server"),
    ]
    assert store.audit_entries(collection="someone/else") == []
    for statement in ("UPDATE signer_audit SET version = 99", "DELETE FROM signer_audit"):
        with pytest.raises(Exception, match="append-only"):
            raw_query(url, statement)
    store.delete_key(record.key_id)
    assert len(store.audit_entries(collection=COLLECTION)) == 2  # deleting a key keeps what it signed


def test_rotation_pending_key_becomes_active_on_first_signature(store: KeyStore, url: str) -> None:
    old = store.create_key(COLLECTION, "timestamp")
    store.record_signature(old.key_id, 5, SHA, "CN=server")
    new = store.rotate_key(COLLECTION, "timestamp", "ecdsa-sha2-nistp256")
    assert new.state == "pending" and new.max_signed_version == 5 and new.scheme == "ecdsa-sha2-nistp256"
    assert store.rotate_key(COLLECTION, "timestamp") == new  # idempotent while pending
    assert store.get_active(COLLECTION, "timestamp") == old
    assert [(k.key_id, k.state) for k in store.list_keys(COLLECTION)] == [(old.key_id, "active"), (new.key_id, "pending")]

    store.record_signature(old.key_id, 6, SHA, "CN=server")  # the old key keeps working until the switch
    before = state(url)
    with pytest.raises(VersionAlreadySignedError):  # the pending key must go above the active key's mark
        store.record_signature(new.key_id, 6, SHA, "CN=server")
    assert state(url) == before

    store.signer_for(new.key_id)
    store.record_signature(new.key_id, 7, SHA, "CN=server")
    assert store.get_active(COLLECTION, "timestamp") == new
    assert {k.key_id: k.state for k in store.list_keys(COLLECTION)} == {old.key_id: "retired", new.key_id: "active"}
    with pytest.raises(KeyRetiredError):
        store.signer_for(old.key_id)
    with pytest.raises(KeyRetiredError):
        store.record_signature(old.key_id, 8, SHA, "CN=server")


def test_rotate_without_an_active_key_creates_one(store: KeyStore) -> None:
    record = store.rotate_key(COLLECTION, "snapshot")
    assert record.state == "active" and store.get_active(COLLECTION, "snapshot") == record


def test_retired_key_never_signs_again_and_stays_listed(store: KeyStore) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    assert store.retire_key(record.key_id) is True
    assert store.retire_key(record.key_id) is False
    assert store.get_active(COLLECTION, "timestamp") is None
    assert [(k.key_id, k.state) for k in store.list_keys(COLLECTION)] == [(record.key_id, "retired")]
    with pytest.raises(KeyRetiredError):
        store.signer_for(record.key_id)
    with pytest.raises(KeyRetiredError):
        store.record_signature(record.key_id, 1, SHA, "CN=server")
    assert store.create_key(COLLECTION, "timestamp").key_id != record.key_id


@pytest.mark.parametrize(
    "collection, role, algorithm",
    [("", "timestamp", "ed25519"), ("../etc", "timestamp", "ed25519"), (COLLECTION, "root", "ed25519"),
     (COLLECTION, "targets", "ed25519"), (COLLECTION, "timestamp", "dsa-sha1")],
)
def test_invalid_create_is_refused_and_stores_nothing(
    store: KeyStore, url: str, collection: str, role: str, algorithm: str
) -> None:
    with pytest.raises(InvalidRequestError):
        store.create_key(collection, role, algorithm)
    with pytest.raises(InvalidRequestError):
        store.rotate_key(collection, role, algorithm)
    assert raw_query(url, "SELECT * FROM signer_keys") == []


def test_unknown_key(store: KeyStore) -> None:
    assert store.get_key("0" * 64) is None
    assert store.delete_key("0" * 64) is False
    assert store.retire_key("0" * 64) is False
    with pytest.raises(KeyNotFoundError):
        store.signer_for("0" * 64)


def test_signers_for_gives_each_distinct_keys_signer_or_what_refused_it(store: KeyStore) -> None:
    active = store.create_key(COLLECTION, "timestamp")
    retired = store.create_key(COLLECTION, "snapshot")
    store.retire_key(retired.key_id)
    found = store.signers_for([active.key_id, "0" * 64, active.key_id, retired.key_id])
    assert list(found) == [active.key_id, "0" * 64, retired.key_id]
    assert found[active.key_id] is store.signer_for(active.key_id)
    assert isinstance(found["0" * 64], KeyNotFoundError)
    assert isinstance(found[retired.key_id], KeyRetiredError)


def test_signers_for_reads_every_key_it_has_not_cached_in_one_query(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [store.create_key(f"team/c{i}", "timestamp").key_id for i in range(5)]
    cached = store.signer_for(keys[0])
    database = store._db  # type: ignore[attr-defined]
    reads: list[str] = []
    read = database.select
    monkeypatch.setattr(database, "select", lambda statement, *args: reads.append(statement) or read(statement, *args))
    found = store.signers_for([*keys, "0" * 64, keys[1]])
    assert len(reads) == 1
    assert list(found) == [*keys, "0" * 64] and found[keys[0]] is cached
    assert isinstance(found["0" * 64], KeyNotFoundError)
    assert all(store.signers_for(keys)[key_id] is found[key_id] for key_id in keys)  # now cached: no read
    assert len(reads) == 1


def test_ping_answers_while_the_store_is_reachable(store: KeyStore) -> None:
    store.ping()


# -- cached signers: dropped when the key stops signing, here or on another replica ----------------------------


def test_a_cached_signer_is_dropped_when_this_store_retires_or_deletes_its_key(store: KeyStore) -> None:
    retired = store.create_key(COLLECTION, "timestamp")
    deleted = store.create_key(COLLECTION, "snapshot")
    assert store.signer_for(retired.key_id) is store.signer_for(retired.key_id)  # unwrapped once, then cached
    store.signer_for(deleted.key_id)
    store.retire_key(retired.key_id)
    store.delete_key(deleted.key_id)
    with pytest.raises(KeyRetiredError):
        store.signer_for(retired.key_id)
    with pytest.raises(KeyNotFoundError):
        store.signer_for(deleted.key_id)


def test_a_cached_signer_is_dropped_when_a_rotation_retires_its_key(store: KeyStore) -> None:
    old = store.create_key(COLLECTION, "timestamp")
    store.signer_for(old.key_id)
    new = store.rotate_key(COLLECTION, "timestamp")
    store.record_signature(new.key_id, 1, SHA, "CN=server")
    with pytest.raises(KeyRetiredError):
        store.signer_for(old.key_id)


@pytest.mark.parametrize("change", ["retire", "delete", "rotate"])
def test_a_signer_cached_on_one_replica_cannot_sign_after_another_retires_its_key(
    replicas: Callable[[], KeyStore], url: str, change: str
) -> None:
    serving, admin = replicas(), replicas()
    record = serving.create_key(COLLECTION, "timestamp")
    serving.record_signature(record.key_id, 1, SHA, "CN=server")
    serving.signer_for(record.key_id)  # cached on the serving replica
    if change == "retire":
        admin.retire_key(record.key_id)
    elif change == "delete":
        admin.delete_key(record.key_id)
    else:
        admin.record_signature(admin.rotate_key(COLLECTION, "timestamp").key_id, 2, SHA, "CN=server")
    before = state(url)
    expected = KeyNotFoundError if change == "delete" else KeyRetiredError
    with pytest.raises(expected):  # the claim, which precedes every signature, is the guard
        serving.record_signature(record.key_id, 3, SHA, "CN=server")
    assert state(url) == before
    with pytest.raises(expected):  # and the refusal dropped the cached signer
        serving.signer_for(record.key_id)


# -- record_signatures: many claims in one transaction, decided as one after another -------------------------------


def test_a_claim_naming_another_collection_or_role_than_its_keys_is_refused_and_records_nothing(
    replicas: Callable[[], KeyStore], url: str
) -> None:
    store, admin = replicas(), replicas()
    ts = store.create_key(COLLECTION, "timestamp")
    retired = store.create_key(COLLECTION, "snapshot")
    deleted = store.create_key("team/deleted", "timestamp")
    store.signers_for([retired.key_id, deleted.key_id])  # cached here; another replica then retires and deletes
    admin.retire_key(retired.key_id)
    admin.delete_key(deleted.key_id)
    before = state(url)
    outcomes = store.record_signatures(
        [
            Claim(ts.key_id, 1, SHA, COLLECTION, "snapshot"),
            Claim(ts.key_id, 1, SHA, "team/other", "timestamp"),
            Claim(ts.key_id, 1, SHA, "", ""),
            Claim(retired.key_id, 1, SHA, "team/other", "snapshot"),  # the binding is checked before retirement
            Claim(retired.key_id, 1, SHA, COLLECTION, "snapshot"),
            Claim(deleted.key_id, 1, SHA, "team/other", "timestamp"),  # unknown keys first
            Claim(deleted.key_id, 1, SHA, "team/deleted", "timestamp"),
        ],
        "CN=server",
    )
    assert [(type(o).__name__, str(o)) for o in outcomes] == [
        ("InvalidRequestError", f"key {ts.key_id} belongs to {COLLECTION} timestamp, not to {COLLECTION} snapshot"),
        ("InvalidRequestError", f"key {ts.key_id} belongs to {COLLECTION} timestamp, not to team/other timestamp"),
        ("InvalidRequestError", f"key {ts.key_id} belongs to {COLLECTION} timestamp, not to (no collection) (no role)"),
        ("InvalidRequestError", f"key {retired.key_id} belongs to {COLLECTION} snapshot, not to team/other snapshot"),
        ("KeyRetiredError", f"key {retired.key_id} is retired: it never signs again"),
        ("KeyNotFoundError", f"the signer holds no key {deleted.key_id}"),
        ("KeyNotFoundError", f"the signer holds no key {deleted.key_id}"),
    ]
    assert state(url) == before
    assert store.record_signatures([Claim(ts.key_id, 1, SHA, COLLECTION, "timestamp")], "CN=server") == [None]
    with pytest.raises(KeyRetiredError):  # the refusals dropped the cached signers
        store.signer_for(retired.key_id)



def test_a_batch_of_claims_decides_each_as_if_made_one_after_another(store: KeyStore, url: str) -> None:
    ts = store.create_key(COLLECTION, "timestamp")
    snap = store.create_key(COLLECTION, "snapshot")
    outcomes = store.record_signatures(
        [
            Claim(ts.key_id, 1, "01" * 32),
            Claim(ts.key_id, 1, "02" * 32),  # equal to the claim just accepted
            Claim(snap.key_id, 5, "03" * 32),
            Claim("0" * 64, 1, "04" * 32),  # unknown key
            Claim(snap.key_id, 3, "05" * 32),  # below the claim just accepted
            Claim(ts.key_id, 2, "06" * 32),
        ],
        "CN=server",
    )
    assert [type(o).__name__ if o else None for o in outcomes] == [
        None, "VersionAlreadySignedError", None, "KeyNotFoundError", "RollbackRefusedError", None
    ]
    assert outcomes[1].highest == 1 and outcomes[4].highest == 5  # type: ignore[union-attr]
    assert [(e.key_id, e.version, e.payload_sha256) for e in store.audit_entries()] == [
        (ts.key_id, 1, "01" * 32), (snap.key_id, 5, "03" * 32), (ts.key_id, 2, "06" * 32)
    ]
    assert {k.key_id: k.max_signed_version for k in store.list_keys(COLLECTION)} == {ts.key_id: 2, snap.key_id: 5}
    assert store.record_signatures([], "CN=server") == []


@pytest.mark.parametrize("version", [2**63, 2**63 + 5, 2**70])
def test_a_version_the_catalog_cannot_hold_fails_the_claim_and_records_nothing(
    store: KeyStore, url: str, version: int
) -> None:
    key = store.create_key(COLLECTION, "timestamp")
    store.record_signature(key.key_id, 7, SHA, "CN=server")
    with pytest.raises(Exception):  # noqa: B017 - each backend fails its own way; none rounds the version
        store.record_signatures([Claim(key.key_id, version, SHA)], "CN=server")
    assert store.get_key(key.key_id).max_signed_version == 7  # type: ignore[union-attr]
    assert [e.version for e in store.audit_entries()] == [7]


def test_versions_beyond_32_bits_are_recorded_exactly(store: KeyStore) -> None:
    key = store.create_key(COLLECTION, "timestamp")
    for version in (2**31 + 5, 2**63 - 1):
        assert store.record_signatures([Claim(key.key_id, version, SHA)], "CN=server") == [None]
        assert store.get_key(key.key_id).max_signed_version == version  # type: ignore[union-attr]
    assert [e.version for e in store.audit_entries()] == [2**31 + 5, 2**63 - 1]


def test_a_batch_of_claims_rotates_at_the_pending_keys_first_accepted_claim(store: KeyStore) -> None:
    old = store.create_key(COLLECTION, "timestamp")
    store.record_signature(old.key_id, 1, SHA, "CN=server")
    new = store.rotate_key(COLLECTION, "timestamp")
    outcomes = store.record_signatures(
        [
            Claim(old.key_id, 2, SHA),  # the old key keeps working until the switch
            Claim(new.key_id, 2, SHA),  # the pending key must go above the active key's mark
            Claim(new.key_id, 3, SHA),  # the switch
            Claim(old.key_id, 4, SHA),  # the old key is retired now
            Claim(new.key_id, 4, SHA),
        ],
        "CN=server",
    )
    assert [type(o).__name__ if o else None for o in outcomes] == [
        None, "VersionAlreadySignedError", None, "KeyRetiredError", None
    ]
    assert [(k.key_id, k.state, k.max_signed_version) for k in store.list_keys(COLLECTION)] == [
        (old.key_id, "retired", 2), (new.key_id, "active", 4)
    ]
    assert [(e.key_id, e.version) for e in store.audit_entries()] == [
        (old.key_id, 1), (old.key_id, 2), (new.key_id, 3), (new.key_id, 4)
    ]


def test_a_batch_of_claims_whose_transaction_fails_records_nothing(store: KeyStore, url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    before = state(url)
    with pytest.raises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
        # The second audit row breaks a NOT NULL constraint: the first claim must not stay recorded either.
        store.record_signatures([Claim(record.key_id, 1, SHA), Claim(record.key_id, 2, None)], "CN=server")  # type: ignore[arg-type]
    assert state(url) == before
    store.record_signature(record.key_id, 1, SHA, "CN=server")  # the store is still usable


def test_replicas_claiming_overlapping_batches_at_once_neither_deadlock_nor_sign_twice(
    replicas: Callable[[], KeyStore], url: str
) -> None:
    workers = [replicas() for _ in range(3)]
    keys = [workers[0].create_key(f"team/c{i}", "timestamp").key_id for i in range(8)]
    errors: list[BaseException] = []
    accepted: list[tuple[str, int]] = []
    barrier = threading.Barrier(len(workers))

    def claim_batches(store: KeyStore, seed: int) -> None:
        order = keys[seed:] + keys[:seed]  # each replica claims the same keys in another order
        try:
            barrier.wait()
            for version in range(1, 11):
                batch = [Claim(key_id, version, SHA) for key_id in (order if version % 2 else order[::-1])]
                for claim, outcome in zip(batch, store.record_signatures(batch, "CN=server")):
                    if outcome is None:
                        accepted.append((claim.key_id, claim.version))
                    elif not isinstance(outcome, (VersionAlreadySignedError, RollbackRefusedError)):
                        raise outcome
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=claim_batches, args=(w, i * 3)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(accepted) == len(set(accepted))  # no (key, version) accepted twice
    audited = raw_query(url, "SELECT key_id, version FROM signer_audit")
    assert sorted(audited) == sorted(accepted)
    assert {k.key_id: k.max_signed_version for k in workers[0].get_keys(keys).values()} == {k: 10 for k in keys}

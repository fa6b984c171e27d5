"""The `KeyStore` contract over both SQL backends: SQLite and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner

from tufnotary.signer.errors import InvalidRequestError, KeyNotFoundError, KeyUnwrapError, RollbackRefusedError
from tufnotary.signer.keystore import ALGORITHMS
from tufnotary.signer.sql_keystore import MIGRATIONS, SqlKeyStore

PASSPHRASE = "first passphrase"
COLLECTION = "wabbit-networks/net-monitor"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'signer.db'}"
    return request.getfixturevalue("postgres_url")


def open_store(url: str, passphrase: str = PASSPHRASE, alias: str = "default") -> SqlKeyStore:
    store = SqlKeyStore(url, {alias: passphrase}, alias)
    store.migrate()
    return store


@pytest.fixture
def store(database_url: str) -> Iterator[SqlKeyStore]:
    s = open_store(database_url)
    yield s
    s.close()


def raw_query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Bypass the store: read or write the database directly."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with conn:
                rows = conn.execute(statement, params).fetchall()
        finally:
            conn.close()
        return rows
    pg = psycopg2.connect(url)
    try:
        with pg, pg.cursor() as cur:
            cur.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    finally:
        pg.close()


def key_rows(url: str) -> list[tuple[Any, ...]]:
    return raw_query(url, "SELECT * FROM signer_keys ORDER BY key_id")


def test_migrate_is_idempotent(database_url: str) -> None:
    store = open_store(database_url)
    store.migrate()
    store.close()
    versions = [row[0] for row in raw_query(database_url, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in MIGRATIONS]


def test_create_key_is_idempotent_per_collection_and_role(store: SqlKeyStore) -> None:
    first = store.create_key(COLLECTION, "timestamp")
    again = store.create_key(COLLECTION, "timestamp", "ecdsa-sha2-nistp256")
    assert again == first
    assert first.scheme == "ed25519"
    snapshot = store.create_key(COLLECTION, "snapshot")
    other = store.create_key("wabbit-networks/other", "timestamp")
    assert len({first.key_id, snapshot.key_id, other.key_id}) == 3


def test_concurrent_creates_agree_on_one_key(database_url: str) -> None:
    workers = [open_store(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(workers))
    results: list[str] = []

    def create(store: SqlKeyStore) -> None:
        barrier.wait()
        results.append(store.create_key(COLLECTION, "timestamp").key_id)

    threads = [threading.Thread(target=create, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        w.close()
    assert len(results) == len(workers)
    assert len(set(results)) == 1
    assert [row[0] for row in raw_query(database_url, "SELECT key_id FROM signer_keys")] == results[:1]


def test_get_list_and_delete(store: SqlKeyStore) -> None:
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
    assert store.get_key(timestamp.key_id) is None
    assert store.list_keys(COLLECTION) == [snapshot]
    with pytest.raises(KeyNotFoundError, match=timestamp.key_id):
        store.signer_for(timestamp.key_id)
    replacement = store.create_key(COLLECTION, "timestamp")
    assert replacement.key_id != timestamp.key_id


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signature_verifies_with_the_public_key(store: SqlKeyStore, algorithm: str) -> None:
    record = store.create_key(COLLECTION, "timestamp", algorithm)
    assert record.scheme == algorithm
    key = record.to_sslib_key()
    assert key.keyid == record.key_id
    payload = b'{"_type":"timestamp","version":1}'
    signature = store.signer_for(record.key_id).sign(payload)
    assert signature.keyid == record.key_id
    key.verify_signature(signature, payload)


def test_private_key_is_not_stored_in_clear(store: SqlKeyStore, database_url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    signer = store.signer_for(record.key_id)
    assert isinstance(signer, CryptoSigner)
    pem = signer.private_bytes
    raw = signer._private_key.private_bytes(  # the 32 raw ed25519 private bytes
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem_body = b"".join(pem.splitlines()[1:-1]).decode()
    (row,) = key_rows(database_url)
    dump = " ".join(str(v) for v in row)
    assert "PRIVATE KEY" not in dump
    assert pem_body not in dump
    assert raw.hex() not in dump
    assert raw.hex().upper() not in dump
    assert str(raw) not in dump


def test_wrong_passphrase_names_the_key_and_changes_nothing(store: SqlKeyStore, database_url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    before = key_rows(database_url)
    wrong = open_store(database_url, passphrase="not the passphrase")
    try:
        with pytest.raises(KeyUnwrapError) as caught:
            wrong.signer_for(record.key_id)
    finally:
        wrong.close()
    message = str(caught.value)
    assert record.key_id in message
    assert PASSPHRASE not in message and "not the passphrase" not in message
    assert key_rows(database_url) == before
    store.signer_for(record.key_id).sign(b"still usable")


def test_key_wrapped_under_an_unconfigured_alias_is_refused(store: SqlKeyStore, database_url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    other = open_store(database_url, alias="rotated")
    try:
        with pytest.raises(KeyUnwrapError, match=f"{record.key_id}.*'default'"):
            other.signer_for(record.key_id)
    finally:
        other.close()


def test_tampered_ciphertext_is_refused(store: SqlKeyStore, database_url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    ((wrapped,),) = raw_query(database_url, "SELECT wrapped_private FROM signer_keys WHERE key_id = ?", (record.key_id,))
    header, enc_key, iv, ciphertext, tag = wrapped.split(".")
    flipped = ("B" if ciphertext[5] != "B" else "C").join((ciphertext[:5], ciphertext[6:]))
    raw_query(
        database_url,
        "UPDATE signer_keys SET wrapped_private = ? WHERE key_id = ?",
        (".".join((header, enc_key, iv, flipped, tag)), record.key_id),
    )
    with pytest.raises(KeyUnwrapError, match=f"{record.key_id}.*altered"):
        store.signer_for(record.key_id)


def test_wrapped_key_moved_to_another_row_is_refused(store: SqlKeyStore, database_url: str) -> None:
    victim = store.create_key(COLLECTION, "timestamp")
    attacker = store.create_key("attacker/collection", "timestamp")
    raw_query(
        database_url,
        "UPDATE signer_keys SET wrapped_private = (SELECT wrapped_private FROM signer_keys WHERE key_id = ?),"
        " kdf_salt = (SELECT kdf_salt FROM signer_keys WHERE key_id = ?) WHERE key_id = ?",
        (attacker.key_id, attacker.key_id, victim.key_id),
    )
    with pytest.raises(KeyUnwrapError, match=victim.key_id):
        store.signer_for(victim.key_id)


@pytest.mark.parametrize(
    "collection, role, algorithm",
    [
        ("", "timestamp", "ed25519"),
        ("../etc", "timestamp", "ed25519"),
        (COLLECTION, "root", "ed25519"),
        (COLLECTION, "targets", "ed25519"),
        (COLLECTION, "timestamp", "dsa-sha1"),
    ],
)
def test_invalid_create_is_refused_and_stores_nothing(
    store: SqlKeyStore, database_url: str, collection: str, role: str, algorithm: str
) -> None:
    with pytest.raises(InvalidRequestError):
        store.create_key(collection, role, algorithm)
    assert key_rows(database_url) == []


def test_unknown_key(store: SqlKeyStore) -> None:
    assert store.get_key("0" * 64) is None
    assert store.delete_key("0" * 64) is False
    with pytest.raises(KeyNotFoundError):
        store.signer_for("0" * 64)


def test_claim_version_refuses_rollback_across_store_instances(store: SqlKeyStore, database_url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    store.claim_version(record.key_id, 3)
    store.claim_version(record.key_id, 3)
    replica = open_store(database_url)
    try:
        with pytest.raises(RollbackRefusedError, match=f"{record.key_id}.*version 3.*lower version 2"):
            replica.claim_version(record.key_id, 2)
        replica.claim_version(record.key_id, 4)
    finally:
        replica.close()
    with pytest.raises(RollbackRefusedError):
        store.claim_version(record.key_id, 3)
    with pytest.raises(KeyNotFoundError):
        store.claim_version("0" * 64, 1)

"""What only `SqlKeyStore` does, over SQLite and a real PostgreSQL: keys wrapped under passphrases, clear
errors for wrong passphrases and altered rows, and `rewrap` to a new passphrase under live traffic.
(The shared `KeyStore` contract is in test_keystore_contract.py.)"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwe
from securesystemslib.signer import CryptoSigner

from tufnotary.signer import keywrap
from tufnotary.signer.errors import ConfigError, KeyUnwrapError
from tufnotary.signer.sql_keystore import SqlKeyStore

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




def rotation_store(url: str, default: str = "old") -> SqlKeyStore:
    """A replica configured with both passphrases, as during a passphrase rotation."""
    store = SqlKeyStore(url, {"old": PASSPHRASE, "new": "second passphrase"}, default)
    store.migrate()
    return store


def aliases(url: str) -> dict[str, str]:
    return dict(raw_query(url, "SELECT key_id, passphrase_alias FROM signer_keys"))


def test_rewrap_moves_every_key_to_the_new_passphrase(database_url: str) -> None:
    old_only = open_store(database_url, alias="old")
    keys = [old_only.create_key(f"team/c{i}", role).key_id for i in range(3) for role in ("timestamp", "snapshot")]
    retired = old_only.create_key("team/retired", "timestamp").key_id
    old_only.retire_key(retired)
    old_only.close()
    store = rotation_store(database_url, default="new")
    try:
        assert store.rewrap("new") == len(keys)
        assert {k: a for k, a in aliases(database_url).items() if k != retired} == {k: "new" for k in keys}
        assert store.rewrap("new") == 0  # nothing left to move
    finally:
        store.close()
    new_only = open_store(database_url, passphrase="second passphrase", alias="new")
    try:
        for key_id in keys:
            new_only.signer_for(key_id).sign(b"opens under the new passphrase only")
    finally:
        new_only.close()
    stale = open_store(database_url, alias="old")
    try:
        with pytest.raises(KeyUnwrapError, match="'new'"):
            stale.signer_for(keys[0])
    finally:
        stale.close()


def test_rewrap_with_an_unopenable_key_changes_nothing(database_url: str) -> None:
    store = rotation_store(database_url)
    try:
        good = store.create_key("team/good", "timestamp").key_id
        bad = store.create_key("team/bad", "timestamp").key_id
        raw_query(database_url, "UPDATE signer_keys SET kdf_salt = ? WHERE key_id = ?", ("00" * 16, bad))
        before = key_rows(database_url)
        with pytest.raises(KeyUnwrapError, match=bad):
            store.rewrap("new")
        assert key_rows(database_url) == before
        assert aliases(database_url)[good] == "old"
        with pytest.raises(ConfigError, match="no passphrase is configured for the alias 'other'"):
            store.rewrap("other")
    finally:
        store.close()


def test_rewrap_under_live_traffic(database_url: str) -> None:
    """Replicas keep signing, and creating keys, while another process-like replica rewraps."""
    setup = rotation_store(database_url)
    keys = [setup.create_key(f"team/c{i}", "timestamp").key_id for i in range(4)]
    setup.close()
    stop = threading.Event()
    errors: list[BaseException] = []
    signed = [0]

    def traffic() -> None:
        replica = rotation_store(database_url, default="new")
        version = 0
        try:
            while not stop.is_set():
                version += 1
                for key_id in keys:
                    replica.signer_for(key_id).sign(b"payload")
                    replica.record_signature(key_id, version, "cd" * 32, "CN=server")
                    signed[0] += 1
                replica.create_key(f"team/new{version}", "timestamp")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            replica.close()

    thread = threading.Thread(target=traffic)
    thread.start()
    rewrapper = rotation_store(database_url, default="new")
    try:
        while signed[0] < len(keys):
            threading.Event().wait(0.01)
        assert rewrapper.rewrap("new") >= len(keys)
        done_at = signed[0]
        while signed[0] < done_at + 2 * len(keys) and thread.is_alive():
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(30)
        rewrapper.close()
    assert errors == []
    assert set(aliases(database_url).values()) == {"new"}
    new_only = open_store(database_url, passphrase="second passphrase", alias="new")
    try:
        for key_id in keys:
            new_only.signer_for(key_id).sign(b"still signs")
    finally:
        new_only.close()


# -- one scrypt derivation per (alias, salt) and process; one content key per wrapped key -----------------------


def _count_derivations(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    salts: list[bytes] = []
    real = keywrap.derive_kek

    def counting(passphrase: str, salt: bytes) -> bytes:
        salts.append(salt)
        return real(passphrase, salt)

    monkeypatch.setattr(keywrap, "derive_kek", counting)
    return salts


def test_creating_keys_derives_one_kek_and_wraps_each_key_on_its_own(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    derived = _count_derivations(monkeypatch)
    store = open_store(database_url)
    try:
        keys = [store.create_key(f"team/c{i}", "timestamp").key_id for i in range(5)]
    finally:
        store.close()
    assert len(derived) == 1
    rows = raw_query(database_url, "SELECT wrapped_private, kdf_salt FROM signer_keys")
    assert {salt for _, salt in rows} == {derived[0].hex()}
    headers = [jwe.get_unverified_header(wrapped) for wrapped, _ in rows]
    assert {(h["alg"], h["enc"]) for h in headers} == {("A256KW", "A256GCM")}
    encrypted_keys = {wrapped.split(".")[1] for wrapped, _ in rows}
    ivs = {wrapped.split(".")[2] for wrapped, _ in rows}
    assert len(encrypted_keys) == len(ivs) == 5  # a fresh content key and IV per key
    replica = open_store(database_url)
    try:
        for key_id in keys:
            replica.signer_for(key_id).sign(b"opens")
    finally:
        replica.close()
    assert len(derived) == 2  # the replica derived the shared KEK once for all five keys


def test_a_key_wrapped_the_earlier_way_still_unwraps_and_rewraps(database_url: str) -> None:
    """Keys stored before: JWE `dir` (the KEK as content key) under a salt of their own."""
    store = rotation_store(database_url)
    record = store.create_key(COLLECTION, "timestamp")
    private_pem = store.signer_for(record.key_id).private_bytes  # type: ignore[attr-defined]
    store.close()
    salt = keywrap.new_salt()
    legacy = jwe.encrypt(private_pem, keywrap.derive_kek(PASSPHRASE, salt), algorithm="dir",
                         encryption="A256GCM", kid=record.key_id).decode()
    raw_query(database_url, "UPDATE signer_keys SET wrapped_private = ?, kdf_salt = ? WHERE key_id = ?",
              (legacy, salt.hex(), record.key_id))
    store = rotation_store(database_url, default="new")
    try:
        signature = store.signer_for(record.key_id).sign(b"legacy")
        assert store.rewrap("new") == 1
    finally:
        store.close()
    assert record.to_sslib_key().verify_signature(signature, b"legacy") is None
    ((wrapped,),) = raw_query(database_url, "SELECT wrapped_private FROM signer_keys")
    assert jwe.get_unverified_header(wrapped)["alg"] == "A256KW"
    new_only = open_store(database_url, passphrase="second passphrase", alias="new")
    try:
        new_only.signer_for(record.key_id).sign(b"rewrapped")
    finally:
        new_only.close()


def test_a_wrapped_key_under_another_jwe_algorithm_is_refused(store: SqlKeyStore, database_url: str) -> None:
    record = store.create_key(COLLECTION, "timestamp")
    ((salt,),) = raw_query(database_url, "SELECT kdf_salt FROM signer_keys")
    kek = keywrap.derive_kek(PASSPHRASE, bytes.fromhex(salt))
    other = jwe.encrypt(b"a payload wrapped under another algorithm", kek[:16], algorithm="A128KW", encryption="A128GCM",
                        kid=record.key_id).decode()
    raw_query(database_url, "UPDATE signer_keys SET wrapped_private = ?", (other,))
    with pytest.raises(KeyUnwrapError, match=f"{record.key_id}.*altered"):
        store.signer_for(record.key_id)


def test_the_signer_handed_out_signs_exactly_as_cryptosigner(store: SqlKeyStore) -> None:
    record = store.create_key(COLLECTION, "timestamp", "ed25519")  # deterministic signatures: comparable
    signer = store.signer_for(record.key_id)
    plain = CryptoSigner(signer._private_key, record.to_sslib_key())  # type: ignore[attr-defined]
    for payload in (b"", b"{}", b"payload " * 100):
        assert signer.sign(payload) == plain.sign(payload)


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-sha2-nistp256", "rsassa-pss-sha256"])
def test_prepared_signer_signs_as_crypto_signer_does(algorithm: str) -> None:
    """`PreparedCryptoSigner` (prepared arguments, key id kept) makes signatures that verify under the key, with
    the key's id; ed25519 signatures are deterministic: byte for byte `CryptoSigner`'s."""
    from tufnotary.signer.sql_keystore import PreparedCryptoSigner, _generate

    plain = _generate(algorithm)
    prepared = PreparedCryptoSigner(plain._private_key, plain.public_key)
    payload = b'{"_type":"timestamp"}'
    signature = prepared.sign(payload)
    assert signature.keyid == plain.public_key.keyid
    plain.public_key.verify_signature(signature, payload)
    if algorithm == "ed25519":
        assert signature == plain.sign(payload)

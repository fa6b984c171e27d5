"""`SqlKeyStore`: the signer's keys in SQLite (`sqlite:///path`) or PostgreSQL (`postgresql://...`).

Private keys are wrapped (see `keywrap`) before they are written; a partial unique index allows one
active key per (collection, role), which is what makes concurrent `create_key` calls agree.
"""

from __future__ import annotations

import datetime
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.pool
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signer

from tufnotary.signer import keywrap
from tufnotary.signer.errors import (
    ConfigError,
    KeyNotFoundError,
    KeyStoreUnavailableError,
    KeyUnwrapError,
    RollbackRefusedError,
)
from tufnotary.signer.keystore import (
    DEFAULT_ALGORITHM,
    KeyRecord,
    KeyStore,
    check_algorithm,
    check_collection,
    check_role,
)

# Applied in order, each at most once, recorded in schema_migrations. Never edit a shipped entry.
MIGRATIONS: Sequence[tuple[int, Sequence[str]]] = (
    (
        1,
        (
            """CREATE TABLE signer_keys (
                key_id TEXT PRIMARY KEY,
                collection TEXT NOT NULL,
                role TEXT NOT NULL,
                keytype TEXT NOT NULL,
                scheme TEXT NOT NULL,
                public_value TEXT NOT NULL,
                wrapped_private TEXT NOT NULL,
                kdf_salt TEXT NOT NULL,
                passphrase_alias TEXT NOT NULL,
                active INTEGER NOT NULL DEFAULT 1,
                created_at TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX signer_keys_one_active ON signer_keys (collection, role) WHERE active = 1",
            "CREATE INDEX signer_keys_collection ON signer_keys (collection, created_at)",
        ),
    ),
    (2, ("ALTER TABLE signer_keys ADD COLUMN max_signed_version INTEGER NOT NULL DEFAULT 0",)),
)

_PUBLIC_COLUMNS = "key_id, collection, role, keytype, scheme, public_value"
_MIGRATION_LOCK_ID = 0x7475666E  # pg_advisory_xact_lock key, any constant shared by all replicas


class _Sqlite:
    def __init__(self, path: str) -> None:
        if not path or path == ":memory:":
            raise ConfigError("the signer database needs a file path: sqlite:///relative.db or sqlite:////abs.db")
        self.path = path
        self.integrity_error: type[Exception] = sqlite3.IntegrityError
        self.error: type[Exception] = sqlite3.Error

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            # Writers take the lock up front so that read-then-write transactions cannot deadlock.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn.cursor()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def sql(self, statement: str) -> str:
        return statement

    def lock_for_migration(self, cur: Any) -> None:
        pass  # BEGIN IMMEDIATE already holds the write lock

    def close(self) -> None:
        pass


class _Postgres:
    def __init__(self, url: str, max_connections: int) -> None:
        self.url = url
        self.max_connections = max_connections
        self.integrity_error = psycopg2.IntegrityError
        self.error = psycopg2.Error
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(0, self.max_connections, self.url)
            return self._pool

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        pool = self._get_pool()
        conn = pool.getconn()
        broken = False
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            broken = True
            raise
        finally:
            pool.putconn(conn, close=broken or bool(conn.closed))

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def lock_for_migration(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


class SqlKeyStore(KeyStore):
    """Keys in a SQL database, wrapped under the passphrase of `default_alias` (see `KeyStore`)."""

    def __init__(
        self,
        database_url: str,
        passphrases: Mapping[str, str],
        default_alias: str,
        *,
        max_connections: int = 16,
    ) -> None:
        if default_alias not in passphrases:
            raise ConfigError(f"no passphrase is configured for the default alias {default_alias!r}")
        if database_url.startswith("sqlite:///"):
            self._db: _Sqlite | _Postgres = _Sqlite(database_url.removeprefix("sqlite:///"))
        elif database_url.startswith(("postgresql://", "postgres://")):
            self._db = _Postgres(database_url, max_connections)
        else:
            raise ConfigError("unsupported signer database URL: use sqlite:///PATH or postgresql://...")
        self._passphrases = dict(passphrases)
        self._default_alias = default_alias
        self._keks: dict[tuple[str, str], bytes] = {}
        self._keks_lock = threading.Lock()

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Any]:
        try:
            with self._db.transaction(write) as cur:
                yield cur
        except self._db.integrity_error:
            raise
        except self._db.error as e:
            raise KeyStoreUnavailableError(f"the signer key database failed: {type(e).__name__}") from e

    def _execute(self, cur: Any, statement: str, params: Sequence[Any] = ()) -> None:
        cur.execute(self._db.sql(statement), tuple(params))

    def migrate(self) -> None:
        with self._transaction() as cur:
            self._db.lock_for_migration(cur)
            self._execute(
                cur,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            self._execute(cur, "SELECT version FROM schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    self._execute(cur, statement)
                self._execute(cur, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, _now()))

    def create_key(self, collection: str, role: str, algorithm: str = DEFAULT_ALGORITHM) -> KeyRecord:
        check_collection(collection)
        check_role(role)
        algorithm = check_algorithm(algorithm)
        existing = self.get_active(collection, role)
        if existing is not None:
            return existing
        signer = _generate(algorithm)
        key = signer.public_key
        salt = keywrap.new_salt()
        kek = self._kek(self._default_alias, salt)
        wrapped = keywrap.wrap(signer.private_bytes, kek, key.keyid)
        try:
            with self._transaction() as cur:
                self._execute(
                    cur,
                    "INSERT INTO signer_keys (key_id, collection, role, keytype, scheme, public_value,"
                    " wrapped_private, kdf_salt, passphrase_alias, active, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                    (key.keyid, collection, role, key.keytype, key.scheme, key.keyval["public"],
                     wrapped, salt.hex(), self._default_alias, _now()),
                )
        except self._db.integrity_error:
            pass  # another caller stored the pair's key first; theirs wins
        winner = self.get_active(collection, role)
        if winner is None:
            raise KeyStoreUnavailableError(
                f"the key for {collection} {role} was deleted while being created; retry"
            )
        return winner

    def get_active(self, collection: str, role: str) -> KeyRecord | None:
        check_collection(collection)
        check_role(role)
        rows = self._select(
            f"SELECT {_PUBLIC_COLUMNS} FROM signer_keys WHERE collection = ? AND role = ? AND active = 1",
            (collection, role),
        )
        return KeyRecord(*rows[0]) if rows else None

    def get_key(self, key_id: str) -> KeyRecord | None:
        rows = self._select(f"SELECT {_PUBLIC_COLUMNS} FROM signer_keys WHERE key_id = ?", (key_id,))
        return KeyRecord(*rows[0]) if rows else None

    def list_keys(self, collection: str) -> list[KeyRecord]:
        check_collection(collection)
        rows = self._select(
            f"SELECT {_PUBLIC_COLUMNS} FROM signer_keys WHERE collection = ? ORDER BY created_at, key_id",
            (collection,),
        )
        return [KeyRecord(*row) for row in rows]

    def signer_for(self, key_id: str) -> Signer:
        rows = self._select(
            f"SELECT {_PUBLIC_COLUMNS}, wrapped_private, kdf_salt, passphrase_alias FROM signer_keys WHERE key_id = ?",
            (key_id,),
        )
        if not rows:
            raise KeyNotFoundError(f"the signer holds no key {key_id}")
        *public, wrapped, salt_hex, alias = rows[0]
        record = KeyRecord(*public)
        if alias not in self._passphrases:
            raise KeyUnwrapError(
                f"key {key_id} is wrapped under passphrase alias {alias!r}, which this signer has no passphrase for"
            )
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            raise KeyUnwrapError(f"cannot unwrap the private key of {key_id}: its stored salt was altered") from None
        pem = keywrap.unwrap(wrapped, self._kek(alias, salt), key_id)
        try:
            private_key = load_pem_private_key(pem, None)
            return CryptoSigner(private_key, record.to_sslib_key())  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise KeyUnwrapError(
                f"the private key of {key_id} does not match its stored public key: the row was altered"
            ) from None

    def claim_version(self, key_id: str, version: int) -> None:
        with self._transaction() as cur:
            self._execute(
                cur,
                "UPDATE signer_keys SET max_signed_version = ? WHERE key_id = ? AND max_signed_version <= ?",
                (version, key_id, version),
            )
            if cur.rowcount:
                return
            self._execute(cur, "SELECT max_signed_version FROM signer_keys WHERE key_id = ?", (key_id,))
            row = cur.fetchone()
        if row is None:
            raise KeyNotFoundError(f"the signer holds no key {key_id}")
        raise RollbackRefusedError(
            f"key {key_id} already signed version {row[0]}; it will not sign the lower version {version}"
        )

    def delete_key(self, key_id: str) -> bool:
        with self._transaction() as cur:
            self._execute(cur, "DELETE FROM signer_keys WHERE key_id = ?", (key_id,))
            return bool(cur.rowcount)

    def close(self) -> None:
        self._db.close()

    def _select(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._transaction(write=False) as cur:
            self._execute(cur, statement, params)
            return [tuple(row) for row in cur.fetchall()]

    def _kek(self, alias: str, salt: bytes) -> bytes:
        cache_key = (alias, salt.hex())
        with self._keks_lock:
            kek = self._keks.get(cache_key)
        if kek is None:
            kek = keywrap.derive_kek(self._passphrases[alias], salt)
            with self._keks_lock:
                self._keks[cache_key] = kek
        return kek


def _generate(algorithm: str) -> CryptoSigner:
    if algorithm == "ed25519":
        return CryptoSigner.generate_ed25519()
    if algorithm.startswith("ecdsa-"):
        return CryptoSigner.generate_ecdsa(scheme=algorithm)
    return CryptoSigner.generate_rsa(scheme=algorithm)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()

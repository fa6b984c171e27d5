"""The signer's SQL connection layer: SQLite (`sqlite:///path`) or PostgreSQL (`postgresql://...`), one
transaction helper for both, and versioned migrations applied once under a lock."""

from __future__ import annotations

import datetime
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Union

import psycopg2
import psycopg2.pool

from tufnotary.signer.errors import ConfigError, KeyStoreUnavailableError

# A migration statement is plain SQL for both dialects, or {"sqlite": ..., "postgres": ...}.
Statement = Union[str, Mapping[str, str]]
Migration = tuple[int, Sequence[Statement]]

_MIGRATION_LOCK_ID = 0x7475666E  # pg_advisory_xact_lock key, any constant shared by all replicas


class _Sqlite:
    dialect = "sqlite"
    for_update = ""  # BEGIN IMMEDIATE already serialises writers

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
        pass

    def close(self) -> None:
        pass


class _Postgres:
    dialect = "postgres"
    for_update = " FOR UPDATE"

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
                self._pool = psycopg2.pool.ThreadedConnectionPool(0, self.max_connections, self.url, connect_timeout=5)
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


class Database:
    """One SQL database; every failure to reach it becomes `KeyStoreUnavailableError`."""

    def __init__(self, url: str, *, max_connections: int = 16) -> None:
        if url.startswith("sqlite:///"):
            self._db: _Sqlite | _Postgres = _Sqlite(url.removeprefix("sqlite:///"))
        elif url.startswith(("postgresql://", "postgres://")):
            self._db = _Postgres(url, max_connections)
        else:
            raise ConfigError("unsupported signer database URL: use sqlite:///PATH or postgresql://...")
        self.integrity_error = self._db.integrity_error
        self.dialect = self._db.dialect
        self.for_update = self._db.for_update

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        try:
            with self._db.transaction(write) as cur:
                yield cur
        except self._db.integrity_error:
            raise
        except self._db.error as e:
            raise KeyStoreUnavailableError(f"the signer key database failed: {type(e).__name__}") from e

    def execute(self, cur: Any, statement: str, params: Sequence[Any] = ()) -> None:
        cur.execute(self._db.sql(statement), tuple(params))

    def select(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction(write=False) as cur:
            self.execute(cur, statement, params)
            return [tuple(row) for row in cur.fetchall()]

    def migrate(self, migrations: Sequence[Migration]) -> None:
        """Apply the migrations not yet recorded in schema_migrations, in one transaction."""
        with self.transaction() as cur:
            self._db.lock_for_migration(cur)
            self.execute(
                cur,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            self.execute(cur, "SELECT version FROM schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            for version, statements in migrations:
                if version in applied:
                    continue
                for statement in statements:
                    text = statement if isinstance(statement, str) else statement[self.dialect]
                    cur.execute(text)  # DDL carries no parameters; no placeholder translation
                self.execute(cur, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, now_iso()))

    def close(self) -> None:
        self._db.close()


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()

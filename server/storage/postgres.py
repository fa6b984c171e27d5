"""`PostgresMetaStore`: the production backend, shared by every server process and host.

Connections come from a small per-process pool created on first use (gunicorn forks workers
after the app factory runs). Commits serialise per collection by locking the collection's
row; the (collection, role, version) primary key is the final guard.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from tufnotary.server.changes import CHANNEL
from tufnotary.server.errors import StorageError
from tufnotary.server.storage.sql import Cursor, SqlMetaStore

T = TypeVar("T")

# Key of the transaction-scoped advisory lock that serialises migrate() across processes.
_MIGRATION_LOCK_KEY = 0x7475666E6F746172  # "tufnotar"


class PostgresMetaStore(SqlMetaStore):
    """`MetaStore` in a PostgreSQL database named by a postgresql:// URL."""

    dialect = "postgres"
    placeholder = "%s"
    lock_clause = " FOR UPDATE"
    integrity_errors = (psycopg2.errors.UniqueViolation,)
    migrations_table_ddl = ("CREATE TABLE IF NOT EXISTS schema_migrations"
                            " (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 4,
                 acquire_timeout: float = 30.0) -> None:
        """No connection is opened here; the pool starts on first use in each process.

        The pool keeps up to `min_connections` idle connections (psycopg2 closes the others
        when they are returned) and opens at most `max_connections`; callers beyond that wait
        up to `acquire_timeout` seconds.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        if not 1 <= min_connections <= max_connections:
            raise ValueError("need 1 <= min_connections <= max_connections")
        self._url = url
        self._password = unquote(parts.password) if parts.password else None
        host = parts.hostname or "localhost"
        self.where = f"{host}:{parts.port or 5432}{parts.path or '/'}"
        """Where the database is, without credentials: safe for messages and logs."""
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self._lock = threading.Lock()
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pid = os.getpid()
        # Pools inherited through fork: kept referenced so that garbage collection in the child
        # never closes (and so terminates) the sessions the parent still uses.
        self._inherited: list[psycopg2.pool.ThreadedConnectionPool] = []
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and os.getpid() == self._pid:
            pool.closeall()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._closed:
                raise RuntimeError("this store is closed")
            if os.getpid() != self._pid:
                if self._pool is not None:
                    self._inherited.append(self._pool)
                self._pid, self._pool = os.getpid(), None
                self._slots = threading.BoundedSemaphore(self.max_connections)
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self.min_connections, self.max_connections, self._url)
                except psycopg2.Error as exc:
                    raise self._error(exc) from exc
            return self._pool

    def _run(self, work: Callable[[Cursor], T], write: bool) -> T:
        pool = self._get_pool()
        slots = self._slots
        if not slots.acquire(timeout=self.acquire_timeout):
            raise StorageError(f"PostgreSQL {self.where}: all {self.max_connections} connections"
                               f" stayed busy for {self.acquire_timeout:g}s")
        try:
            # A connection found broken before COMMIT was sent means the server rolled the
            # transaction back, so running the work once more on a fresh connection is safe.
            for attempt in (1, 2):
                try:
                    conn = pool.getconn()
                except psycopg2.Error as exc:
                    raise self._error(exc) from exc
                committing = False
                try:
                    if conn.isolation_level != psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED:
                        # Lock-then-read in commit() relies on each statement seeing the
                        # latest committed rows.
                        conn.set_session(isolation_level="READ COMMITTED")
                    # A read is one SELECT: autocommit spares the BEGIN and COMMIT round trips.
                    conn.autocommit = not write
                    with conn.cursor() as cur:
                        result = work(cur)
                    committing = True
                    conn.commit()
                except psycopg2.Error as exc:
                    broken = self._put_back(pool, conn)
                    if broken and not committing and attempt == 1:
                        continue
                    raise self._error(exc) from exc
                except BaseException:
                    self._put_back(pool, conn)
                    raise
                pool.putconn(conn)
                return result
            raise AssertionError("unreachable")
        finally:
            slots.release()

    @staticmethod
    def _put_back(pool: psycopg2.pool.ThreadedConnectionPool, conn: Any) -> bool:
        """Roll back and return `conn` to the pool, or discard it if broken; True if broken."""
        broken = conn.closed != 0
        if not broken:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
        pool.putconn(conn, close=broken)
        return broken

    def _error(self, exc: psycopg2.Error) -> StorageError:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if self._password:
            detail = detail.replace(self._password, "***")
        return StorageError(f"PostgreSQL {self.where}: {detail}")

    def _announce(self, cur: Cursor, collection: str) -> None:
        # Delivered to every listener when (and only if) the transaction commits.
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, collection))

    def listen_url(self) -> str | None:
        return self._url

    def _lock_for_migrations(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))

    def _encode_time(self, moment: datetime) -> Any:
        return moment

    def _decode_time(self, value: Any) -> datetime:
        return value.astimezone(timezone.utc)

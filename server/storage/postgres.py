"""`PostgresMetaStore`: the production backend, shared by every server process and host.

Each process keeps its own connections open between units of work, opened on first use
(gunicorn forks workers after the app factory runs). Commits serialise per collection by
locking the collection's row; the (collection, role, version) primary key is the final guard.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.errors

from tufnotary.server.changes import CHANNEL
from tufnotary.server.errors import CommitInDoubtError, StorageError
from tufnotary.server.storage.base import DEFAULT_POOL_SIZE
from tufnotary.server.storage.sql import Cursor, SqlMetaStore

T = TypeVar("T")

# Key of the transaction-scoped advisory lock that serialises migrate() across processes.
_MIGRATION_LOCK_KEY = 0x7475666E6F746172  # "tufnotar"


class PostgresMetaStore(SqlMetaStore):
    """`MetaStore` in a PostgreSQL database named by a postgresql:// URL."""

    dialect = "postgres"
    placeholder = "%s"
    lock_clause = " FOR UPDATE"
    skip_locked_clause = " FOR UPDATE SKIP LOCKED"
    time_param = "CAST(? AS TIMESTAMPTZ)"
    integrity_errors = (psycopg2.errors.UniqueViolation,)
    migrations_table_ddl = ("CREATE TABLE IF NOT EXISTS schema_migrations"
                            " (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")

    def __init__(self, url: str, *, max_connections: int = DEFAULT_POOL_SIZE,
                 acquire_timeout: float = 30.0) -> None:
        """No connection is opened here; each process opens its own on first use.

        Up to `max_connections` connections per process are opened as needed and kept open
        between units of work (opening one costs more than most queries); callers beyond
        that wait up to `acquire_timeout` seconds.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be an integer >= 1, not {max_connections!r}")
        self._url = url
        self._password = unquote(parts.password) if parts.password else None
        host = parts.hostname or "localhost"
        self.where = f"{host}:{parts.port or 5432}{parts.path or '/'}"
        """Where the database is, without credentials: safe for messages and logs."""
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # open connections not in use, most recently used last
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pid = os.getpid()
        # Connections inherited through fork: kept referenced so that garbage collection in the
        # child never closes (and so terminates) the sessions the parent still uses.
        self._inherited: list[Any] = []
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if os.getpid() == self._pid:
            for conn in idle:
                conn.close()

    def _checkout(self, fresh: bool) -> tuple[Any, threading.BoundedSemaphore]:
        """A connection for one unit of work (an idle one unless `fresh`), and the slot it holds."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this store is closed")
            if os.getpid() != self._pid:
                self._inherited.extend(self._idle)
                self._pid, self._idle = os.getpid(), []
                self._slots = threading.BoundedSemaphore(self.max_connections)
            slots = self._slots
        if not slots.acquire(timeout=self.acquire_timeout):
            raise StorageError(f"PostgreSQL {self.where}: all {self.max_connections} connections"
                               f" stayed busy for {self.acquire_timeout:g}s")
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle and not fresh else None
            if conn is None:
                try:
                    conn = psycopg2.connect(self._url)
                    # Lock-then-read in commit() relies on each statement seeing the latest
                    # committed rows.
                    conn.set_session(isolation_level="READ COMMITTED")
                except psycopg2.Error as exc:
                    raise self._error(exc) from exc
        except BaseException:
            slots.release()
            raise
        return conn, slots

    def _checkin(self, conn: Any, slots: threading.BoundedSemaphore, broken: bool) -> None:
        stale: list[Any] = []
        with self._lock:
            keep = not broken and not self._closed and slots is self._slots
            if keep:
                self._idle.append(conn)
            elif broken:
                # The server restarted or killed sessions: the other idle ones are likely dead too.
                stale, self._idle = self._idle, []
        slots.release()
        if not keep and os.getpid() == self._pid:
            for dead in [conn, *stale]:
                try:
                    dead.close()
                except psycopg2.Error:
                    pass

    def _run(self, work: Callable[[Cursor], T], write: bool) -> T:
        # A connection found broken before COMMIT was sent means the server rolled the
        # transaction back, so running the work once more on a fresh connection is safe.
        for attempt in (1, 2):
            conn, slots = self._checkout(fresh=attempt == 2)
            committing = False
            try:
                # A read is one SELECT: autocommit spares the BEGIN and COMMIT round trips.
                conn.autocommit = not write
                with conn.cursor() as cur:
                    result = work(cur)
                committing = True
                conn.commit()
            except psycopg2.Error as exc:
                broken = self._put_back(conn, slots)
                if broken and not committing and attempt == 1:
                    continue
                if broken and committing:
                    # The COMMIT may have been applied before the connection broke: say so.
                    raise CommitInDoubtError(
                        f"{self._error(exc)}; the connection broke while committing, so whether the change was "
                        "stored is unknown: read the collection before publishing again"
                    ) from exc
                raise self._error(exc) from exc
            except BaseException:
                self._put_back(conn, slots)
                raise
            self._checkin(conn, slots, broken=False)
            return result
        raise AssertionError("unreachable")

    def _put_back(self, conn: Any, slots: threading.BoundedSemaphore) -> bool:
        """Roll back and keep `conn`, or discard it if broken; True if broken."""
        broken = conn.closed != 0
        if not broken:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
        self._checkin(conn, slots, broken)
        return broken

    def _error(self, exc: psycopg2.Error) -> StorageError:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if self._password:
            detail = detail.replace(self._password, "***")
        return StorageError(f"PostgreSQL {self.where}: {detail}")

    def _announce(self, cur: Cursor, collections: Sequence[str]) -> None:
        # Delivered to every listener when (and only if) the transaction commits; one statement
        # for a renewal chunk of thousands.
        if collections:
            cur.execute("SELECT pg_notify(%s, name) FROM unnest(%s::text[]) AS name", (CHANNEL, list(collections)))

    def listen_url(self) -> str | None:
        return self._url

    def _lock_for_migrations(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))

    def _encode_time(self, moment: datetime) -> Any:
        return moment

    def _decode_time(self, value: Any) -> datetime:
        return value.astimezone(timezone.utc)

"""`SqliteMetaStore`: the embedded default backend, one SQLite file shared by worker processes.

Each thread gets its own connection (WAL mode, busy timeout); writes take the database lock
up front with BEGIN IMMEDIATE, which serialises commits across threads and processes.
An in-memory database has one connection shared by all threads under a lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from tufnotary.server.errors import StorageError
from tufnotary.server.storage.sql import Cursor, SqlMetaStore

T = TypeVar("T")

MEMORY = ":memory:"


class SqliteMetaStore(SqlMetaStore):
    """`MetaStore` in one SQLite file (or in memory when `path` is ":memory:")."""

    dialect = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)
    migrations_table_ddl = ("CREATE TABLE IF NOT EXISTS schema_migrations"
                            " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")

    def __init__(self, path: str, *, busy_timeout: float = 30.0) -> None:
        if path != MEMORY and not os.path.isabs(path):
            raise ValueError(f"SQLite database path must be absolute, not {path!r}")
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._pid = os.getpid()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteMetaStore:
        """"sqlite:///abs/path.db", "sqlite:////abs/path.db", "sqlite://" or "sqlite:///:memory:"."""
        if not url.startswith("sqlite://"):
            raise ValueError("an SQLite URL starts with sqlite://")
        rest = url[len("sqlite://"):]
        if rest in ("", "/", "/" + MEMORY):
            return cls(MEMORY)
        if not rest.startswith("/") or "?" in rest:
            raise ValueError("SQLite URL must name an absolute path: sqlite:///abs/path.db")
        return cls("/" + rest.lstrip("/"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        if os.getpid() == self._pid:
            for conn in connections:
                conn.close()

    def _open(self) -> sqlite3.Connection:
        # check_same_thread=False only so close() may close every thread's connection;
        # a file connection is otherwise used by the thread that opened it alone.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            if self.path != MEMORY:
                self._use_wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the database to WAL (it stays so). Connections opening a new database at once race
        for the switch, and SQLite answers the losers "database is locked" at once, without waiting
        the busy timeout: they retry, within that timeout."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("this store is closed")
            if os.getpid() != self._pid:
                # A forked child must not touch the parent's connections: start afresh.
                self._pid, self._connections, self._local = os.getpid(), [], threading.local()
            if self.path == MEMORY:
                if not self._connections:
                    self._connections.append(self._open())
                # One in-memory database, so one connection: hold the lock while using it.
                yield self._connections[0]
                return
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._open()
                self._connections.append(conn)
        yield conn

    def _run(self, work: Callable[[Cursor], T], write: bool) -> T:
        try:
            with self._connection() as conn:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = work(conn.cursor())
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite database {self.path}: {exc}") from exc

    def _execute_script(self, cur: Cursor, script: str) -> None:
        # executescript() would commit the open transaction, so run statement by statement.
        statement = ""
        for line in script.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                cur.execute(statement)
                statement = ""
        if any(line.strip() and not line.strip().startswith("--") for line in statement.splitlines()):
            raise ValueError(f"incomplete SQL statement at the end of a migration: {statement!r}")

    def _encode_time(self, moment: datetime) -> Any:
        return moment.astimezone(timezone.utc).isoformat()

    def _decode_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).astimezone(timezone.utc)

"""The signer's SQL connection layer: SQLite (`sqlite:///path`) or PostgreSQL (`postgresql://...`), one
transaction helper for both over a pool of kept connections (`pool.ConnectionPool`), and versioned
migrations applied once under a lock."""

from __future__ import annotations

import datetime
import json
import select
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Union

import psycopg2
import psycopg2.extensions

from tufnotary.signer.errors import ConfigError, KeyStoreUnavailableError
from tufnotary.signer.pool import ConnectionPool

# A migration statement is plain SQL for both dialects, or {"sqlite": ..., "postgres": ...}.
Statement = Union[str, Mapping[str, str]]
Migration = tuple[int, Sequence[Statement]]

_MIGRATION_LOCK_ID = 0x7475666E  # pg_advisory_xact_lock key, any constant shared by all replicas
_PG_TYPES = {"text": "text", "integer": "bigint"}
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps builds one per call with options


class _Sqlite:
    dialect = "sqlite"
    for_update = ""  # BEGIN IMMEDIATE already serialises writers

    def __init__(self, path: str, max_connections: int) -> None:
        if not path or path == ":memory:":
            raise ConfigError("the signer database needs a file path: sqlite:///relative.db or sqlite:////abs.db")
        self.path = path
        self.integrity_error: type[Exception] = sqlite3.IntegrityError
        self.error: type[Exception] = sqlite3.Error
        self.pool = ConnectionPool(self._connect, max_connections)

    def _connect(self) -> sqlite3.Connection:
        # Pooled connections move between threads, one thread at a time (the pool hands each out once).
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            # WAL: readers never wait for the writer. synchronous stays FULL (the default): a claimed
            # high-water mark must survive a power loss, or a version could be signed twice.
            _switch_to_wal(conn, deadline=time.monotonic() + 30)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        conn = self.pool.acquire()
        try:
            # Writers take the lock up front so that read-then-write transactions cannot deadlock.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn.cursor()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            # Still in a transaction after a failed COMMIT or ROLLBACK: never hand this connection out again.
            self.pool.release(conn, broken=conn.in_transaction)

    def query(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        """One statement on its own: SQLite makes it a transaction by itself."""
        conn = self.pool.acquire()
        try:
            return conn.execute(statement, params).fetchall()
        finally:
            self.pool.release(conn, broken=conn.in_transaction)

    def execute_all(self, cur: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        for statement, params in statements:  # in-process: no round trips to save
            cur.execute(statement, tuple(params))

    def sql(self, statement: str) -> str:
        return statement

    def json_rows(self, columns: Sequence[tuple[str, str]]) -> str:
        fields = ", ".join(f"{_sqlite_json_field(i, kind)} AS {name}" for i, (name, kind) in enumerate(columns))
        return f"(SELECT {fields}, key AS ordinal FROM json_each(?))"

    def lock_for_migration(self, cur: Any) -> None:
        pass

    def close(self) -> None:
        self.pool.close()


def _switch_to_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """WAL mode is kept in the file, so this is a no-op read once any connection has switched it. Connections
    (threads or processes) switching a new file at once race, and SQLite answers the losers "database is
    locked" at once, without waiting the busy timeout: they try again until the deadline. (The server's SQLite
    store does the same; the signer imports nothing from the server.)"""
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _sqlite_json_field(index: int, kind: str) -> str:
    """Field `index` of a JSON row. An integer beyond 64 bits comes out of json_extract as a lossy REAL: it is
    NULL instead, which no NOT NULL column takes (as binding such an int fails), never a rounded version."""
    value = f"json_extract(value, '$[{index}]')"
    return f"CASE WHEN typeof({value}) = 'integer' THEN {value} END" if kind == "integer" else value


class _Postgres:
    dialect = "postgres"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, max_connections: int) -> None:
        self.url = url
        self.integrity_error = psycopg2.IntegrityError
        self.error = psycopg2.Error
        self.pool = ConnectionPool(self._connect, max_connections, is_stale=_pg_stale)

    def _connect(self) -> Any:
        conn = psycopg2.connect(self.url, connect_timeout=5, keepalives=1, keepalives_idle=30)
        # We send BEGIN and COMMIT ourselves, BEGIN in the same round trip as the first statement;
        # a lone read needs neither.
        conn.autocommit = True
        return conn

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self.pool.acquire()
        broken = False
        try:
            yield conn
        except psycopg2.InterfaceError:
            broken = True
            raise
        except psycopg2.OperationalError as e:
            # No SQLSTATE: the connection itself failed (server gone, network). A deadlock or a lock
            # timeout has one and leaves a usable connection.
            broken = e.pgcode is None
            raise
        finally:
            self.pool.release(conn, broken=broken or bool(conn.closed))

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        with self._connection() as conn, conn.cursor() as raw:
            cur = _PgTransaction(raw)
            try:
                yield cur
                cur.commit()
            except BaseException:
                if not conn.closed and conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                    raw.execute("ROLLBACK")  # a failure here marks the connection broken
                raise

    def query(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        """One read statement on its own (autocommit): one round trip. A kept connection the server
        dropped just before (a race the stale check cannot see) is replaced once: a read is safe to repeat."""
        try:
            return self._query_once(statement, params)
        except (psycopg2.InterfaceError, psycopg2.OperationalError) as e:
            if getattr(e, "pgcode", None) is not None:
                raise
            return self._query_once(statement, params)

    def _query_once(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()

    def execute_all(self, cur: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Several statements in one round trip (their results are not needed)."""
        cur.execute_all(statements)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def json_rows(self, columns: Sequence[tuple[str, str]]) -> str:
        fields = ", ".join(f"(e->>{i})::{_PG_TYPES[kind]} AS {name}" for i, (name, kind) in enumerate(columns))
        return f"(SELECT {fields}, o - 1 AS ordinal FROM json_array_elements(?::json) WITH ORDINALITY AS t(e, o))"

    def lock_for_migration(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))

    def close(self) -> None:
        self.pool.close()


class _PgTransaction:
    """A cursor that saves round trips: its first statement also opens the transaction ("BEGIN; ..."),
    and writes whose results are not needed (`execute_all`) wait to ride along with the next statement
    or with the COMMIT. Statements still run in the order they were given."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.begun = False
        self._pending: list[bytes] = []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._run(self.raw.mogrify(statement, tuple(params)) if params else statement.encode("utf-8"))

    def execute_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        self._pending.extend(self.raw.mogrify(s, tuple(p)) for s, p in statements)

    def commit(self) -> None:
        if self.begun or self._pending:
            self._run(b"COMMIT")

    def _run(self, statement: bytes) -> None:
        parts = ([] if self.begun else [b"BEGIN"]) + self._pending + [statement]
        self.begun, self._pending = True, []
        self.raw.execute(b"; ".join(parts))

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self.raw.rowcount)


def _pg_stale(conn: Any) -> bool:
    """An idle connection the server has spoken on (its termination notice on a restart or
    idle timeout) or that is no longer idle: a zero-timeout poll, no round trip."""
    if conn.closed or conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Database:
    """One SQL database; every failure to reach it becomes `KeyStoreUnavailableError`."""

    def __init__(self, url: str, *, max_connections: int = 16) -> None:
        if url.startswith("sqlite:///"):
            self._db: _Sqlite | _Postgres = _Sqlite(url.removeprefix("sqlite:///"), max_connections)
        elif url.startswith(("postgresql://", "postgres://")):
            self._db = _Postgres(url, max_connections)
        else:
            raise ConfigError("unsupported signer database URL: use sqlite:///PATH or postgresql://...")
        self.integrity_error = self._db.integrity_error
        self.dialect = self._db.dialect
        self.for_update = self._db.for_update

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        with self._translated():
            with self._db.transaction(write) as cur:
                yield cur

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._db.integrity_error:
            raise
        except self._db.error as e:
            raise KeyStoreUnavailableError(f"the signer key database failed: {type(e).__name__}") from e

    @property
    def connections_opened(self) -> int:
        """How many connections this process opened so far (they are kept and reused)."""
        return self._db.pool.connects

    def execute(self, cur: Any, statement: str, params: Sequence[Any] = ()) -> None:
        cur.execute(self._db.sql(statement), tuple(params))

    def execute_all(self, cur: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run the statements in order; for writes whose results (rows, counts) are not needed. On
        PostgreSQL they travel with the transaction's next statement or its COMMIT (no round trip of
        their own), so their errors surface there — at the latest when the transaction ends."""
        self._db.execute_all(cur, [(self._db.sql(s), p) for s, p in statements])

    def json_rows(self, columns: Sequence[tuple[str, str]]) -> str:
        """A subquery over the rows of one parameter, `json_param(rows)`: a table of these (name, type) columns,
        type "text" or "integer", in order, plus `ordinal` (each row's position, from 0). Any number of rows
        travel as one parameter: psycopg2 quotes each parameter in ~2 µs, which dominated a batch's claim."""
        return self._db.json_rows(columns)

    def select(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read statement, which sees one consistent state of the database by itself."""
        with self._translated():
            return [tuple(row) for row in self._db.query(self._db.sql(statement), tuple(params))]

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


def json_param(rows: Sequence[Sequence[Any]]) -> str:
    """The parameter of a `Database.json_rows` subquery: the rows as a JSON array of arrays (ASCII)."""
    return _COMPACT_JSON.encode(rows)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()

"""The signer's connection layer keeps its connections: over SQLite and a real PostgreSQL, transactions reuse
one connection, a connection the server dropped is replaced, and a forked child never touches its parent's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from tests.pgcluster import PgCluster
from tufnotary.signer.errors import KeyStoreUnavailableError
from tufnotary.signer.pool import ConnectionPool
from tufnotary.signer.sqldb import Database, json_param


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'signer.db'}"


def _backend_id(db: Database) -> object:
    """Which server session answered: the PostgreSQL backend pid (SQLite has none: the connection count shows reuse)."""
    if db.dialect == "postgres":
        return db.select("SELECT pg_backend_pid()")[0][0]
    return None


def _run_at_once(work: Callable[[], None], threads: int) -> None:
    """`work` in `threads` threads started together; returns when all have ended."""
    started = [threading.Thread(target=work) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()


def test_sequential_transactions_reuse_one_connection(database_url: str) -> None:
    db = Database(database_url)
    try:
        first = _backend_id(db)
        for _ in range(20):
            with db.transaction() as cur:
                db.execute(cur, "SELECT 1")
            assert _backend_id(db) == first
        assert db.connections_opened == 1
    finally:
        db.close()


def test_concurrent_transactions_open_at_most_the_pool_size(database_url: str) -> None:
    db = Database(database_url, max_connections=2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                db.select("SELECT 1")
        except BaseException as e:
            errors.append(e)

    try:
        _run_at_once(work, 6)
        assert errors == []
        assert 1 <= db.connections_opened <= 2
    finally:
        db.close()


def test_connections_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """The first connections to a new file race to switch it to WAL; SQLite answers the losers "database is
    locked" without waiting its busy timeout. Each of them must wait its turn, not fail (a CI run saw it)."""
    for attempt in range(200):
        errors, modes = _first_reads_at_once(f"sqlite:///{tmp_path / f'signer-{attempt}.db'}", 8)
        assert errors == []
        assert modes == ["wal"] * 8


def _first_reads_at_once(url: str, connections: int) -> tuple[list[BaseException], list[object]]:
    """Open `connections` databases on `url` and have each read its journal mode, all released together by a
    barrier: (the errors raised, the modes read)."""
    start = threading.Barrier(connections)
    errors: list[BaseException] = []
    modes: list[object] = []

    def open_and_read() -> None:
        db = Database(url)
        try:
            start.wait()
            modes.append(db.select("PRAGMA journal_mode")[0][0])
        except BaseException as e:
            errors.append(e)
        finally:
            db.close()

    _run_at_once(open_and_read, connections)
    return errors, modes


def test_sqlite_database_is_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'signer.db'}")
    try:
        assert db.select("PRAGMA journal_mode") == [("wal",)]
        assert db.select("PRAGMA synchronous") == [(2,)]  # FULL: a claimed version survives a power loss
    finally:
        db.close()


def _terminate(postgres_url: str, pid: int, wait: bool) -> None:
    """Have PostgreSQL end backend `pid`; with `wait`, until it has exited (terminate only signals it)."""
    conn = psycopg2.connect(postgres_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100 if wait else 0):
            with conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                if cur.fetchone()[0] == 0:
                    break
            time.sleep(0.05)
    finally:
        conn.close()


def test_a_connection_the_server_dropped_is_replaced(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        before = _backend_id(db)
        _terminate(postgres_url, before, wait=True)
        after = _backend_id(db)  # no error: the pool saw the idle connection was closed by the server
        assert after != before
        assert db.connections_opened == 2
    finally:
        db.close()


def test_a_read_on_a_connection_the_server_just_dropped_is_repeated_on_a_new_one(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        before = _backend_id(db)
        _terminate(postgres_url, before, wait=False)
        assert _backend_id(db) != before  # at once: whether or not the backend has exited yet
    finally:
        db.close()


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents(database_url: str) -> None:
    db = Database(database_url)
    try:
        parent_backend = _backend_id(db)
        db.select("SELECT 1")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its backend and how many connections it opened, then leave at once
            try:
                report = f"{_backend_id(db)} {db.connections_opened}".encode()
                os.write(write, report)
            finally:
                os._exit(0)
        os.close(write)
        report = os.read(read, 100).decode().split()
        os.close(read)
        os.waitpid(pid, 0)
        assert report[1] == "1"  # the child opened its own connection
        if db.dialect == "postgres":
            assert report[0] != str(parent_backend)
        assert _backend_id(db) == parent_backend  # the parent's session survived the child's exit
        assert db.connections_opened == 1
    finally:
        db.close()


def test_a_closed_database_refuses_work(database_url: str) -> None:
    db = Database(database_url)
    db.select("SELECT 1")
    db.close()
    with pytest.raises(KeyStoreUnavailableError):
        db.select("SELECT 1")


class _Conn:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_pool_reuses_the_last_returned_connection_first() -> None:
    pool = ConnectionPool(_Conn, 3)
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    assert pool.acquire() is b
    assert pool.acquire() is a
    assert pool.connects == 2


def test_pool_waits_for_a_connection_and_then_gives_up_clearly() -> None:
    pool = ConnectionPool(_Conn, 1, wait_timeout=0.05)
    held = pool.acquire()
    with pytest.raises(KeyStoreUnavailableError, match="stayed busy"):
        pool.acquire()
    pool.release(held)
    assert pool.acquire() is held


def test_a_broken_connection_closes_it_and_the_idle_ones() -> None:
    pool = ConnectionPool(_Conn, 3)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    pool.release(c, broken=True)
    assert a.closed and b.closed and c.closed
    fresh = pool.acquire()
    assert fresh not in (a, b, c)
    assert pool.connects == 4


def test_a_stale_idle_connection_is_closed_not_handed_out() -> None:
    pool = ConnectionPool(_Conn, 2, is_stale=lambda conn: getattr(conn, "stale", False))
    a = pool.acquire()
    pool.release(a)
    a.stale = True  # type: ignore[attr-defined]
    b = pool.acquire()
    assert b is not a and a.closed


def test_after_a_postgresql_restart_the_kept_connections_are_replaced_without_errors(tmp_path: Path) -> None:
    cluster = PgCluster.start()  # its own server: restarting the shared one would disturb other tests
    try:
        if not cluster.can_restart:
            pytest.skip("an external PostgreSQL (TUFNOTARY_TEST_DATABASE_URL) cannot be restarted by the test")
        db = Database(cluster.new_database(), max_connections=3)
        try:
            barrier = threading.Barrier(3)

            def hold_one() -> None:  # three connections at once: three kept idle afterwards
                with db.transaction() as cur:
                    barrier.wait()
                    db.execute(cur, "SELECT 1")

            threads = [threading.Thread(target=hold_one) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert db.connections_opened == 3
            cluster.restart()
            for _ in range(5):  # every kept connection died with the server; none is handed out
                assert db.select("SELECT 1") == [(1,)]
            assert db.connections_opened == 4
        finally:
            db.close()
    finally:
        cluster.stop()


def test_a_failed_transaction_changes_nothing_and_its_connection_is_reused(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.transaction() as cur:
            db.execute(cur, "CREATE TABLE t (v INTEGER NOT NULL)")
        backend = _backend_id(db)
        with pytest.raises(ValueError):
            with db.transaction() as cur:
                db.execute_all(cur, [("INSERT INTO t (v) VALUES (?)", (1,)), ("INSERT INTO t (v) VALUES (?)", (2,))])
                raise ValueError("the caller changed its mind")
        with pytest.raises(KeyStoreUnavailableError):
            with db.transaction() as cur:
                db.execute(cur, "INSERT INTO t (v) VALUES (?)", (3,))
                db.execute(cur, "SELECT * FROM no_such_table")
        assert db.select("SELECT v FROM t") == []
        with db.transaction() as cur:
            db.execute_all(cur, [("INSERT INTO t (v) VALUES (?)", (4,)), ("INSERT INTO t (v) VALUES (?)", (5,))])
        assert db.select("SELECT v FROM t ORDER BY v") == [(4,), (5,)]
        assert _backend_id(db) == backend and db.connections_opened == 1
    finally:
        db.close()


def test_json_rows_read_every_row_of_one_parameter_in_order_with_its_types(database_url: str) -> None:
    rows = [[f"key-{i}", i * 10**9, text] for i, text in enumerate(
        ["plain", "it's \"quoted\"", "back\\slash; DROP TABLE x; --", "é ☃ 🦀", "?%s%%", ""] * 40
    )]
    db = Database(database_url)
    try:
        table = db.json_rows([("name", "text"), ("number", "integer"), ("text", "text")])
        with db.transaction(write=False) as cur:
            db.execute(cur, f"SELECT t.name, t.number, t.text, t.ordinal FROM {table} AS t ORDER BY t.ordinal",
                       [json_param(rows)])
            read = [tuple(row) for row in cur.fetchall()]
    finally:
        db.close()
    assert read == [(name, number, text, i) for i, (name, number, text) in enumerate(rows)]

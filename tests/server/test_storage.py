"""The `MetaStore` contract, run over every backend: SQLite in a temp dir and real PostgreSQL."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest

from tests.pgcluster import free_port
from tufnotary.server.errors import StorageError, VersionConflictError
from tufnotary.server.storage import MetaStore, NewFile, StoredFile, open_store
from tufnotary.server.storage.postgres import PostgresMetaStore
from tufnotary.server.storage.sqlite import SqliteMetaStore

COLLECTION = "wabbit-networks/net-monitor"
TOP_ROLES = ("root", "targets", "snapshot", "timestamp")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database of each backend (PostgreSQL only starts when needed)."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/metadata.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[MetaStore]:
    opened = open_store(store_url)
    opened.migrate()
    yield opened
    opened.close()


def payload(role: str, version: int, tag: str = "") -> bytes:
    """Metadata-like bytes that are not valid UTF-8 and hold NUL and non-ASCII characters."""
    text = f'{{"signed":{{"_type":"{role}","version":{version}}},"tag":"{tag}","note":"Größe €"}}'
    return text.encode("utf-8") + b"\x00\xff\xfe" + tag.encode()


def new(role: str, version: int, tag: str = "") -> NewFile:
    return NewFile(role, version, payload(role, version, tag))


def init(store: MetaStore, collection: str = COLLECTION) -> None:
    """Publish version 1 of the four top-level roles."""
    store.commit(collection, [new(role, 1) for role in TOP_ROLES], {role: 0 for role in TOP_ROLES})


def versions(store: MetaStore, collection: str = COLLECTION) -> dict[str, int]:
    return {role: f.version for role, f in store.current(collection).items()}


def test_round_trip_is_byte_for_byte(store: MetaStore) -> None:
    data = bytes(range(256)) + "délégation ✓".encode() + bytes(range(255, -1, -1))
    before = datetime.now(timezone.utc)
    store.commit(COLLECTION, [NewFile("root", 1, data)], {"root": 0})
    after = datetime.now(timezone.utc)

    for stored in (store.get(COLLECTION, "root"), store.get(COLLECTION, "root", 1),
                   store.current(COLLECTION)["root"]):
        assert isinstance(stored, StoredFile)
        assert type(stored.data) is bytes and stored.data == data
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert stored.length == len(data)
        assert stored.role == "root" and stored.version == 1
        assert stored.created_at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= stored.created_at <= after + timedelta(seconds=1)


def test_current_picks_the_highest_version_of_each_role(store: MetaStore) -> None:
    init(store)
    store.commit(COLLECTION, [new("timestamp", 2)], {"timestamp": 1})
    store.commit(COLLECTION, [new("snapshot", 2), new("timestamp", 3)], {"snapshot": 1, "timestamp": 2})
    store.commit(COLLECTION, [new("targets", 2), new("snapshot", 3), new("timestamp", 4)],
                 {"targets": 1, "snapshot": 2, "timestamp": 3})

    current = store.current(COLLECTION)
    assert {role: f.version for role, f in current.items()} == {
        "root": 1, "targets": 2, "snapshot": 3, "timestamp": 4}
    for role, f in current.items():
        assert f.data == payload(role, f.version)


def test_a_version_filling_a_gap_does_not_become_current(store: MetaStore) -> None:
    """The newest version stays current when an older, missing one is stored later (role_heads only moves up)."""
    init(store)
    store.commit(COLLECTION, [new("timestamp", 5)], {"timestamp": 1})
    store.commit(COLLECTION, [new("timestamp", 3), new("snapshot", 2)], {"timestamp": 5, "snapshot": 1})

    assert versions(store) == {"root": 1, "targets": 1, "snapshot": 2, "timestamp": 5}
    assert store.current(COLLECTION)["timestamp"].data == payload("timestamp", 5)
    assert store.get(COLLECTION, "timestamp", 3).data == payload("timestamp", 3)  # type: ignore[union-attr]
    # The commit after it is checked against the newest version, not the one filled in.
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("timestamp", 6)], {"timestamp": 3})
    store.commit(COLLECTION, [new("timestamp", 6)], {"timestamp": 5})
    assert versions(store)["timestamp"] == 6


def test_current_with_lazy_data_returns_the_same_bytes(store: MetaStore) -> None:
    init(store)
    store.commit(COLLECTION, [new("targets/bin-0", 1, "bin")], {"targets/bin-0": 0})
    for preload in ((), ("root", "targets"), ("root", "snapshot", "timestamp", "no-such-role")):
        current = store.current(COLLECTION, preload=preload)
        assert set(current) == {*TOP_ROLES, "targets/bin-0"}
        for role, f in current.items():
            expected = payload(role, 1, "bin" if role == "targets/bin-0" else "")
            assert type(f.data) is bytes and f.data == expected
            assert f.sha256 == hashlib.sha256(expected).hexdigest() and f.length == len(expected)
        assert current == store.current(COLLECTION)


def test_lazy_data_is_that_version_even_after_a_newer_commit(store: MetaStore) -> None:
    init(store)
    current = store.current(COLLECTION)  # nothing read yet
    store.commit(COLLECTION, [new("targets", 2, "newer"), new("timestamp", 2, "newer")],
                 {"targets": 1, "timestamp": 1})
    assert current["targets"].version == 1 and current["targets"].data == payload("targets", 1)
    assert current["timestamp"].data == payload("timestamp", 1)
    assert store.current(COLLECTION)["targets"].data == payload("targets", 2, "newer")


def test_lazy_data_of_a_deleted_collection_is_a_conflict(store: MetaStore) -> None:
    init(store)
    current = store.current(COLLECTION, preload=("root",))
    store.delete_collection(COLLECTION)
    # The same name again, perhaps the same id: other bytes under the same versions.
    store.commit(COLLECTION, [new(role, 1, "reborn") for role in TOP_ROLES], {role: 0 for role in TOP_ROLES})
    assert current["root"].data == payload("root", 1)  # preloaded
    with pytest.raises(VersionConflictError, match="deleted since it was read"):
        current["targets"].data  # noqa: B018 - the access is what is tested


def test_stored_file_is_immutable_and_needs_data(store: MetaStore) -> None:
    init(store)
    f = store.current(COLLECTION)["root"]
    with pytest.raises(AttributeError):
        f.version = 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        StoredFile("root", 1, None, "0" * 64, 0, datetime.now(timezone.utc))
    assert "data" not in repr(f) and f.role in repr(f)


def test_get_returns_old_versions_and_the_latest(store: MetaStore) -> None:
    init(store)
    store.commit(COLLECTION, [new("root", 2, "rotated")], {"root": 1})
    store.commit(COLLECTION, [new("root", 3, "rotated again")], {"root": 2})

    old = store.get(COLLECTION, "root", 1)
    assert old is not None and old.version == 1 and old.data == payload("root", 1)
    middle = store.get(COLLECTION, "root", 2)
    assert middle is not None and middle.data == payload("root", 2, "rotated")
    latest = store.get(COLLECTION, "root")
    assert latest is not None and latest.version == 3 and latest.data == payload("root", 3, "rotated again")
    assert store.get(COLLECTION, "root", 4) is None


def test_unknown_collection_and_role_are_empty(store: MetaStore) -> None:
    assert store.current(COLLECTION) == {}
    assert store.get(COLLECTION, "root") is None
    assert store.get(COLLECTION, "root", 1) is None
    assert store.collections() == []
    assert store.delete_collection(COLLECTION) is False

    init(store)
    assert store.get(COLLECTION, "targets/releases") is None
    assert store.current("wabbit-networks/other") == {}


def test_stale_expected_version_conflicts_and_stores_nothing(store: MetaStore) -> None:
    init(store)
    store.commit(COLLECTION, [new("targets", 2, "first")], {"targets": 1})
    before = store.current(COLLECTION)

    # The caller validated against targets v1, but v2 was stored in between.
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("targets", 3, "late"), new("snapshot", 2, "late")],
                     {"targets": 1, "snapshot": 1})
    # A role the caller thought absent exists.
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("snapshot", 2, "late")], {"snapshot": 0})
    # A role the caller thought present does not exist.
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("snapshot", 2, "late")], {"snapshot": 1, "targets/releases": 1})

    assert store.current(COLLECTION) == before
    assert store.get(COLLECTION, "targets", 3) is None
    assert store.get(COLLECTION, "snapshot", 2) is None


def test_conflict_on_a_new_collection_does_not_create_it(store: MetaStore) -> None:
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("root", 2)], {"root": 1})
    assert store.collections() == []
    assert store.current(COLLECTION) == {}


def test_duplicate_version_conflicts_and_stores_none_of_the_commit(store: MetaStore) -> None:
    init(store)
    before = store.current(COLLECTION)

    # Expected versions match, but timestamp v1 is already stored: snapshot v2 must not be kept.
    with pytest.raises(VersionConflictError):
        store.commit(COLLECTION, [new("snapshot", 2, "new"), new("timestamp", 1, "replay")],
                     {"snapshot": 1})

    assert store.current(COLLECTION) == before
    assert store.get(COLLECTION, "snapshot", 2) is None
    timestamp = store.get(COLLECTION, "timestamp", 1)
    assert timestamp is not None and timestamp.data == payload("timestamp", 1)


def test_delete_removes_only_that_collection(store: MetaStore) -> None:
    other = "wabbit-networks/net-monitor-beta"
    init(store)
    store.commit(COLLECTION, [new("timestamp", 2)], {"timestamp": 1})
    init(store, other)
    kept = store.current(other)

    assert store.delete_collection(COLLECTION) is True

    assert store.current(COLLECTION) == {}
    assert store.get(COLLECTION, "timestamp", 1) is None
    assert store.get(COLLECTION, "timestamp", 2) is None
    assert store.collections() == [other]
    assert store.current(other) == kept
    assert store.delete_collection(COLLECTION) is False

    # The name can be used again, from version 1.
    init(store)
    assert versions(store) == {role: 1 for role in TOP_ROLES}


def test_collection_and_delegated_role_names_with_slashes(store: MetaStore) -> None:
    nested = "registry.example/team/app"
    init(store)
    init(store, nested)
    store.commit(COLLECTION, [new("targets/releases", 1), new("targets/releases/stable", 1)],
                 {"targets/releases": 0, "targets/releases/stable": 0})
    store.commit(COLLECTION, [new("targets/releases/stable", 2, "next")], {"targets/releases/stable": 1})

    assert store.collections() == sorted([COLLECTION, nested])
    assert versions(store) == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1,
                               "targets/releases": 1, "targets/releases/stable": 2}
    stable = store.get(COLLECTION, "targets/releases/stable", 2)
    assert stable is not None and stable.data == payload("targets/releases/stable", 2, "next")
    assert set(store.current(nested)) == set(TOP_ROLES)
    assert store.current("wabbit-networks") == {}


def test_migrate_twice_is_a_no_op(store_url: str) -> None:
    fresh = open_store(store_url)
    try:
        assert isinstance(fresh, (SqliteMetaStore, PostgresMetaStore))
        all_names = [name for name, _ in fresh.migrations()]
        assert all_names and all_names[0] == "0001_initial"
        assert fresh.migrate() == all_names
        init(fresh)
        assert fresh.migrate() == []
        assert versions(fresh) == {role: 1 for role in TOP_ROLES}
    finally:
        fresh.close()


def test_concurrent_migrate_applies_each_migration_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[list[str]] = []

    def run(s: MetaStore) -> None:
        barrier.wait()
        results.append(s.migrate())

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert sorted(results, key=len) == [[], [], [], [name for name, _ in stores[0].migrations()]]
        init(stores[0])
        assert versions(stores[1]) == {role: 1 for role in TOP_ROLES}
    finally:
        for s in stores:
            s.close()


RACERS = 8


def race_files(race: str, worker: int) -> tuple[list[NewFile], dict[str, int]]:
    """What racer `worker` commits, and the versions it saw, after `init`.

    "same version": all publish targets v2 + snapshot v2 having seen v1 of both.
    "disjoint roles": each adds its own delegated role, having seen none of them; no two
    commits share a (role, version), so only serialising the commits can refuse the losers.
    """
    tag = f"worker {worker}"
    if race == "same version":
        return [new("targets", 2, tag), new("snapshot", 2, tag)], {"targets": 1, "snapshot": 1}
    return [new(f"targets/team-{worker}", 1, tag)], {f"targets/team-{i}": 0 for i in range(RACERS)}


def racing_commit(store: MetaStore, race: str, worker: int) -> str:
    files, expected = race_files(race, worker)
    try:
        store.commit(COLLECTION, files, expected)
        return "won"
    except VersionConflictError:
        return "conflict"


def assert_only_winner_stored(store: MetaStore, race: str, outcomes: dict[int, str]) -> None:
    winners = [w for w, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    assert list(outcomes.values()).count("conflict") == len(outcomes) - 1, outcomes
    files, _ = race_files(race, winners[0])
    assert versions(store) == {**{role: 1 for role in TOP_ROLES}, **{f.role: f.version for f in files}}
    for f in files:
        stored = store.get(COLLECTION, f.role, f.version)
        assert stored is not None and stored.data == f.data


RACES = pytest.mark.parametrize("race", ["same version", "disjoint roles"])


@RACES
def test_concurrent_threads_exactly_one_commit_wins(store: MetaStore, race: str) -> None:
    init(store)
    barrier = threading.Barrier(RACERS)
    outcomes: dict[int, str] = {}

    def run(worker: int) -> None:
        barrier.wait()
        try:
            outcomes[worker] = racing_commit(store, race, worker)
        except Exception as exc:  # recorded so the assertion shows it
            outcomes[worker] = repr(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert_only_winner_stored(store, race, outcomes)


def _commit_in_process(url: str, race: str, worker: int, barrier: threading.Barrier,
                       results: multiprocessing.Queue) -> None:
    own = open_store(url)
    try:
        own.current(COLLECTION)  # connect before the race
        barrier.wait()
        results.put((worker, racing_commit(own, race, worker)))
    except Exception as exc:
        results.put((worker, repr(exc)))
    finally:
        own.close()


@RACES
def test_concurrent_processes_exactly_one_commit_wins(store: MetaStore, store_url: str, race: str) -> None:
    init(store)
    processes_count = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes_count)
    results = ctx.Queue()
    processes = [ctx.Process(target=_commit_in_process, args=(store_url, race, i, barrier, results))
                 for i in range(processes_count)]
    for p in processes:
        p.start()
    outcomes = dict(results.get(timeout=60) for _ in processes)
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert_only_winner_stored(store, race, outcomes)


def test_two_sqlite_stores_share_one_file(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/shared.db"
    first, second = open_store(url), open_store(url)
    try:
        assert first.migrate() == [name for name, _ in first.migrations()]
        assert second.migrate() == []
        init(first)
        assert versions(second) == {role: 1 for role in TOP_ROLES}
        second.commit(COLLECTION, [new("timestamp", 2)], {"timestamp": 1})
        assert versions(first)["timestamp"] == 2
        with pytest.raises(VersionConflictError):
            first.commit(COLLECTION, [new("timestamp", 2, "stale")], {"timestamp": 1})
        stored = second.get(COLLECTION, "timestamp", 2)
        assert stored is not None and stored.data == payload("timestamp", 2)
    finally:
        first.close()
        second.close()


def test_in_memory_sqlite_is_one_database_for_all_threads() -> None:
    memory = open_store("sqlite:///:memory:")
    try:
        memory.migrate()
        writer = threading.Thread(target=init, args=(memory,))
        writer.start()
        writer.join()
        assert versions(memory) == {role: 1 for role in TOP_ROLES}
    finally:
        memory.close()


def test_sqlite_unopenable_file_raises_storage_error(tmp_path: Path) -> None:
    broken = open_store(f"sqlite://{tmp_path}/no-such-dir/metadata.db")
    with pytest.raises(StorageError, match="no-such-dir"):
        broken.current(COLLECTION)


def test_postgres_unreachable_raises_storage_error_without_password() -> None:
    password = "s3cret-Passw0rd"
    port = free_port()
    unreachable = open_store(f"postgresql://tufnotary:{password}@127.0.0.1:{port}/metadata")
    for call in (unreachable.migrate, lambda: unreachable.current(COLLECTION), lambda: init(unreachable)):
        with pytest.raises(StorageError) as raised:
            call()
        assert password not in str(raised.value)
        assert password not in repr(raised.value.to_dict())
        assert f"127.0.0.1:{port}/metadata" in str(raised.value)
    unreachable.close()


def test_postgres_compresses_files_and_audit_details_with_lz4(postgres_url: str) -> None:
    pg = open_store(postgres_url)
    pg.migrate()
    big = payload("targets", 1, "compressible " * 20_000)  # stored compressed, read back whole
    pg.commit(COLLECTION, [NewFile("targets", 1, big)], {})
    stored = pg.get(COLLECTION, "targets")
    pg.close()
    assert stored is not None and stored.data == big
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute WHERE"
                    " (attrelid, attname) IN (('files'::regclass, 'data'), ('audit_log'::regclass, 'details'))")
        compression = sorted(cur.fetchall())
        cur.execute("SELECT pg_column_compression(data) FROM files")
        used = cur.fetchall()
    conn.close()
    assert compression == [("audit_log", "details", "l"), ("files", "data", "l")]
    assert used == [("lz4",)]


def test_postgres_recovers_after_its_connections_are_killed(postgres_url: str) -> None:
    pg = open_store(postgres_url)
    try:
        pg.migrate()
        init(pg)
        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert cur.fetchone()[0] >= 1
        admin.close()
        assert versions(pg) == {role: 1 for role in TOP_ROLES}

        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        admin.close()
        pg.commit(COLLECTION, [new("timestamp", 2)], {"timestamp": 1})
        assert versions(pg)["timestamp"] == 2
    finally:
        pg.close()


def test_bad_arguments_and_use_after_close(store: MetaStore) -> None:
    with pytest.raises(ValueError):
        store.commit(COLLECTION, [], {})
    with pytest.raises(ValueError):
        store.commit(COLLECTION, [new("root", 1), new("root", 1, "again")], {"root": 0})
    with pytest.raises(ValueError):
        store.commit(COLLECTION, [new("root", 0)], {"root": 0})
    with pytest.raises(ValueError):
        store.current("")
    with pytest.raises(ValueError):
        open_store("mysql://localhost/metadata")
    assert store.collections() == []
    store.close()
    with pytest.raises(RuntimeError):
        store.current(COLLECTION)


def _backend_pid(pg: PostgresMetaStore) -> int:
    def work(cur) -> int:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])

    return pg._run(work, write=False)


def test_postgres_keeps_its_connection_between_calls(postgres_url: str) -> None:
    pg = open_store(postgres_url)
    try:
        assert isinstance(pg, PostgresMetaStore)
        pg.migrate()
        first = _backend_pid(pg)
        init(pg)
        for _ in range(5):
            versions(pg)
            assert _backend_pid(pg) == first
        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()")
            assert cur.fetchone()[0] == 1
        admin.close()
    finally:
        pg.close()


def test_postgres_keeps_up_to_pool_size_connections_open(postgres_url: str) -> None:
    pg = open_store(postgres_url, pool_size=3)
    assert isinstance(pg, PostgresMetaStore)
    pg.migrate()
    barrier = threading.Barrier(3)
    pids: list[int] = []

    def busy(cur) -> int:
        cur.execute("SELECT pg_backend_pid()")
        barrier.wait(timeout=10)  # all three hold a connection at once
        return int(cur.fetchone()[0])

    try:
        threads = [threading.Thread(target=lambda: pids.append(pg._run(busy, write=False))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(set(pids)) == 3
        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()")
            assert cur.fetchone()[0] == 3  # all kept open, none closed on return
        admin.close()
        assert _backend_pid(pg) in pids
    finally:
        pg.close()


def test_postgres_replaces_a_killed_connection_transparently(postgres_url: str) -> None:
    pg = open_store(postgres_url)
    try:
        assert isinstance(pg, PostgresMetaStore)
        pg.migrate()
        init(pg)
        killed = _backend_pid(pg)
        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (killed,))
        admin.close()
        assert versions(pg) == {role: 1 for role in TOP_ROLES}
        replacement = _backend_pid(pg)
        assert replacement != killed
        assert _backend_pid(pg) == replacement
    finally:
        pg.close()


def test_pool_size_must_be_positive(postgres_url: str) -> None:
    for bad in (0, -1, True, "4"):
        with pytest.raises(ValueError, match="max_connections"):
            open_store(postgres_url, pool_size=bad)  # type: ignore[arg-type]


def test_sqlite_reuses_one_connection_per_thread(tmp_path: Path) -> None:
    lite = open_store(f"sqlite://{tmp_path}/reuse.db")
    assert isinstance(lite, SqliteMetaStore)
    try:
        lite.migrate()
        init(lite)
        for _ in range(3):
            versions(lite)
        assert len(lite._connections) == 1
        other = threading.Thread(target=versions, args=(lite,))
        other.start()
        other.join()
        assert len(lite._connections) == 2
    finally:
        lite.close()



class _BreaksAfterCommit:
    """A PostgreSQL connection whose COMMIT is applied, then the connection drops before the answer."""

    def __init__(self, conn) -> None:  # noqa: ANN001
        self._conn = conn

    def commit(self) -> None:
        self._conn.commit()
        self._conn.close()
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value) -> None:  # noqa: ANN001
        if name == "_conn":
            object.__setattr__(self, name, value)
        else:
            setattr(self._conn, name, value)


def test_a_connection_lost_during_commit_is_reported_in_doubt_not_as_failed(postgres_url: str, monkeypatch) -> None:
    from tufnotary.server.errors import CommitInDoubtError

    store = PostgresMetaStore(postgres_url)
    store.migrate()
    real = store._checkout
    monkeypatch.setattr(store, "_checkout", lambda fresh: (lambda c, s: (_BreaksAfterCommit(c), s))(*real(fresh)))
    try:
        with pytest.raises(CommitInDoubtError, match="whether the change was stored is unknown"):
            store.commit("c", [NewFile("root", 1, b"{}")], expected={})
        monkeypatch.setattr(store, "_checkout", real)
        assert store.current("c")["root"].version == 1  # it was applied: "failed" would have been a lie
    finally:
        store.close()

"""The read cache serves a file from memory only while nothing changed, wherever the change came from."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from tufnotary.server.changes import Generations, PostgresChanges
from tufnotary.server.readcache import ReadCache
from tufnotary.server.storage import NewFile, open_store

COLLECTION = "wabbit-networks/net-monitor"


def _commit(store, version: int) -> None:
    store.commit(COLLECTION, [NewFile("timestamp", version, b'{"v": %d}' % version)],
                 expected={"timestamp": version - 1})


def _eventually(check, timeout: float = 10.0) -> bool:
    """Poll `check` (a notification crosses processes asynchronously); no timing is asserted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.fixture
def pg(postgres_url):
    stores = [open_store(postgres_url) for _ in range(2)]  # this server's, and "another host's"
    stores[0].migrate()
    generations = Generations()
    listener = PostgresChanges(postgres_url, generations, poll_seconds=0.5)
    listener.start()
    assert listener.wait_healthy(10)
    yield stores[0], stores[1], generations, listener
    listener.stop()
    listener.join(5)
    for store in stores:
        store.close()


def test_hits_until_this_process_commits(pg):
    store, _, generations, listener = pg
    cache = ReadCache(store, generations, enabled=lambda: listener.healthy)
    _commit(store, 1)
    versions = set()

    def read_hits() -> bool:
        versions.add(cache.get(COLLECTION, "timestamp").version)
        return cache.hits > 0

    # The commit's own notification arrives later and costs one more miss; then reads hit.
    assert _eventually(read_hits)
    assert versions == {1}
    _commit(store, 2)  # bumps the generation before commit() returns: the very next read sees it
    assert cache.get(COLLECTION, "timestamp").version == 2
    assert cache.get(COLLECTION, "timestamp", 1).data == b'{"v": 1}'


def test_commits_of_other_hosts_arrive_as_notifications(pg):
    store, other_host, generations, listener = pg
    cache = ReadCache(store, generations, enabled=lambda: listener.healthy)
    _commit(other_host, 1)
    assert _eventually(lambda: (f := cache.get(COLLECTION, "timestamp")) is not None and f.version == 1)
    _commit(other_host, 2)
    assert _eventually(lambda: cache.get(COLLECTION, "timestamp").version == 2)
    other_host.delete_collection(COLLECTION)
    assert _eventually(lambda: cache.get(COLLECTION, "timestamp") is None)


def test_without_a_listener_every_read_goes_to_the_store(pg):
    store, other_host, generations, listener = pg
    cache = ReadCache(store, generations, enabled=lambda: listener.healthy)
    _commit(store, 1)
    cache.get(COLLECTION, "timestamp")
    listener.stop()
    listener.join(5)
    assert not listener.healthy
    _commit(other_host, 2)  # nobody hears it
    assert cache.get(COLLECTION, "timestamp").version == 2
    assert cache.hits == 0


def test_a_listener_that_reconnects_forgets_everything(postgres_url):
    import psycopg2

    store = open_store(postgres_url)
    store.migrate()
    generations = Generations()
    listener = PostgresChanges(postgres_url, generations, retry_seconds=0.1, poll_seconds=0.2)
    listener.start()
    try:
        assert listener.wait_healthy(10)
        before = generations.get(COLLECTION)
        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE query LIKE 'LISTEN%%' OR query = 'SELECT 1'")
        # Whatever was cached may have missed a change while it was away: every generation moves.
        assert _eventually(lambda: listener.healthy and generations.get(COLLECTION)[0] > before[0])
    finally:
        listener.stop()
        listener.join(5)
        store.close()


def test_eviction_keeps_memory_bounded_and_answers_right(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    for version in (1, 2, 3):
        _commit(store, version)
    cache = ReadCache(store, Generations(), enabled=lambda: True, max_bytes=20)  # about two files
    for _ in range(2):
        assert [cache.get(COLLECTION, "timestamp", v).version for v in (1, 2, 3)] == [1, 2, 3]
    assert cache._bytes <= 20
    assert cache.get(COLLECTION, "timestamp", 9) is None
    store.close()


def _bump_in_child(generations: Generations) -> None:
    generations.bump(COLLECTION)


def test_generations_are_shared_with_forked_workers():
    generations = Generations(slots=16)
    before = generations.get(COLLECTION)
    child = multiprocessing.get_context("fork").Process(target=_bump_in_child, args=(generations,))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert generations.get(COLLECTION) == (before[0], before[1] + 1)
    generations.bump_all()
    assert generations.get("another/collection")[0] == before[0] + 1


def test_an_app_on_postgresql_listens_until_it_is_closed(postgres_url, tmp_path):
    """The app's listener is its own thread: `Services.close()` stops it (it would otherwise outlive the app, and
    retry and log once the database is gone). On SQLite there is none."""
    from tufnotary.server.app import create_app
    from tufnotary.server.auth_config import AuthConfig
    from tufnotary.server.config import ServerConfig

    config = ServerConfig(auth=AuthConfig(mode="none", rate_limit=0))
    store = open_store(postgres_url)
    store.migrate()
    try:
        services = create_app(config, store=store, signer=object()).extensions["tufnotary"]  # type: ignore[arg-type]
        listener = services.listener
        assert listener is not None and listener.wait_healthy(10)
        services.close()
        listener.join(10)
        assert not listener.is_alive()
    finally:
        store.close()
    sqlite = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        assert create_app(config, store=sqlite, signer=object()).extensions["tufnotary"].listener is None  # type: ignore[arg-type]
    finally:
        sqlite.close()

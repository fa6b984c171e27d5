"""How every worker learns that a collection changed, so that cached reads are never stale.

A worker may serve a collection's metadata from memory (`readcache.py`) only while nothing changed
since it read it. Two signals together say so:

- `Generations`: one counter per collection (hashed into a fixed table of slots) in memory shared by
  all workers of one server, created by the master before gunicorn forks. A commit bumps its
  collection's counter *before* the HTTP response of the commit is sent, so a client that published
  and then reads, from any worker of the same server, reads what it published.
- `PostgresChanges`: commits on other hosts reach this host as PostgreSQL notifications (the store
  sends `pg_notify` inside each commit's transaction, delivered when it commits). A listener thread
  per worker bumps the same counters. While it is not connected, `healthy` is False and the cache
  is bypassed: a lost notification must never mean a stale read. On every (re)connection all
  counters move, since notifications sent while it was away are lost.

A counter that moves for an unrelated collection sharing its slot only costs a cache miss.
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing
import select
import struct
import threading
import zlib

log = logging.getLogger(__name__)

CHANNEL = "tufnotary_changes"
"""The PostgreSQL notification channel; the payload is the collection name."""

_COUNTER = struct.Struct("=Q")


class Generations:
    """Change counters per collection, shared by processes forked after this is created."""

    def __init__(self, slots: int = 4096) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self._slots = slots
        # Slot 0 is the epoch, moved by bump_all; collections use slots 1..slots.
        # An anonymous mmap is MAP_SHARED: forked children write to the same pages.
        self._memory = mmap.mmap(-1, (slots + 1) * _COUNTER.size)
        self._lock = multiprocessing.Lock()  # a process-shared semaphore, inherited through fork

    def _offset(self, collection: str) -> int:
        # crc32, not hash(): the same slot in every process whatever its hash seed.
        return (1 + zlib.crc32(collection.encode("utf-8")) % self._slots) * _COUNTER.size

    def _read(self, offset: int) -> int:
        return _COUNTER.unpack_from(self._memory, offset)[0]

    def _add(self, offset: int) -> None:
        _COUNTER.pack_into(self._memory, offset, self._read(offset) + 1)

    def get(self, collection: str) -> tuple[int, int]:
        """The collection's generation: equal to an earlier value only if it has not changed since."""
        return self._read(0), self._read(self._offset(collection))

    def bump(self, collection: str) -> None:
        with self._lock:
            self._add(self._offset(collection))

    def bump_all(self) -> None:
        with self._lock:
            self._add(0)


class PostgresChanges(threading.Thread):
    """Listens on `CHANNEL` and bumps `generations` for every collection another process changed."""

    def __init__(self, url: str, generations: Generations, *, retry_seconds: float = 1.0,
                 poll_seconds: float = 5.0) -> None:
        super().__init__(name="tufnotary-changes", daemon=True)
        self._url, self._generations = url, generations
        self._retry, self._poll = retry_seconds, poll_seconds
        self._healthy = threading.Event()
        self._stopping = threading.Event()

    @property
    def healthy(self) -> bool:
        """True while listening: every change committed from now on will be seen."""
        return self._healthy.is_set()

    def wait_healthy(self, timeout: float) -> bool:
        return self._healthy.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        import psycopg2
        import psycopg2.extensions

        while not self._stopping.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self._url)
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                # Anything committed before LISTEN took effect may be cached already: forget it all.
                self._generations.bump_all()
                self._healthy.set()
                while not self._stopping.is_set():
                    if select.select([conn], [], [], self._poll) == ([], [], []):
                        with conn.cursor() as cur:  # a dead connection shows here, not in select
                            cur.execute("SELECT 1")
                    conn.poll()
                    while conn.notifies:
                        self._generations.bump(conn.notifies.pop(0).payload)
            except Exception as exc:  # noqa: BLE001 - any failure: stop trusting the cache, retry
                self._healthy.clear()
                log.warning("not listening for metadata changes (reads bypass the cache until it "
                            "reconnects): %s", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
                self._stopping.wait(self._retry)
            finally:
                self._healthy.clear()
                if conn is not None:
                    conn.close()

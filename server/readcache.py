"""Metadata reads from memory: each worker keeps the files it served, for as long as they are current.

An entry is served only while its collection's generation (`changes.Generations`) is the one it
was read under, and only while the worker hears about every change (`ReadCache.enabled`); it is
read from the store otherwise. The generation is taken *before* the store is read, so a commit
racing the read leaves an entry that is already out of date, never one that looks current.
The cache holds at most `max_bytes` of file data per worker, least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from tufnotary.server import metrics
from tufnotary.server.changes import Generations
from tufnotary.server.storage import MetaStore, StoredFile

_Key = tuple[str, str, "int | None"]


class ReadCache:
    def __init__(self, store: MetaStore, generations: Generations, enabled: Callable[[], bool],
                 max_bytes: int = 64 << 20) -> None:
        """`enabled()` says whether changes made anywhere are being heard right now."""
        self._store, self._generations, self._enabled = store, generations, enabled
        self._max_bytes = max_bytes
        self._entries: OrderedDict[_Key, tuple[tuple[int, int], StoredFile]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        store.on_change(generations.bump)

    def get(self, collection: str, role: str, version: int | None = None) -> StoredFile | None:
        """`store.get(collection, role, version)`, from memory when nothing changed since."""
        if self._max_bytes <= 0 or not self._enabled():
            metrics.read_cache.labels("bypass").inc()
            return self._store.get(collection, role, version)
        generation = self._generations.get(collection)
        key = (collection, role, version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == generation:
                self._entries.move_to_end(key)
                self.hits += 1
                metrics.read_cache.labels("hit").inc()
                return entry[1]
        stored = self._store.get(collection, role, version)
        metrics.read_cache.labels("miss").inc()
        with self._lock:
            self.misses += 1
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1].length
            if stored is not None and stored.length <= self._max_bytes:
                self._entries[key] = (generation, stored)
                self._bytes += stored.length
                while self._bytes > self._max_bytes:
                    _, (_, evicted) = self._entries.popitem(last=False)
                    self._bytes -= evicted.length
        return stored

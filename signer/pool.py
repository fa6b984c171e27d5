"""`ConnectionPool`: database connections kept open and reused, because opening one (a PostgreSQL backend,
TLS, authentication) cost more than the signing itself — 42% of the signer's time when each transaction
opened its own.

Idle connections are reused last-in first-out (the warmest one first) and never closed while the pool
lives, unlike psycopg2's `ThreadedConnectionPool`, which closes every returned connection above `minconn`.
At most `size` connections are open at once; a caller beyond that waits for one to come back.

Fork: a connection must never be used or closed by two processes (closing one in a child would end the
parent's session). A pool used in a process other than the one that opened its connections forgets
them without closing them and opens its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from tufnotary.signer.errors import KeyStoreUnavailableError

# Connections inherited across a fork: referenced for the child's lifetime so that no garbage collection
# ever closes them (libpq would send the server a termination message for the parent's session).
_inherited: list[Any] = []


class ConnectionPool:
    """Up to `size` connections from `connect`, reused; `is_stale(conn)` says an idle one is no longer usable."""

    def __init__(
        self,
        connect: Callable[[], Any],
        size: int,
        *,
        is_stale: Callable[[Any], bool] = lambda conn: False,
        wait_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a connection pool holds at least one connection")
        self._connect = connect
        self._size = size
        self._is_stale = is_stale
        self._wait_timeout = wait_timeout
        self._cond = threading.Condition()
        self._idle: list[Any] = []
        self._open = 0
        self._pid = os.getpid()
        self._closed = False
        self.connects = 0  # connections opened so far in this process: lets tests observe reuse

    def acquire(self) -> Any:
        """An open connection for this thread alone until `release`."""
        stale: list[Any] = []
        try:
            with self._cond:
                self._after_fork()
                while True:
                    if self._closed:
                        raise KeyStoreUnavailableError("the signer key database pool is closed")
                    while self._idle:
                        conn = self._idle.pop()
                        if not self._is_stale(conn):
                            return conn
                        self._open -= 1
                        stale.append(conn)
                    if self._open < self._size:
                        self._open += 1
                        break
                    if not self._cond.wait(self._wait_timeout):
                        raise KeyStoreUnavailableError(
                            f"all {self._size} signer key database connections stayed busy for {self._wait_timeout:g} s"
                        )
        finally:
            for conn in stale:
                _close_quietly(conn)
        try:
            conn = self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise
        with self._cond:
            self.connects += 1
        return conn

    def release(self, conn: Any, *, broken: bool = False) -> None:
        """Give `conn` back; a `broken` one is closed, and so are the idle ones, which most likely broke
        the same way (the server restarted): the next callers open fresh connections."""
        doomed: list[Any] = []
        with self._cond:
            if os.getpid() != self._pid:  # acquired before a fork, released after it: not ours to keep
                _inherited.append(conn)
                return
            if broken or self._closed:
                doomed.append(conn)
                self._open -= 1
                if broken:
                    doomed.extend(self._idle)
                    self._open -= len(self._idle)
                    self._idle.clear()
            else:
                self._idle.append(conn)
            self._cond.notify()
        for conn in doomed:
            _close_quietly(conn)

    def close(self) -> None:
        """Close the idle connections now and every busy one when it comes back."""
        with self._cond:
            self._after_fork()
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            _close_quietly(conn)

    def _after_fork(self) -> None:
        if os.getpid() != self._pid:
            _inherited.extend(self._idle)
            self._idle, self._open, self._pid, self.connects = [], 0, os.getpid(), 0


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # a connection that cannot even close is gone either way
        pass

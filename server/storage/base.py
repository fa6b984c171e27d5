"""The storage contract of the metadata server: what a `MetaStore` keeps and promises.

Backends implement `MetaStore`; `tests/server/test_storage.py` runs the same contract over each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tufnotary.server.audit import AuditEntry, AuditRecord
from tufnotary.server.errors import VersionConflictError


class StoredFile:
    """One stored version of one role's signed metadata file (immutable).

    `data` may be read from the database on first access: `current()` reads every role's
    version, digest and length but only the bytes a caller touches, since a collection of many
    hash bins holds megabytes a publish of one bin never needs. A late read is of this very
    (role, version), checked against `sha256`, whatever was committed in between.
    """

    __slots__ = ("role", "version", "sha256", "length", "created_at", "_data", "_load")

    role: str
    """"root", "targets", "snapshot", "timestamp", or a delegated role name (may contain "/")."""
    version: int
    sha256: str
    """Lower-case hex SHA-256 digest of `data`."""
    length: int
    """len(data)."""
    created_at: datetime
    """When the commit that stored it ran (timezone-aware, UTC)."""

    def __init__(self, role: str, version: int, data: bytes | None, sha256: str, length: int,
                 created_at: datetime, *, load: Callable[[], bytes] | None = None) -> None:
        if data is None and load is None:
            raise ValueError("a StoredFile needs its data or a way to load it")
        for name, value in (("role", role), ("version", version), ("sha256", sha256), ("length", length),
                            ("created_at", created_at), ("_data", data), ("_load", load)):
            object.__setattr__(self, name, value)

    @property
    def data(self) -> bytes:
        """The exact bytes uploaded or generated, returned byte-for-byte."""
        if self._data is None:
            assert self._load is not None
            # Two threads may both load; they get the same bytes.
            object.__setattr__(self, "_data", self._load())
            object.__setattr__(self, "_load", None)
        assert self._data is not None
        return self._data

    def _key(self) -> tuple[str, int, str, int, datetime]:
        return (self.role, self.version, self.sha256, self.length, self.created_at)

    def __eq__(self, other: object) -> bool:
        # The digest stands for the bytes: loaded data is checked against it.
        return isinstance(other, StoredFile) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("StoredFile is immutable")

    def __repr__(self) -> str:
        return (f"StoredFile(role={self.role!r}, version={self.version}, sha256={self.sha256[:12]}…,"
                f" length={self.length}, created_at={self.created_at.isoformat()})")


ONLINE_ROLES = ("timestamp", "snapshot")
"""The roles whose expiry a store tracks for the renewer (`NewFile.online_expires`)."""


@dataclass(frozen=True)
class NewFile:
    """A file to store in `MetaStore.commit`."""

    role: str
    version: int
    data: bytes
    online_expires: datetime | None = None
    """For a timestamp or snapshot the server signed: its expiry, by which the renewer must
    replace it (`claim_renewals`). None: the server does not renew it (e.g. a snapshot its owner
    signed). Storing a timestamp or snapshot always replaces the tracked expiry of its role."""


@dataclass(frozen=True)
class Commit:
    """One collection's part of `MetaStore.commit_many`: the arguments of `MetaStore.commit`."""

    collection: str
    files: Sequence[NewFile]
    expected: Mapping[str, int]
    audit: AuditEntry | None = None


@dataclass(frozen=True)
class RenewalState:
    """What the renewer needs of one collection (`MetaStore.renewal_state`)."""

    files: Mapping[str, StoredFile]
    """The latest root, snapshot and timestamp, bytes read; a role not stored is absent."""
    snapshot_online: bool
    """The store tracks the snapshot's expiry: the server signed it (or, for snapshots stored
    before the store tracked this, may have)."""


class MetaStore(ABC):
    """Signed TUF metadata of many collections; every version of every role is kept forever.

    A collection (one TUF repository, named like "wabbit-networks/net-monitor") exists from its
    first commit until `delete_collection`. Stores are safe to share between threads, and
    several stores (other processes, other hosts) may use one database at the same time.
    Database failures other than version conflicts raise `StorageError`; bad arguments raise
    `ValueError`; using a store after `close()` raises `RuntimeError`.
    """

    _change_callbacks: tuple[Callable[[str], None], ...] = ()

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply the schema migrations this database lacks, in order, and return their names.

        Idempotent and safe to run concurrently from several processes: once the schema is
        current it returns [] and changes nothing.
        """

    @abstractmethod
    def current(self, collection: str, preload: Collection[str] = ()) -> dict[str, StoredFile]:
        """Return the latest version of every role of `collection`; {} if it does not exist.

        The bytes of the roles in `preload` are read with it; the others' on first access of
        their `data` (one read each). A late read still returns that version's bytes; it raises
        `VersionConflictError` if the collection was deleted meanwhile.
        """

    @abstractmethod
    def get(self, collection: str, role: str, version: int | None = None) -> StoredFile | None:
        """Return `version` of `role` (the latest when None), or None if it is not stored."""

    @abstractmethod
    def commit(self, collection: str, files: Sequence[NewFile], expected: Mapping[str, int],
               audit: AuditEntry | None = None) -> None:
        """Store all of `files` atomically, or none of them, with the audit record `audit`.

        `expected` maps role -> the version the caller saw as current when it validated the
        upload (0: the role did not exist). In one transaction, serialised with every other
        commit to `collection` across threads, processes and hosts:

        - if the current version of any role in `expected` differs from the stored one, raise
          `VersionConflictError` and store none of the files;
        - if any (collection, role, version) of `files` is already stored, raise
          `VersionConflictError` and store none of the files;
        - otherwise store every file; the first commit to a collection creates it.

        `files` must be non-empty with distinct (role, version) pairs and versions >= 1.
        `audit`, when given, is appended to the audit chain in the same transaction: the files
        are stored with their record or not at all.
        """

    @abstractmethod
    def commit_many(self, commits: Sequence[Commit]) -> list[VersionConflictError | None]:
        """Apply many commits to distinct collections in one transaction; each is all or nothing.

        Each commit follows `commit`'s rules on its own: one that conflicts stores nothing and
        its `VersionConflictError` is returned in its place (None for those stored), without
        affecting the others. Bad arguments in any commit raise `ValueError` and store nothing.
        """

    @abstractmethod
    def claim_renewals(self, timestamp_before: datetime, snapshot_before: datetime, now: datetime,
                       lease: timedelta, limit: int) -> list[str]:
        """Claim up to `limit` collections due for renewal, for `lease`; return their names.

        Due: the tracked timestamp expiry is before `timestamp_before`, or the tracked snapshot
        expiry before `snapshot_before`. A claimed collection is not claimed again, by any
        store on any host, until `release_renewals` or until its lease ends (a renewer that
        died). Most urgent first.
        """

    @abstractmethod
    def release_renewals(self, collections: Sequence[str], snapshot_offline: Sequence[str] = ()) -> None:
        """End the claims on `collections`; stop tracking the snapshot expiry of `snapshot_offline`
        (the renewer found the server cannot sign their snapshot). Unknown names are ignored."""

    @abstractmethod
    def renewal_state(self, collections: Sequence[str]) -> dict[str, RenewalState]:
        """The latest root, snapshot and timestamp (with bytes) of each collection, in one read.

        Collections that do not exist are absent."""

    @abstractmethod
    def delete_collection(self, collection: str, audit: AuditEntry | None = None) -> bool:
        """Remove `collection` and every version of every role of it; False if it did not exist.

        Its audit records stay. `audit` is appended in the same transaction, only if it existed.
        """

    @abstractmethod
    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append `entry` to the audit chain on its own (changes made outside this store)."""

    @abstractmethod
    def audit_records(self, collection: str | None = None, since: int = 0, limit: int = 100) -> list[AuditRecord]:
        """Records with seq > `since`, oldest first, at most `limit`; of one collection, or all."""

    @abstractmethod
    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last record of the chain; (0, GENESIS_HASH) when empty."""

    @abstractmethod
    def collections(self) -> list[str]:
        """Names of all stored collections, sorted."""

    def on_change(self, callback: Callable[[str], None]) -> None:
        """Call `callback(collection)` after each commit or deletion through this store object
        has committed, in the thread that made it (before the caller learns it succeeded)."""
        self._change_callbacks = (*self._change_callbacks, callback)

    def _changed(self, collection: str) -> None:
        for callback in self._change_callbacks:
            callback(collection)

    def listen_url(self) -> str | None:
        """The database URL to listen on for commits made by other processes and hosts
        (PostgreSQL notifications on `changes.CHANNEL`), or None if this backend sends none."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release this store's connections; the store must not be used afterwards."""


DEFAULT_POOL_SIZE = 8
"""Connections a PostgreSQL store keeps per process by default: gunicorn's threads per worker
and the renewer thread, with room to spare (each is opened only when that many are busy)."""


def open_store(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> MetaStore:
    """Open (without connecting yet) the store a database URL names.

    - "sqlite:////abs/path.db" or "sqlite:///abs/path.db": an SQLite file, shared safely by
      several processes on one host;
    - "sqlite://" or "sqlite:///:memory:": a private in-memory database (tests, one process);
    - "postgresql://user:password@host:port/dbname" (also "postgres://"): PostgreSQL; libpq
      query parameters such as "?sslmode=require&connect_timeout=5" are passed through.
      Each process keeps up to `pool_size` connections open (SQLite: one per thread, always).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from tufnotary.server.storage.sqlite import SqliteMetaStore

        return SqliteMetaStore.from_url(url)
    if scheme in ("postgresql", "postgres"):
        from tufnotary.server.storage.postgres import PostgresMetaStore

        return PostgresMetaStore(url, max_connections=pool_size)
    raise ValueError(f"unsupported storage URL scheme {scheme!r}: use sqlite:// or postgresql://")

"""The SQL shared by every `MetaStore` backend: queries, commit rules and the migration runner.

A backend supplies a connection per unit of work (`_run`), its placeholder and row-lock syntax,
its driver's error classes and how it encodes timestamps; everything else lives here.
"""

from __future__ import annotations

import hashlib
import re
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, ClassVar, Protocol, TypeVar

from tufnotary.server.audit import GENESIS_HASH, AuditEntry, AuditRecord, seal
from tufnotary.server.errors import VersionConflictError
from tufnotary.server.storage.base import ONLINE_ROLES, Commit, MetaStore, NewFile, RenewalState, StoredFile

T = TypeVar("T")

_NAMES_PER_STATEMENT = 1000
_MIGRATION_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")

_FILE_COLUMNS = "f.role, f.version, f.data, f.sha256, f.length, f.created_at"
# The bytes of the roles a caller asked for (NULL for the others, read on first use).
_LAZY_FILE_COLUMNS = "f.role, f.version, {data}, f.sha256, f.length, f.created_at, f.collection_id"
# The newest version of each role of collection c: role_heads h, then that row of files f.
_HEAD_FILES = ("h.collection_id = c.id"
               " AND f.collection_id = h.collection_id AND f.role = h.role AND f.version = h.version")


class Cursor(Protocol):
    """The part of a DB-API 2.0 cursor the shared code uses."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlMetaStore(MetaStore):
    """`MetaStore` over a DB-API driver; queries are written with "?" placeholders."""

    dialect: ClassVar[str]
    """Folder of this backend's migrations under `migrations/`."""
    placeholder: ClassVar[str] = "?"
    lock_clause: ClassVar[str] = ""
    """Appended to a SELECT of a `collections` row to lock it until the transaction ends."""
    time_param: ClassVar[str] = "?"
    """A timestamp parameter where its type must be spelled out (a NULL in a CASE)."""
    skip_locked_clause: ClassVar[str] = ""
    """Like `lock_clause`, passing over rows other transactions hold locked."""
    integrity_errors: ClassVar[tuple[type[Exception], ...]]
    """Driver exceptions raised when an insert breaks a unique constraint."""
    migrations_table_ddl: ClassVar[str]

    @abstractmethod
    def _run(self, work: Callable[[Cursor], T], write: bool) -> T:
        """Run `work` in one transaction and commit it; roll back if it raises.

        `write=True` transactions are serialised with each other for the whole database
        (SQLite) or must take row locks themselves (`lock_clause`). `write=False` work may run
        without a transaction, so it must be a single SELECT. Driver errors become
        `StorageError`; other exceptions propagate unchanged after the rollback.
        """

    @abstractmethod
    def _encode_time(self, moment: datetime) -> Any: ...

    @abstractmethod
    def _decode_time(self, value: Any) -> datetime: ...

    def _announce(self, cur: Cursor, collections: Sequence[str]) -> None:
        """Tell other processes, inside the write transaction, that `collections` change with it."""

    def _lock_for_migrations(self, cur: Cursor) -> None:
        """Serialise concurrent `migrate()` calls beyond what a write transaction does."""

    def _execute_script(self, cur: Cursor, script: str) -> None:
        cur.execute(script)

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # --- migrations ---------------------------------------------------------------------

    def migrations(self) -> list[tuple[str, str]]:
        """(name, SQL) of every migration of this backend, in the order they apply."""
        folder = resources.files("tufnotary.server.storage").joinpath("migrations", self.dialect)
        found = sorted(p.name for p in folder.iterdir() if _MIGRATION_NAME.match(p.name))
        return [(name.removesuffix(".sql"), folder.joinpath(name).read_text("utf-8")) for name in found]

    def migrate(self) -> list[str]:
        pending = self.migrations()

        def work(cur: Cursor) -> list[str]:
            self._lock_for_migrations(cur)
            cur.execute(self.migrations_table_ddl)
            cur.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            applied = []
            for name, script in pending:
                if name in done:
                    continue
                self._execute_script(cur, script)
                cur.execute(self._q("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)"),
                            (name, self._encode_time(_now())))
                applied.append(name)
            return applied

        return self._run(work, write=True)

    # --- reads --------------------------------------------------------------------------

    def current(self, collection: str, preload: Collection[str] = ()) -> dict[str, StoredFile]:
        _check_name("collection", collection)
        preload = sorted(set(preload))
        for role in preload:
            _check_name("role", role)
        data = (f"CASE WHEN f.role IN ({', '.join('?' * len(preload))}) THEN f.data END"
                if preload else "NULL")
        # The newest version of each role comes from role_heads (one row per role, however long its
        # history); only those rows of files are then read, with the bytes of the `preload` roles only.
        # CROSS JOIN: SQLite joins in the order written (else it may walk every version in files
        # first); PostgreSQL plans it as the inner join it is.
        sql = self._q(
            f"SELECT {_LAZY_FILE_COLUMNS.format(data=data)} FROM collections c"
            f" CROSS JOIN role_heads h CROSS JOIN files f WHERE c.name = ? AND {_HEAD_FILES}")

        def work(cur: Cursor) -> dict[str, StoredFile]:
            cur.execute(sql, (*preload, collection))
            files = {}
            for role, version, blob, digest, length, created_at, collection_id in cur.fetchall():
                load = None if blob is not None else self._loader(collection, int(collection_id), role,
                                                                   int(version), digest)
                files[role] = StoredFile(role, int(version), None if blob is None else bytes(blob), digest,
                                         int(length), self._decode_time(created_at), load=load)
            return files

        return self._run(work, write=False)

    def _loader(self, collection: str, collection_id: int, role: str, version: int,
                digest: str) -> Callable[[], bytes]:
        """Reads the bytes of exactly (collection_id, role, version) later, checked against `digest`
        (a collection deleted and created again may reuse an id, never its files' digests)."""
        sql = self._q("SELECT data FROM files WHERE collection_id = ? AND role = ? AND version = ?")

        def work(cur: Cursor) -> bytes | None:
            cur.execute(sql, (collection_id, role, version))
            row = cur.fetchone()
            return None if row is None else bytes(row[0])

        def load() -> bytes:
            data = self._run(work, write=False)
            if data is None or hashlib.sha256(data).hexdigest() != digest:
                raise VersionConflictError(
                    f"collection {collection!r} was deleted since it was read: read it again",
                    detail={"role": role, "version": version})
            return data

        return load

    def get(self, collection: str, role: str, version: int | None = None) -> StoredFile | None:
        _check_name("collection", collection)
        _check_name("role", role)
        base = (f"SELECT {_FILE_COLUMNS} FROM files f JOIN collections c ON c.id = f.collection_id"
                " WHERE c.name = ? AND f.role = ?")
        if version is None:
            sql, params = base + " ORDER BY f.version DESC LIMIT 1", (collection, role)
        else:
            _check_version(version)
            sql, params = base + " AND f.version = ?", (collection, role, version)

        def work(cur: Cursor) -> StoredFile | None:
            cur.execute(self._q(sql), params)
            row = cur.fetchone()
            return None if row is None else self._stored_file(row)

        return self._run(work, write=False)

    def collections(self) -> list[str]:
        def work(cur: Cursor) -> list[str]:
            cur.execute("SELECT name FROM collections ORDER BY name")
            return [row[0] for row in cur.fetchall()]

        return self._run(work, write=False)

    # --- writes -------------------------------------------------------------------------

    def commit(self, collection: str, files: Sequence[NewFile], expected: Mapping[str, int],
               audit: AuditEntry | None = None) -> None:
        one = Commit(collection, files, expected, audit)
        _check_commit(one)
        now = _now()
        conflict = self._run(lambda cur: self._commit_all(cur, [one], now)[0], write=True)
        if conflict is not None:
            raise conflict
        self._changed(collection)

    def commit_many(self, commits: Sequence[Commit]) -> list[VersionConflictError | None]:
        for c in commits:
            _check_commit(c)
        names = [c.collection for c in commits]
        if len(set(names)) != len(names):
            raise ValueError("commit_many takes at most one commit per collection")
        if not commits:
            return []
        now = _now()
        results = self._run(lambda cur: self._commit_all(cur, commits, now), write=True)
        for c, conflict in zip(commits, results):
            if conflict is None:
                self._changed(c.collection)
        return results

    def _commit_all(self, cur: Cursor, commits: Sequence[Commit], now: datetime) -> list[VersionConflictError | None]:
        """`commit`'s rules for each of `commits` (distinct collections), inside the caller's write
        transaction, with a fixed number of statements for any number of commits: the renewer
        commits hundreds at once. A commit that conflicts writes nothing, so no savepoint is needed:
        the locks taken first keep every checked version current until the transaction ends."""
        names = [c.collection for c in commits]
        # Lock every existing collection first, in one order, before the audit head: a publish
        # locks its collection then the head, so this order cannot deadlock with it.
        ids: dict[str, int] = {}
        for part in _parts(names):
            cur.execute(self._q(f"SELECT name, id FROM collections WHERE name IN ({_marks(part)})"
                                " ORDER BY id" + self.lock_clause), part)
            ids.update((name, int(i)) for name, i in cur.fetchall())
        results: dict[str, VersionConflictError | None] = {}
        for c in commits:
            if c.collection not in ids:
                # Nothing stored yet: only a commit expecting no role can create it.
                stale = {role: {"expected": v, "current": 0} for role, v in c.expected.items() if v != 0}
                if stale:
                    results[c.collection] = _stale(c.collection, stale)
                else:
                    ids[c.collection] = self._lock_collection(cur, c.collection, now)
        live = [c for c in commits if c.collection not in results]
        stored: dict[int, dict[str, int]] = {ids[c.collection]: {} for c in live}
        for part in _parts(list(stored)):
            cur.execute(self._q(f"SELECT collection_id, role, version FROM role_heads"
                                f" WHERE collection_id IN ({_marks(part)})"), part)
            for collection_id, role, version in cur.fetchall():
                stored[int(collection_id)][role] = int(version)
        for c in live:
            have = stored[ids[c.collection]]
            stale = {role: {"expected": v, "current": have.get(role, 0)}
                     for role, v in c.expected.items() if have.get(role, 0) != v}
            if stale:
                results[c.collection] = _stale(c.collection, stale)
                continue
            results[c.collection] = None
            for f in c.files:
                # Only a version at or below the newest stored one can exist already (gaps aside).
                if f.version <= have.get(f.role, 0):
                    cur.execute(self._q("SELECT 1 FROM files WHERE collection_id = ? AND role = ?"
                                        " AND version = ?"), (ids[c.collection], f.role, f.version))
                    if cur.fetchone() is not None:
                        results[c.collection] = _duplicate(c.collection, f.role, f.version)
                        break
        winners = [c for c in commits if results[c.collection] is None]
        rows = []
        for c in winners:
            for f in c.files:
                data = bytes(f.data)
                rows.append((ids[c.collection], f.role, f.version, data, hashlib.sha256(data).hexdigest(),
                             len(data), self._encode_time(now)))
        try:
            self._insert_rows(cur, "files", ("collection_id", "role", "version", "data", "sha256", "length",
                                             "created_at"), rows)
        except self.integrity_errors as exc:
            # Only reachable if the collection locks were bypassed; the key still holds.
            raise VersionConflictError(f"a version was stored meanwhile: {exc}") from exc
        self._advance_heads(cur, rows)
        for role in ONLINE_ROLES:
            # The newest version written of an online role sets its tracked expiry.
            expiries = []
            for c in winners:
                written = [f for f in c.files if f.role == role]
                if written:
                    expires = max(written, key=lambda f: f.version).online_expires
                    expiries.append((ids[c.collection], None if expires is None else self._encode_time(expires)))
            for part in _parts(expiries, per=_NAMES_PER_STATEMENT // 2):
                cur.execute(self._q(f"UPDATE collections SET {role}_expires = CASE id"
                                    + f" WHEN ? THEN {self.time_param}" * len(part)
                                    + f" END WHERE id IN ({_marks(part)})"),
                            [value for pair in part for value in pair] + [i for i, _ in part])
        self._append_audits(cur, [c.audit for c in winners if c.audit is not None])
        self._announce(cur, [c.collection for c in winners])
        return [results[c.collection] for c in commits]

    def _advance_heads(self, cur: Cursor, rows: Sequence[Sequence[Any]]) -> None:
        """Move role_heads to the newest of the file rows just inserted ((collection_id, role, version, ...)),
        never back: a commit may fill a gap below a role's newest version."""
        newest: dict[tuple[int, str], int] = {}
        for collection_id, role, version, *_ in rows:
            newest[collection_id, role] = max(version, newest.get((collection_id, role), 0))
        row_marks = "(?, ?, ?)"
        for part in _parts(list(newest.items()), per=_NAMES_PER_STATEMENT // 3):
            cur.execute(self._q("INSERT INTO role_heads (collection_id, role, version) VALUES "
                                + ", ".join([row_marks] * len(part))
                                + " ON CONFLICT (collection_id, role) DO UPDATE SET version = CASE"
                                " WHEN excluded.version > role_heads.version THEN excluded.version"
                                " ELSE role_heads.version END"),
                        [value for (collection_id, role), version in part for value in (collection_id, role, version)])

    def _insert_rows(self, cur: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert `rows` with as few statements as the drivers' parameter limits allow."""
        row_marks = "(" + _marks(columns) + ")"
        for part in _parts(rows, per=max(1, 10_000 // len(columns))):
            cur.execute(self._q(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                + ", ".join([row_marks] * len(part))), [v for row in part for v in row])

    # --- renewal ------------------------------------------------------------------------

    def claim_renewals(self, timestamp_before: datetime, snapshot_before: datetime, now: datetime,
                       lease: timedelta, limit: int) -> list[str]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, not {limit!r}")
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, not {lease!r}")
        # SKIP LOCKED (PostgreSQL) passes over rows another renewer is claiming or a publish is
        # committing right now; SQLite serialises write transactions instead.
        sql = self._q(
            "UPDATE collections SET renew_claimed_until = ? WHERE id IN ("
            " SELECT id FROM collections"
            " WHERE (timestamp_expires < ? OR snapshot_expires < ?)"
            " AND (renew_claimed_until IS NULL OR renew_claimed_until < ?)"
            " ORDER BY timestamp_expires LIMIT ?" + self.skip_locked_clause + ")"
            " RETURNING name")

        def work(cur: Cursor) -> list[str]:
            cur.execute(sql, (self._encode_time(now + lease), self._encode_time(timestamp_before),
                              self._encode_time(snapshot_before), self._encode_time(now), limit))
            return sorted(row[0] for row in cur.fetchall())

        return self._run(work, write=True)

    def release_renewals(self, collections: Sequence[str], snapshot_offline: Sequence[str] = ()) -> None:
        for name in (*collections, *snapshot_offline):
            _check_name("collection", name)
        if not collections and not snapshot_offline:
            return

        def work(cur: Cursor) -> None:
            for column, names in (("renew_claimed_until", collections), ("snapshot_expires", snapshot_offline)):
                # A pass may release tens of thousands: stay under SQLite's limit of bound parameters.
                for part in _parts(list(names)):
                    cur.execute(self._q(f"UPDATE collections SET {column} = NULL WHERE name IN ({_marks(part)})"),
                                part)

        self._run(work, write=True)

    def renewal_state(self, collections: Sequence[str]) -> dict[str, RenewalState]:
        for name in collections:
            _check_name("collection", name)
        if not collections:
            return {}
        sql = self._q(
            f"SELECT c.name, c.snapshot_expires IS NOT NULL, {_FILE_COLUMNS} FROM collections c"
            f" CROSS JOIN role_heads h CROSS JOIN files f WHERE c.name IN ({_marks(collections)})"
            f" AND h.role IN ('root', 'snapshot', 'timestamp') AND {_HEAD_FILES}")  # CROSS JOIN: see current()

        def work(cur: Cursor) -> dict[str, RenewalState]:
            cur.execute(sql, list(collections))
            files: dict[str, dict[str, StoredFile]] = {}
            online: dict[str, bool] = {}
            for name, snapshot_online, *row in cur.fetchall():
                stored = self._stored_file(row)
                files.setdefault(name, {})[stored.role] = stored
                online[name] = bool(snapshot_online)
            return {name: RenewalState(roles, online[name]) for name, roles in files.items()}

        return self._run(work, write=False)

    def delete_collection(self, collection: str, audit: AuditEntry | None = None) -> bool:
        _check_name("collection", collection)

        def work(cur: Cursor) -> bool:
            cur.execute(self._q("SELECT id FROM collections WHERE name = ?" + self.lock_clause),
                        (collection,))
            row = cur.fetchone()
            if row is None:
                return False
            cur.execute(self._q("DELETE FROM role_heads WHERE collection_id = ?"), (row[0],))
            cur.execute(self._q("DELETE FROM files WHERE collection_id = ?"), (row[0],))
            cur.execute(self._q("DELETE FROM collections WHERE id = ?"), (row[0],))
            if audit is not None:
                self._append_audits(cur, [audit])
            self._announce(cur, [collection])
            return True

        deleted = self._run(work, write=True)
        if deleted:
            self._changed(collection)
        return deleted

    # --- audit chain --------------------------------------------------------------------

    def _append_audits(self, cur: Cursor, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append `entries`, in order, after the chain's head, inside the caller's write transaction.

        Locking the single head row serialises appends across processes and hosts
        (SQLite write transactions are serialised already), so the chain stays linear.
        """
        if not entries:
            return []
        cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1" + self.lock_clause)
        row = cur.fetchone()
        if row is None:
            raise RuntimeError("the audit chain has no head row: run the migrations")
        seq, head = int(row[0]), row[1]
        records = []
        for entry in entries:
            seq += 1
            record = seal(entry, seq, _now().isoformat(timespec="microseconds"), head)
            records.append(record)
            head = record.hash
        self._insert_rows(cur, "audit_log", ("seq", "recorded_at", "action", "collection", "subject", "client",
                                             "details", "prev_hash", "hash"),
                          [(r.seq, r.recorded_at, r.action, r.collection, r.subject, r.client, r.details,
                            r.prev_hash, r.hash) for r in records])
        cur.execute(self._q("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"), (seq, head))
        return records

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        return self._run(lambda cur: self._append_audits(cur, [entry])[0], write=True)

    def audit_records(self, collection: str | None = None, since: int = 0, limit: int = 100) -> list[AuditRecord]:
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ValueError(f"since must be an integer >= 0, not {since!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, not {limit!r}")
        sql = ("SELECT seq, recorded_at, action, collection, subject, client, details, prev_hash, hash"
               " FROM audit_log WHERE seq > ?")
        params: tuple[Any, ...] = (since,)
        if collection is not None:
            _check_name("collection", collection)
            sql, params = sql + " AND collection = ?", (since, collection)
        sql += " ORDER BY seq LIMIT ?"

        def work(cur: Cursor) -> list[AuditRecord]:
            cur.execute(self._q(sql), (*params, limit))
            return [AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
                    for r in cur.fetchall()]

        return self._run(work, write=False)

    def audit_head(self) -> tuple[int, str]:
        def work(cur: Cursor) -> tuple[int, str]:
            cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
            row = cur.fetchone()
            return (0, GENESIS_HASH) if row is None else (int(row[0]), row[1])

        return self._run(work, write=False)

    def _lock_collection(self, cur: Cursor, collection: str, now: datetime) -> int:
        """Lock the collection's row until the transaction ends (creating it first if needed)."""
        while True:
            cur.execute(self._q("SELECT id FROM collections WHERE name = ?" + self.lock_clause),
                        (collection,))
            row = cur.fetchone()
            if row is not None:
                return int(row[0])
            # Missing, or removed by a delete_collection we waited for: (re)create it, then lock
            # whichever row won if another commit created it at the same moment.
            cur.execute(self._q("INSERT INTO collections (name, created_at) VALUES (?, ?)"
                                " ON CONFLICT (name) DO NOTHING"), (collection, self._encode_time(now)))

    def _stored_file(self, row: Sequence[Any]) -> StoredFile:
        role, version, data, digest, length, created_at = row
        return StoredFile(role=role, version=int(version), data=bytes(data), sha256=digest,
                          length=int(length), created_at=self._decode_time(created_at))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parts(items: Sequence[T], per: int = 0) -> list[Sequence[T]]:
    """`items` in slices of at most `per` (default `_NAMES_PER_STATEMENT`), to bind per statement."""
    per = per or _NAMES_PER_STATEMENT
    return [items[i:i + per] for i in range(0, len(items), per)]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" * len(items))


def _stale(collection: str, stale: dict[str, dict[str, int]]) -> VersionConflictError:
    return VersionConflictError(
        f"collection {collection!r} changed since it was read: "
        + ", ".join(f"{r} is at version {s['current']}, not {s['expected']}" for r, s in sorted(stale.items())),
        detail=stale)


def _duplicate(collection: str, role: str, version: int) -> VersionConflictError:
    return VersionConflictError(f"{collection!r} already has version {version} of role {role!r}",
                                detail={"role": role, "version": version})


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, not {name!r}")


def _check_version(version: int, minimum: int = 1) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < minimum:
        raise ValueError(f"version must be an integer >= {minimum}, not {version!r}")


def _check_commit(c: Commit) -> None:
    _check_name("collection", c.collection)
    if not c.files:
        raise ValueError("commit needs at least one file")
    seen: set[tuple[str, int]] = set()
    for f in c.files:
        _check_name("role", f.role)
        _check_version(f.version)
        if not isinstance(f.data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data of {f.role} v{f.version} must be bytes")
        if (f.role, f.version) in seen:
            raise ValueError(f"version {f.version} of role {f.role!r} appears twice in one commit")
        if f.online_expires is not None and (f.role not in ONLINE_ROLES or f.online_expires.tzinfo is None):
            raise ValueError(f"online_expires is for timestamp and snapshot only, timezone-aware:"
                             f" {f.role} v{f.version}")
        seen.add((f.role, f.version))
    for role, version in c.expected.items():
        _check_name("role", role)
        _check_version(version, minimum=0)

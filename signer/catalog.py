"""`CatalogKeyStore`: the part of every key store that lives in SQL, shared by all replicas — the key
catalog (public halves, collection, role, state), the per-key version high-water mark and the
append-only signature audit. Subclasses only say where private keys live (`_generate`, `_load_signer`,
`_destroy`): wrapped in the same row (`SqlKeyStore`) or inside a PKCS#11 token (`Pkcs11KeyStore`).
"""

from __future__ import annotations

import abc
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from securesystemslib.signer import Signer, SSlibKey

from tufnotary.signer.claims import Claim, Decision, KeyState, decide
from tufnotary.signer.errors import (
    KeyNotFoundError,
    KeyRetiredError,
    KeyStoreUnavailableError,
    KeyUnwrapError,
    SignerError,
)
from tufnotary.signer.keystore import (
    DEFAULT_ALGORITHM,
    AuditEntry,
    KeyRecord,
    KeyStore,
    check_algorithm,
    check_collection,
    check_role,
)
from tufnotary.signer.sqldb import Database, Migration, json_param, now_iso

log = logging.getLogger(__name__)

SIGNER_CACHE_SIZE = 10_000  # unwrapped signers kept per process (least recently used dropped first)
_ROWS_PER_STATEMENT = 200  # multi-row statements stay far below SQLite's and libpq's parameter limits

# Applied in order, each at most once, recorded in schema_migrations. Never edit a shipped entry.
MIGRATIONS: Sequence[Migration] = (
    (
        1,
        (
            """CREATE TABLE signer_keys (
                key_id TEXT PRIMARY KEY,
                collection TEXT NOT NULL,
                role TEXT NOT NULL,
                keytype TEXT NOT NULL,
                scheme TEXT NOT NULL,
                public_value TEXT NOT NULL,
                wrapped_private TEXT NOT NULL,
                kdf_salt TEXT NOT NULL,
                passphrase_alias TEXT NOT NULL,
                active INTEGER NOT NULL DEFAULT 1,
                created_at TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX signer_keys_one_active ON signer_keys (collection, role) WHERE active = 1",
            "CREATE INDEX signer_keys_collection ON signer_keys (collection, created_at)",
        ),
    ),
    (2, ("ALTER TABLE signer_keys ADD COLUMN max_signed_version INTEGER NOT NULL DEFAULT 0",)),
    (
        3,
        (
            # Lifecycle state replaces `active` (kept in step: active = 1 exactly when state = 'active').
            "ALTER TABLE signer_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'active'",
            "UPDATE signer_keys SET state = 'retired' WHERE active = 0",
            "DROP INDEX signer_keys_one_active",
            "CREATE UNIQUE INDEX signer_keys_one_active ON signer_keys (collection, role) WHERE state = 'active'",
            "CREATE UNIQUE INDEX signer_keys_one_pending ON signer_keys (collection, role) WHERE state = 'pending'",
            # Where the private half lives. 'jwe': wrapped_private/kdf_salt/passphrase_alias hold the JWE,
            # its scrypt salt and the passphrase alias. 'pkcs11': wrapped_private holds the token
            # object's CKA_ID (hex) and passphrase_alias the token label; no private bytes in SQL.
            "ALTER TABLE signer_keys ADD COLUMN custody TEXT NOT NULL DEFAULT 'jwe'",
            {
                "sqlite": "CREATE TABLE signer_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, signed_at TEXT NOT NULL,"
                " key_id TEXT NOT NULL, collection TEXT NOT NULL, role TEXT NOT NULL, version INTEGER NOT NULL,"
                " payload_sha256 TEXT NOT NULL, client_subject TEXT NOT NULL)",
                "postgres": "CREATE TABLE signer_audit (id BIGSERIAL PRIMARY KEY, signed_at TEXT NOT NULL,"
                " key_id TEXT NOT NULL, collection TEXT NOT NULL, role TEXT NOT NULL, version BIGINT NOT NULL,"
                " payload_sha256 TEXT NOT NULL, client_subject TEXT NOT NULL)",
            },
            "CREATE INDEX signer_audit_key ON signer_audit (key_id, id)",
            "CREATE INDEX signer_audit_collection ON signer_audit (collection, id)",
            {
                "sqlite": "CREATE TRIGGER signer_audit_no_update BEFORE UPDATE ON signer_audit"
                " BEGIN SELECT RAISE(ABORT, 'signer_audit is append-only'); END",
                "postgres": "CREATE FUNCTION signer_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'signer_audit is append-only'; END $$",
            },
            {
                "sqlite": "CREATE TRIGGER signer_audit_no_delete BEFORE DELETE ON signer_audit"
                " BEGIN SELECT RAISE(ABORT, 'signer_audit is append-only'); END",
                "postgres": "CREATE TRIGGER signer_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
                " ON signer_audit FOR EACH STATEMENT EXECUTE FUNCTION signer_audit_append_only()",
            },
        ),
    ),
    # PostgreSQL's INTEGER is 32-bit: high-water marks take the signed 64-bit versions the policy allows
    # (SQLite's INTEGER already is 64-bit).
    (4, ({"sqlite": "SELECT 1", "postgres": "ALTER TABLE signer_keys ALTER COLUMN max_signed_version TYPE BIGINT"},)),
)

_PUBLIC_COLUMNS = "key_id, collection, role, keytype, scheme, public_value, state, max_signed_version"
_AUDIT_COLUMNS = "signed_at, key_id, collection, role, version, payload_sha256, client_subject"


@dataclass(frozen=True)
class Material:
    """Where a private key is, as stored in its catalog row (see migration 3)."""

    wrapped_private: str
    kdf_salt: str
    passphrase_alias: str


def _record(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(*row[:6], state=row[6], max_signed_version=int(row[7]))


class CatalogKeyStore(KeyStore):
    """The SQL half of a key store (see the module docstring)."""

    custody: str = ""

    def __init__(self, database_url: str, *, max_connections: int = 16) -> None:
        self._db = Database(database_url, max_connections=max_connections)
        # Unwrapping (JWE, PEM parsing) cost more than signing. The private key is in memory while it
        # signs anyway; a cached signer is never logged and is dropped when this store retires, deletes
        # or rotates its key out. Replicas: record_signatures, which precedes every signature, refuses a
        # key retired elsewhere (and then drops it here too).
        self._signers: OrderedDict[str, Signer] = OrderedDict()
        self._signers_lock = threading.Lock()
        self._signers_generation = 0  # bumped by every drop: a load that raced one is not cached

    # -- where private keys live ------------------------------------------------------------------

    @abc.abstractmethod
    def _generate(self, algorithm: str) -> tuple[SSlibKey, Material]:
        """A new key pair; only the public half and the material reference come back."""

    @abc.abstractmethod
    def _load_signer(self, record: KeyRecord, material: Material) -> Signer:
        """A `Signer` for the stored key (`KeyUnwrapError` naming the key if it cannot be used)."""

    def _destroy(self, key_id: str, material: Material) -> None:
        """Destroy the private half held outside SQL (after its row was retired or deleted)."""

    def _ping_custody(self) -> None:
        """Raise `KeyStoreUnavailableError` if the private key custody (e.g. the token) is unreachable."""

    # -- the KeyStore contract ----------------------------------------------------------------------

    def migrate(self) -> None:
        self._db.migrate(MIGRATIONS)

    def create_key(self, collection: str, role: str, algorithm: str = DEFAULT_ALGORITHM) -> KeyRecord:
        check_collection(collection)
        check_role(role)
        algorithm = check_algorithm(algorithm)
        existing = self.get_active(collection, role)
        if existing is not None:
            return existing
        self._insert_new(collection, role, algorithm, "active", 0)
        winner = self.get_active(collection, role)
        if winner is None:
            raise KeyStoreUnavailableError(f"the key for {collection} {role} was deleted while being created; retry")
        return winner

    def rotate_key(self, collection: str, role: str, algorithm: str = DEFAULT_ALGORITHM) -> KeyRecord:
        check_collection(collection)
        check_role(role)
        algorithm = check_algorithm(algorithm)
        active = self.get_active(collection, role)
        if active is None:
            return self.create_key(collection, role, algorithm)
        pending = self._get_pending(collection, role)
        if pending is None:
            self._insert_new(collection, role, algorithm, "pending", active.max_signed_version)
            pending = self._get_pending(collection, role)
        if pending is None:
            raise KeyStoreUnavailableError(f"the pending key for {collection} {role} changed while being created; retry")
        return pending

    def get_active(self, collection: str, role: str) -> KeyRecord | None:
        return self._get_in_state(collection, role, "active")

    def get_keys(self, key_ids: Iterable[str]) -> dict[str, KeyRecord]:
        ids = sorted(set(key_ids))
        found: dict[str, KeyRecord] = {}
        for part in _parts(ids):
            rows = self._db.select(
                f"SELECT {_PUBLIC_COLUMNS} FROM signer_keys WHERE key_id IN ({_marks(part)})", part
            )
            found.update((row[0], _record(row)) for row in rows)
        return found

    def list_keys(self, collection: str) -> list[KeyRecord]:
        check_collection(collection)
        rows = self._db.select(
            f"SELECT {_PUBLIC_COLUMNS} FROM signer_keys WHERE collection = ? ORDER BY created_at, key_id",
            (collection,),
        )
        return [_record(row) for row in rows]

    def signer_for(self, key_id: str) -> Signer:
        signer = self.signers_for([key_id])[key_id]
        if isinstance(signer, Exception):
            raise signer
        return signer

    def signers_for(self, key_ids: Iterable[str]) -> dict[str, Signer | Exception]:
        # The cached signers under one lock acquisition for the whole batch; the others read in one query.
        found: dict[str, Signer | Exception | None] = {}
        with self._signers_lock:
            for key_id in key_ids:
                if key_id not in found:
                    signer = found[key_id] = self._signers.get(key_id)
                    if signer is not None:
                        self._signers.move_to_end(key_id)
            generation = self._signers_generation
        missing = [key_id for key_id, signer in found.items() if signer is None]
        if missing:
            loaded = self._load(missing)
            found.update(loaded)
            with self._signers_lock:
                if generation == self._signers_generation:  # no key was dropped meanwhile
                    self._signers.update((k, s) for k, s in loaded.items() if not isinstance(s, Exception))
                    while len(self._signers) > SIGNER_CACHE_SIZE:
                        self._signers.popitem(last=False)
        return found  # type: ignore[return-value]  # every None was replaced

    def _load(self, key_ids: Sequence[str]) -> dict[str, Signer | Exception]:
        """A signer for each key, or what refuses it: unknown, retired, held in another custody, or not unwrappable."""
        rows: dict[str, tuple[Any, ...]] = {}
        try:
            for part in _parts(key_ids):
                rows.update((row[0], row) for row in self._db.select(
                    f"SELECT {_PUBLIC_COLUMNS}, wrapped_private, kdf_salt, passphrase_alias, custody"
                    f" FROM signer_keys WHERE key_id IN ({_marks(part)})",
                    part,
                ))
        except Exception as e:  # noqa: BLE001 - e.g. the database is unreachable: every key reports it
            return dict.fromkeys(key_ids, e)
        loaded: dict[str, Signer | Exception] = {}
        for key_id in key_ids:
            try:
                loaded[key_id] = self._signer_of(key_id, rows.get(key_id))
            except Exception as e:  # noqa: BLE001 - reported for this key only
                loaded[key_id] = e
        return loaded

    def _signer_of(self, key_id: str, row: tuple[Any, ...] | None) -> Signer:
        if row is None:
            raise KeyNotFoundError(f"the signer holds no key {key_id}")
        record = _record(row[:8])
        if record.state == "retired":
            raise KeyRetiredError(f"key {key_id} is retired: it never signs again")
        if row[11] != self.custody:
            raise KeyUnwrapError(f"key {key_id} is held in {row[11]!r} custody, which this signer is not configured for")
        return self._load_signer(record, Material(*row[8:11]))

    def record_signatures(self, claims: Sequence[Claim], client_subject: str) -> list[SignerError | None]:
        if not claims:
            return []
        with self._db.transaction() as cur:
            rows = self._lock_claimed(cur, sorted({claim.key_id for claim in claims}))
            decision = decide(rows, claims)
            # Only a rotation retires a key here: its material is read then, not with every claim.
            material = self._material(cur, decision.retired) if decision.retired else {}
            self._db.execute_all(cur, self._claim_writes(decision, material, client_subject))
        refused = {claim.key_id for claim, outcome in zip(claims, decision.outcomes)
                   if outcome is not None and isinstance(outcome, (KeyNotFoundError, KeyRetiredError))}
        self._forget(*refused, *decision.retired)  # gone or retired, here or by another replica
        for key_id in decision.promoted:
            pair = rows[key_id][1:3]
            retired = [r for r in decision.retired if rows[r][1:3] == pair]
            log.info("rotated collection=%s role=%s active key_id=%s retired key_id=%s",
                     *pair, key_id, retired[0] if retired else "-")
        for key_id in decision.retired:
            self._destroy_quietly(key_id, material[key_id])
        return decision.outcomes

    def retire_key(self, key_id: str) -> bool:
        with self._db.transaction() as cur:
            row = self._lock_row(cur, "key_id = ?", (key_id,))
            if row is None or row[3] == "retired":
                return False
            self._db.execute(
                cur,
                "UPDATE signer_keys SET state = 'retired', active = 0, wrapped_private = ?, kdf_salt = '' WHERE key_id = ?",
                (self._retired_material(row[5]), key_id),
            )
        self._forget(key_id)
        self._destroy_quietly(key_id, Material(row[5], row[6], row[7]))
        return True

    def delete_key(self, key_id: str) -> bool:
        with self._db.transaction() as cur:
            row = self._lock_row(cur, "key_id = ?", (key_id,))
            if row is None:
                return False
            self._db.execute(cur, "DELETE FROM signer_keys WHERE key_id = ?", (key_id,))
        self._forget(key_id)
        if row[3] != "retired":
            self._destroy_quietly(key_id, Material(row[5], row[6], row[7]))
        return True

    def audit_entries(self, key_id: str | None = None, collection: str | None = None) -> list[AuditEntry]:
        where, params = [], []
        if key_id is not None:
            where.append("key_id = ?")
            params.append(key_id)
        if collection is not None:
            where.append("collection = ?")
            params.append(collection)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.select(f"SELECT {_AUDIT_COLUMNS} FROM signer_audit{clause} ORDER BY id", params)
        return [AuditEntry(*row[:4], int(row[4]), *row[5:]) for row in rows]  # type: ignore[misc]

    def ping(self) -> None:
        self._db.select("SELECT 1")
        self._ping_custody()

    def close(self) -> None:
        self._forget_all()
        self._db.close()

    # -- helpers ----------------------------------------------------------------------------------------

    def _retired_material(self, wrapped_private: str) -> str:
        """What a retired row keeps: nothing of a wrapped key; the token object id (already destroyed)."""
        return wrapped_private if self.custody == "pkcs11" else ""

    def _insert_new(self, collection: str, role: str, algorithm: str, state: str, highest: int) -> None:
        key, material = self._generate(algorithm)
        try:
            with self._db.transaction() as cur:
                self._db.execute(
                    cur,
                    "INSERT INTO signer_keys (key_id, collection, role, keytype, scheme, public_value, wrapped_private,"
                    " kdf_salt, passphrase_alias, active, created_at, max_signed_version, state, custody)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key.keyid, collection, role, key.keytype, key.scheme, key.keyval["public"],
                     material.wrapped_private, material.kdf_salt, material.passphrase_alias,
                     1 if state == "active" else 0, now_iso(), highest, state, self.custody),
                )
        except self._db.integrity_error:
            # Another caller stored the pair's key first; theirs wins, ours is destroyed.
            self._destroy_quietly(key.keyid, material)

    def _get_in_state(self, collection: str, role: str, state: str) -> KeyRecord | None:
        check_collection(collection)
        check_role(role)
        rows = self._db.select(
            f"SELECT {_PUBLIC_COLUMNS} FROM signer_keys WHERE collection = ? AND role = ? AND state = ?",
            (collection, role, state),
        )
        return _record(rows[0]) if rows else None

    def _get_pending(self, collection: str, role: str) -> KeyRecord | None:
        return self._get_in_state(collection, role, "pending")

    def _claim_writes(
        self, decision: Decision, material: Mapping[str, Material], client_subject: str
    ) -> list[tuple[str, Sequence[Any]]]:
        """The statements that make `decision` durable, in the order `Decision` gives."""
        writes: list[tuple[str, Sequence[Any]]] = [
            ("UPDATE signer_keys SET state = 'retired', active = 0, wrapped_private = ?, kdf_salt = '' WHERE key_id = ?",
             (self._retired_material(material[key_id].wrapped_private), key_id))
            for key_id in decision.retired
        ]
        # The accepted claims travel as one JSON parameter, however many there are, read by two statements: each
        # key's new mark is its highest accepted version (a key's accepted versions only go up), and the audit rows
        # take the collection and role from the key's row.
        if not decision.accepted:
            return writes  # nothing retired or promoted either
        accepted = self._db.json_rows([("key_id", "text"), ("version", "integer"), ("payload_sha256", "text")])
        claims = json_param([[claim.key_id, claim.version, claim.payload_sha256] for claim in decision.accepted])
        writes.append((
            "UPDATE signer_keys SET max_signed_version = m.version FROM (SELECT key_id, MAX(version) AS version"
            f" FROM {accepted} AS a GROUP BY key_id) AS m WHERE signer_keys.key_id = m.key_id",
            [claims],
        ))
        for part in _parts(decision.promoted):
            writes.append((f"UPDATE signer_keys SET state = 'active', active = 1 WHERE key_id IN ({_marks(part)})", part))
        writes.append((
            f"INSERT INTO signer_audit ({_AUDIT_COLUMNS}) SELECT ?, a.key_id, k.collection, k.role, a.version,"
            f" a.payload_sha256, ? FROM {accepted} AS a JOIN signer_keys AS k ON k.key_id = a.key_id"
            " ORDER BY a.ordinal",
            [now_iso(), client_subject, claims],
        ))
        return writes

    def _forget(self, *key_ids: str) -> None:
        """Drop cached signers: their keys were retired, deleted or found gone."""
        if not key_ids:
            return
        with self._signers_lock:
            self._signers_generation += 1
            for key_id in key_ids:
                self._signers.pop(key_id, None)

    def _forget_all(self) -> None:
        with self._signers_lock:
            self._signers_generation += 1
            self._signers.clear()

    def _lock_claimed(self, cur: Any, key_ids: Sequence[str]) -> dict[str, KeyState]:
        """The rows of `key_ids` and the active row of the pair of each pending one, locked in key id order in
        one statement (concurrent claims cannot deadlock), by key id."""
        claimed = self._db.json_rows([("key_id", "text")])
        ids = json_param([[key_id] for key_id in key_ids])
        self._db.execute(
            cur,
            "SELECT key_id, collection, role, state, max_signed_version"
            f" FROM signer_keys WHERE key_id IN (SELECT key_id FROM {claimed} AS c) OR (state = 'active' AND collection IN"
            f" (SELECT collection FROM signer_keys WHERE key_id IN (SELECT key_id FROM {claimed} AS p) AND state = 'pending'))"
            f" ORDER BY key_id{self._db.for_update}",
            [ids, ids],
        )
        return {row[0]: KeyState(row[0], row[1], row[2], row[3], int(row[4])) for row in cur.fetchall()}

    def _material(self, cur: Any, key_ids: Sequence[str]) -> dict[str, Material]:
        """Where the private halves of `key_ids` are, from rows this transaction already locked."""
        found: dict[str, Material] = {}
        for part in _parts(key_ids):
            self._db.execute(
                cur,
                "SELECT key_id, wrapped_private, kdf_salt, passphrase_alias FROM signer_keys"
                f" WHERE key_id IN ({_marks(part)})",
                part,
            )
            found.update((row[0], Material(row[1], row[2], row[3])) for row in cur.fetchall())
        return found

    def _lock_row(self, cur: Any, where: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        self._db.execute(
            cur,
            "SELECT key_id, collection, role, state, max_signed_version, wrapped_private, kdf_salt, passphrase_alias"
            f" FROM signer_keys WHERE {where}{self._db.for_update}",
            params,
        )
        row = cur.fetchone()
        return tuple(row) if row else None

    def _destroy_quietly(self, key_id: str, material: Material) -> None:
        try:
            self._destroy(key_id, material)
        except Exception as e:  # the row is gone or retired either way; an orphan object cannot sign for us
            log.warning("could not destroy the private half of key_id=%s: %s", key_id, type(e).__name__)


def _parts(items: Sequence[Any]) -> list[Sequence[Any]]:
    """`items` in slices of at most `_ROWS_PER_STATEMENT`."""
    return [items[i:i + _ROWS_PER_STATEMENT] for i in range(0, len(items), _ROWS_PER_STATEMENT)]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" * len(items))

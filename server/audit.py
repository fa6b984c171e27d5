"""The audit log: what each accepted change wrote and who made it, in one hash chain.

Pure: records, their hashes, the per-target changes of a targets role, and chain verification.
The store appends records in the same transaction as the change they describe (`storage/sql.py`).

Every record carries the hash of the record before it, and its own hash covers every field,
so editing a row breaks its own hash, and deleting one leaves a gap in `seq` and a `prev_hash`
that matches nothing. One chain covers every collection: the store serialises appends on one
head row (a short lock at commit time, after validation and signing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

GENESIS_HASH = "0" * 64
ACTIONS = ("publish", "renew", "key-create", "key-rotate", "delete")
TOP_LEVEL_NON_TARGETS = ("root", "snapshot", "timestamp")


@dataclass(frozen=True)
class AuditEntry:
    """A change to record, before the store gives it its place in the chain."""

    action: str
    collection: str
    subject: str
    client: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")


@dataclass(frozen=True)
class AuditRecord:
    """One stored record of the chain."""

    seq: int
    recorded_at: str  # ISO 8601, UTC, microseconds: stored as text exactly as hashed
    action: str
    collection: str
    subject: str
    client: str | None
    details: str  # canonical JSON
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        return record_hash(self.seq, self.recorded_at, self.action, self.collection, self.subject,
                           self.client, self.details, self.prev_hash)

    def to_dict(self) -> dict[str, Any]:
        try:
            details: Any = json.loads(self.details)
        except ValueError:
            details = self.details
        return {"seq": self.seq, "time": self.recorded_at, "action": self.action,
                "collection": self.collection, "subject": self.subject, "client": self.client,
                "details": details, "prev_hash": self.prev_hash, "hash": self.hash}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(seq: int, recorded_at: str, action: str, collection: str, subject: str,
                client: str | None, details: str, prev_hash: str) -> str:
    """SHA-256 over the canonical JSON of the fields, `details` entering as its own SHA-256 (a
    publish of 100,000 targets has megabytes of details: hash them once, not re-encoded)."""
    details_digest = hashlib.sha256(details.encode()).hexdigest()
    fields = [seq, recorded_at, action, collection, subject, client, details_digest, prev_hash]
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def seal(entry: AuditEntry, seq: int, recorded_at: str, prev_hash: str) -> AuditRecord:
    """The record of `entry` at position `seq` after the record hashed `prev_hash`.

    `details` is stored as the exact text hashed, so verification never re-encodes it."""
    details = json.dumps(entry.details, separators=(",", ":"), ensure_ascii=False)
    digest = record_hash(seq, recorded_at, entry.action, entry.collection, entry.subject,
                         entry.client, details, prev_hash)
    return AuditRecord(seq, recorded_at, entry.action, entry.collection, entry.subject, entry.client,
                       details, prev_hash, digest)


@dataclass(frozen=True)
class ChainReport:
    """The result of checking a chain: `broken_at` is None when every record checks."""

    records: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(records: Iterable[AuditRecord], head: tuple[int, str] | None = None) -> ChainReport:
    """Check `records` (in seq order, from the first) link up and hash right, and end at `head`.

    Reports the first record that breaks: an edited record fails its own hash; a deleted
    record leaves a gap in seq; a replaced one has a prev_hash that is not its predecessor's.
    """
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    for record in records:
        count += 1
        if record.seq != expected_seq:
            return ChainReport(count - 1, expected_seq - 1, prev, expected_seq,
                               f"record {expected_seq} is missing (the next one is {record.seq}): deleted")
        if record.prev_hash != prev:
            return ChainReport(count - 1, record.seq - 1, prev, record.seq,
                               f"record {record.seq} does not link to record {record.seq - 1}: "
                               "one of them was changed or replaced")
        if record.computed_hash() != record.hash:
            return ChainReport(count - 1, record.seq - 1, prev, record.seq,
                               f"record {record.seq} does not match its hash: it was edited")
        expected_seq, prev = record.seq + 1, record.hash
    if head is not None and head != (expected_seq - 1, prev):
        return ChainReport(count, expected_seq - 1, prev, expected_seq - 1 if head[0] < expected_seq - 1
                           else expected_seq,
                           f"the chain ends at record {expected_seq - 1} but its head says record {head[0]} "
                           f"({head[1][:16]}…): records were deleted from the end, or the head was changed")
    return ChainReport(count, expected_seq - 1, prev)


def _targets_of(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        targets = json.loads(data)["signed"]["targets"]
    except (ValueError, KeyError, TypeError):
        return {}
    return targets if isinstance(targets, dict) else {}


def target_changes(old: bytes | None, new: bytes) -> list[dict[str, Any]]:
    """Per-target change between two versions of a targets role: added, removed, changed."""
    before, after = _targets_of(old), _targets_of(new)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        o, n = before.get(path), after.get(path)
        if o == n:
            continue
        change: dict[str, Any] = {"path": path,
                                  "change": "added" if o is None else "removed" if n is None else "changed"}
        for label, info in (("old", o), ("new", n)):
            if isinstance(info, dict):
                change[f"{label}_sha256"] = (info.get("hashes") or {}).get("sha256")
                change[f"{label}_length"] = info.get("length")
        changes.append(change)
    return changes


class Replaced(Protocol):
    """What `publish_details` needs of a stored file a publish replaces (storage's StoredFile)."""

    version: int

    @property
    def data(self) -> bytes: ...


def publish_details(previous: Mapping[str, Replaced], written: Mapping[str, tuple[int, bytes]]) -> dict[str, Any]:
    """What a publish wrote: role -> version, and the target changes of every targets role.

    `previous` maps role -> the stored file it replaces (absent: a new role); `written` role ->
    (version, bytes). Only the bytes of replaced targets roles are read (a stored file may load
    them lazily), never those of snapshot or timestamp.
    """
    details: dict[str, Any] = {"roles": {role: version for role, (version, _) in sorted(written.items())}}
    targets = {}
    for role, (_, data) in sorted(written.items()):
        if role in TOP_LEVEL_NON_TARGETS:
            continue
        changes = target_changes(previous[role].data if role in previous else None, data)
        if changes:
            targets[role] = changes
    if targets:
        details["targets"] = targets
    previous_versions = {role: previous[role].version for role in written if role in previous}
    if previous_versions:
        details["previous"] = previous_versions
    return details

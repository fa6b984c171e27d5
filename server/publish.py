"""Publishing: validate an upload, build and sign the online roles, store it all in one commit.

This is the I/O shell around `validation.validate_update`: it reads the stored state, asks the
signer (over gRPC) for timestamp and snapshot signatures, and commits every file at once, so a
publish is either fully stored or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol

from securesystemslib.signer import Key, Signature
from tuf.api.metadata import MetaFile, Metadata, Root, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from tufnotary.server.audit import AuditEntry, publish_details
from tufnotary.server.canonical import signed_bytes
from tufnotary.server.config import ServerConfig
from tufnotary.server.errors import CommitInDoubtError, OnlineKeyError, StorageError, VersionConflictError
from tufnotary.server.storage import MetaStore, NewFile, StoredFile
from tufnotary.server.validation import validate_update

if TYPE_CHECKING:  # the shapes of RemoteSigner's answers; publishing does not depend on gRPC
    from tufnotary.server.remote_signer import Pending, RemoteKeyInfo

ONLINE_ROLES = ("timestamp", "snapshot")
SERIALIZER = JSONSerializer(compact=True)


class OnlineSigner(Protocol):
    """What publishing needs from the signer (RemoteSigner implements it)."""

    def get_public_key(self, collection: str, role: str) -> Key | None: ...

    def list_key_info(self, collection: str) -> list[RemoteKeyInfo]: ...

    def start_list_key_info(self, collection: str) -> Pending[list[RemoteKeyInfo]]: ...

    def sign(self, key: Key, payload: bytes, collection: str, role: str) -> Signature: ...


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def online_key(signer: OnlineSigner, collection: str, root: Root, role: str) -> Key | None:
    """The signer's key for `role` that the root lists, if the root lets the server sign alone."""
    return choose_online_key(signer.list_key_info(collection), root, role)


def choose_online_key(keys: Sequence[RemoteKeyInfo], root: Root, role: str) -> Key | None:
    """Of the signer's `keys` of a collection, the one for `role` that the root lists, if the root
    lets the server sign alone.

    During a rotation the signer holds an active and a pending key: the root decides. Once a root
    listing the pending key is published, signing with it makes it the signer's active key.
    """
    listed = root.roles[role]
    if listed.threshold != 1:
        return None
    for state in ("active", "pending"):
        for info in keys:
            if info.role == role and info.state == state and info.key.keyid in listed.keyids:
                return info.key
    return None


def _signing_key(keys: Sequence[RemoteKeyInfo], root: Root, role: str) -> Key:
    """`choose_online_key`, or the refusal that explains what the root must list."""
    key = choose_online_key(keys, root, role)
    if key is None:
        listed = root.roles[role]
        raise OnlineKeyError(
            f"the root does not let the server sign {role}: list the server's {role} key (from {role}.key) "
            f"in the root's {role} role, with threshold 1"
            + ("" if role == "timestamp" else ", or upload a snapshot signed with your own key"),
            {"role": role, "root_keys": listed.keyids, "threshold": listed.threshold},
        )
    return key


def _sign_online(signer: OnlineSigner, collection: str, key: Key, md: Metadata, role: str) -> bytes:
    """Sign `md` with the server-managed `key` of `role` (one the root lists: `_signing_key`)."""
    md.signatures.clear()
    signature = signer.sign(key, signed_bytes(md), collection=collection, role=role)
    md.signatures[signature.keyid] = signature
    return md.to_bytes(SERIALIZER)


def _sign_next(
    signer: OnlineSigner, collection: str, key: Key, role: str, version: int, build: Callable[[int], Metadata]
) -> tuple[int, bytes]:
    """Sign `build(version)`. If the signer's key already signed that version or a later one and the
    store does not have it (a crash or failed commit between signing and storing), move past it once:
    the signer never signs a version twice, and TUF allows gaps. Without this, the collection would
    refuse every publish and renewal until its timestamp expired."""
    try:
        return version, _sign_online(signer, collection, key, build(version), role)
    except VersionConflictError as e:
        moved = version_past(e, version)
        if moved is None:
            raise
        return moved, _sign_online(signer, collection, key, build(moved), role)


def version_past(conflict: VersionConflictError, version: int) -> int | None:
    """The version to sign instead of `version` after the signer refused it because its key already
    signed that version or a later one (see `_sign_next`); None if the refusal was something else."""
    highest = (conflict.detail or {}).get("highest_signed_version")
    if not isinstance(highest, int) or highest < version:
        return None
    return highest + 1


def build_snapshot(version: int, expires: datetime, targets_versions: Mapping[str, int]) -> Metadata:
    meta = {f"{role}.json": MetaFile(version=v) for role, v in sorted(targets_versions.items())}
    return Metadata(Snapshot(version=version, expires=expires, meta=meta))


def build_timestamp(version: int, expires: datetime, snapshot_bytes: bytes, snapshot_version: int) -> Metadata:
    snapshot_meta = MetaFile(
        version=snapshot_version,
        length=len(snapshot_bytes),
        hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()},
    )
    return Metadata(Timestamp(version=version, expires=expires, snapshot_meta=snapshot_meta))


def publish(
    store: MetaStore,
    signer: OnlineSigner,
    config: ServerConfig,
    collection: str,
    uploads: Mapping[str, bytes],
    now: datetime | None = None,
    audit: Callable[[dict], AuditEntry] | None = None,
) -> dict[str, int]:
    """Validate and store `uploads` (role -> bytes); return the stored version of each role written.

    `audit(details)` makes the audit entry stored in the same transaction (details: the roles and
    versions written, the versions they replace, and each targets role's per-target changes)."""
    now = now or utcnow()
    # The signer's keys are fetched while the store is read and the upload validated.
    keys = signer.start_list_key_info(collection)
    try:
        # Validation always reads the root and (unless uploaded) targets; other roles load if needed.
        current = store.current(collection, preload=("root", "targets"))
        update = validate_update(current, uploads, now, config.validation)
        server_signs_snapshot = "snapshot" not in update.uploaded
        listing = keys.result()
    finally:
        keys.cancel()
    root = update.root.signed
    # Both keys are checked before either signs: a refusal leaves the signer's state alone.
    snapshot_key = _signing_key(listing, root, "snapshot") if server_signs_snapshot else None
    timestamp_key = _signing_key(listing, root, "timestamp")
    files = [NewFile(role, md.signed.version, uploads[role]) for role, md in update.uploaded.items()]

    if snapshot_key is None:
        snapshot_version = update.uploaded["snapshot"].signed.version
        snapshot_bytes = uploads["snapshot"]
    else:
        snapshot_version, snapshot_bytes = _sign_next(
            signer, collection, snapshot_key, "snapshot", update.snapshot_version + 1,
            lambda v: build_snapshot(v, now + config.snapshot_expiry, update.targets_versions),
        )
        files.append(NewFile("snapshot", snapshot_version, snapshot_bytes, online_expires=now + config.snapshot_expiry))

    timestamp_version, timestamp_bytes = _sign_next(
        signer, collection, timestamp_key, "timestamp", update.timestamp_version + 1,
        lambda v: build_timestamp(v, now + config.timestamp_expiry, snapshot_bytes, snapshot_version),
    )
    files.append(NewFile("timestamp", timestamp_version, timestamp_bytes, online_expires=now + config.timestamp_expiry))

    details = publish_details(replaced(current, files), {f.role: (f.version, f.data) for f in files})
    entry = audit(details) if audit else AuditEntry("publish", collection, "unknown", None, details)
    try:
        store.commit(collection, files, expected={role: f.version for role, f in current.items()}, audit=entry)
    except CommitInDoubtError:
        if not _stored(store, collection, files):
            raise
    return {f.role: f.version for f in files}


def _stored(store: MetaStore, collection: str, files: Sequence[NewFile]) -> bool:
    """Whether `files` are the collection's current files (a commit whose outcome was in doubt did apply);
    False also when the store cannot tell yet."""
    try:
        now_current = store.current(collection)
    except StorageError:
        return False
    return all(f.role in now_current and now_current[f.role].version == f.version
               and now_current[f.role].sha256 == hashlib.sha256(f.data).hexdigest() for f in files)


def replaced(current: Mapping[str, StoredFile], files: Sequence[NewFile]) -> dict[str, StoredFile]:
    """The stored files that `files` replace (their bytes still unread unless already loaded)."""
    return {f.role: current[f.role] for f in files if f.role in current}


def renew_before(lifetime: timedelta, now: datetime) -> datetime:
    """Renew once less than half of the configured lifetime is left: what expires before this."""
    return now + lifetime / 2


def renewal_due(expires: datetime, lifetime: timedelta, now: datetime) -> bool:
    return expires < renew_before(lifetime, now)

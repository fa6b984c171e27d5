"""Publishing: validate an upload, build and sign the online roles, store it all in one commit.

This is the I/O shell around `validation.validate_update`: it reads the stored state, asks the
signer (over gRPC) for timestamp and snapshot signatures, and commits every file at once, so a
publish is either fully stored or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Protocol

from securesystemslib.signer import Key, Signature
from tuf.api.metadata import MetaFile, Metadata, Root, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from tufnotary.server.config import ServerConfig
from tufnotary.server.errors import OnlineKeyError
from tufnotary.server.storage import MetaStore, NewFile
from tufnotary.server.validation import validate_update

ONLINE_ROLES = ("timestamp", "snapshot")
_SERIALIZER = JSONSerializer(compact=True)


class OnlineSigner(Protocol):
    """What publishing needs from the signer (RemoteSigner implements it)."""

    def get_public_key(self, collection: str, role: str) -> Key | None: ...

    def sign(self, key: Key, payload: bytes) -> Signature: ...


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _sign_online(
    signer: OnlineSigner, collection: str, root: Root, md: Metadata, role: str
) -> bytes:
    """Sign `md` with the server-managed key of `role`, after checking the root trusts it."""
    key = signer.get_public_key(collection, role)
    listed = root.roles[role]
    if key is None or key.keyid not in listed.keyids:
        raise OnlineKeyError(
            f"the root does not list the server's {role} key, so the server cannot sign {role}: "
            f"fetch it from {role}.key and put it in the root's {role} role"
            + ("" if role == "timestamp" else ", or upload a snapshot signed with your own key"),
            {"role": role, "server_key": key.keyid if key else None, "root_keys": listed.keyids},
        )
    if listed.threshold != 1:
        raise OnlineKeyError(
            f"the root sets a threshold of {listed.threshold} for {role}, but the server signs it "
            "with one key: set the threshold to 1",
            {"role": role, "threshold": listed.threshold},
        )
    md.signatures.clear()
    signature = signer.sign(key, md.signed_bytes)
    md.signatures[signature.keyid] = signature
    return md.to_bytes(_SERIALIZER)


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
) -> dict[str, int]:
    """Validate and store `uploads` (role -> bytes); return the stored version of each role written."""
    now = now or utcnow()
    current = store.current(collection)
    update = validate_update({role: f.data for role, f in current.items()}, uploads, now)
    files = [NewFile(role, md.signed.version, uploads[role]) for role, md in update.uploaded.items()]

    if "snapshot" in update.uploaded:
        snapshot_version = update.uploaded["snapshot"].signed.version
        snapshot_bytes = uploads["snapshot"]
    else:
        snapshot_version = update.snapshot_version + 1
        snapshot = build_snapshot(snapshot_version, now + config.snapshot_expiry, update.targets_versions)
        snapshot_bytes = _sign_online(signer, collection, update.root.signed, snapshot, "snapshot")
        files.append(NewFile("snapshot", snapshot_version, snapshot_bytes))

    timestamp = build_timestamp(
        update.timestamp_version + 1, now + config.timestamp_expiry, snapshot_bytes, snapshot_version
    )
    timestamp_bytes = _sign_online(signer, collection, update.root.signed, timestamp, "timestamp")
    files.append(NewFile("timestamp", update.timestamp_version + 1, timestamp_bytes))

    store.commit(collection, files, expected={role: f.version for role, f in current.items()})
    return {f.role: f.version for f in files}

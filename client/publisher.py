"""The publisher side: create a collection, stage target changes, and publish signed targets.

Root and targets are signed with local keys; snapshot and timestamp belong to the server.
Publishing starts from the targets metadata that ngclient verified, never from unverified bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from tufnotary.client.consumer import Consumer
from tufnotary.client.errors import AlreadyInitializedError, ClientError, UsageError
from tufnotary.client.http import ServerClient
from tufnotary.client.keys import KeyStore
from tufnotary.client.names import check_collection, check_target_path
from tufnotary.client.trustdir import CollectionKeys, StagedChanges, TrustDir

ROOT_EXPIRY = timedelta(days=365)
TARGETS_EXPIRY = timedelta(days=90)
HASH_ALGORITHMS = ["sha256", "sha512"]
_DIGEST_RE = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def parse_custom(text: str | None) -> Any:
    """The target's `custom` value from a JSON string (None when not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise UsageError(f"--custom is not valid JSON: {e}") from e


def target_from_digest(target: str, digest: str, length: int, custom: Any = None) -> TargetFile:
    """Target info for content known only by digest (e.g. an OCI manifest 'sha256:...')."""
    match = _DIGEST_RE.fullmatch(digest.lower())
    if match is None:
        raise UsageError(
            f"invalid digest {digest!r}: expected sha256:<64 hex digits> or sha512:<128 hex digits>"
        )
    if length < 0:
        raise UsageError(f"invalid length {length}: must be zero or more bytes")
    algo = match.group(1) or match.group(3)
    value = match.group(2) or match.group(4)
    fields = {"custom": custom} if custom is not None else None
    return TargetFile(length, {algo: value}, check_target_path(target), fields)


def target_from_file(target: str, path: Path, custom: Any = None) -> TargetFile:
    """Target info (length, sha256 and sha512) of a local file."""
    check_target_path(target)
    try:
        info = TargetFile.from_file(target, str(path), HASH_ALGORITHMS)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    if custom is not None:
        info.unrecognized_fields["custom"] = custom
    return info


@dataclass(frozen=True)
class InitResult:
    collection: str
    root_keyid: str
    targets_keyid: str
    versions: dict[str, int]


@dataclass(frozen=True)
class PublishResult:
    collection: str
    targets_version: int
    added: list[str]
    removed: list[str]
    # Staged removals of targets that were not signed anyway.
    not_present: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)


class Publisher:
    """Publishes collections to one server with keys from one trust directory."""

    def __init__(
        self,
        trust: TrustDir,
        keys: KeyStore,
        server: ServerClient,
        consumer: Consumer,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.trust = trust
        self.keys = keys
        self.server = server
        self.consumer = consumer
        self.now = now

    def init(
        self,
        collection: str,
        root_keyid: str | None = None,
        targets_keyid: str | None = None,
        keytype: str = "ed25519",
    ) -> InitResult:
        """Create the collection on the server with Root v1 and empty Targets v1; pin the root."""
        check_collection(collection)
        if self.trust.has_pinned_root(collection) or (
            self.trust.collection_dir(collection) / "keys.json"
        ).exists():
            raise AlreadyInitializedError(
                f"{collection} is already initialised in {self.trust.root}; "
                "use 'tufnotary publish', or 'tufnotary delete' to start over"
            )
        # Check the server before creating any key, so an unreachable server leaves nothing behind.
        timestamp_key = self.server.online_key(collection, "timestamp")
        snapshot_key = self.server.online_key(collection, "snapshot")
        root_key = (
            self.keys.public_key(root_keyid) if root_keyid else self.keys.generate(keytype)
        )
        targets_key = (
            self.keys.public_key(targets_keyid) if targets_keyid else self.keys.generate(keytype)
        )
        root_signer = self.keys.signer(root_key.keyid)
        targets_signer = self.keys.signer(targets_key.keyid)

        now = self.now()
        root = Root(expires=now + ROOT_EXPIRY, consistent_snapshot=True)
        root.add_key(root_key, Root.type)
        root.add_key(targets_key, Targets.type)
        root.add_key(snapshot_key, "snapshot")
        root.add_key(timestamp_key, "timestamp")
        root_md = Metadata(root)
        root_md.sign(root_signer)
        targets_md = Metadata(Targets(expires=now + TARGETS_EXPIRY))
        targets_md.sign(targets_signer)

        root_bytes = root_md.to_bytes()
        reply = self.server.upload(
            collection, {Root.type: root_bytes, Targets.type: targets_md.to_bytes()}
        )
        self.trust.pin_root(collection, root_bytes)
        self.trust.write_keys(
            collection, CollectionKeys(root=[root_key.keyid], targets=[targets_key.keyid])
        )
        return InitResult(collection, root_key.keyid, targets_key.keyid, reply.get("versions", {}))

    def stage_add(self, collection: str, info: TargetFile) -> None:
        self.trust.read_keys(collection)
        staged = self.trust.read_staged(collection)
        staged.changes[info.path] = {"length": info.length, "hashes": info.hashes} | dict(
            info.unrecognized_fields
        )
        self.trust.write_staged(collection, staged)

    def stage_remove(self, collection: str, target: str) -> None:
        check_target_path(target)
        self.trust.read_keys(collection)
        staged = self.trust.read_staged(collection)
        staged.changes[target] = None
        self.trust.write_staged(collection, staged)

    def staged(self, collection: str) -> StagedChanges:
        return self.trust.read_staged(collection)

    def _targets_signers(self, collection: str, root: Root) -> list[Signer]:
        keyids = self.trust.read_keys(collection).targets
        trusted = set(root.roles[Targets.type].keyids)
        usable = [k for k in keyids if k in trusted]
        if not usable:
            raise ClientError(
                f"none of the local targets keys ({', '.join(keyids)}) is trusted for targets "
                f"by the current root of {collection}"
            )
        return [self.keys.signer(k) for k in usable]

    def publish(self, collection: str) -> PublishResult:
        """Apply staged changes to the verified current targets, sign, upload; then unstage."""
        staged = self.trust.read_staged(collection)
        self.trust.read_keys(collection)
        targets_md = Metadata[Targets].from_bytes(self.consumer.trusted_targets(collection))
        # After the refresh the pinned root.json is the newest root ngclient trusts.
        root = Metadata[Root].from_bytes(self.trust.read_pinned_root(collection)).signed
        signers = self._targets_signers(collection, root)

        targets = targets_md.signed
        added, removed, not_present = [], [], []
        for path, change in sorted(staged.changes.items()):
            if change is None:
                if targets.targets.pop(path, None) is None:
                    not_present.append(path)
                else:
                    removed.append(path)
            else:
                targets.targets[path] = TargetFile.from_dict(dict(change), path)
                added.append(path)
        targets.version += 1
        targets.expires = self.now() + TARGETS_EXPIRY
        targets_md.signatures.clear()
        for signer in signers:
            targets_md.sign(signer, append=True)

        reply = self.server.upload(collection, {Targets.type: targets_md.to_bytes()})
        self.trust.write_staged(collection, StagedChanges())
        return PublishResult(
            collection, targets.version, added, removed, not_present, reply.get("versions", {})
        )

    def delete(self, collection: str) -> None:
        """Delete the collection on the server, then forget it locally (keys are kept)."""
        self.server.delete(check_collection(collection))
        self.trust.forget_collection(collection)

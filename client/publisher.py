"""The publisher side: create a collection, stage target changes, and publish them.

Root, targets and delegated roles are signed with local keys; snapshot and timestamp belong to
the server. Every change starts from metadata ngclient verified (`trusted.TrustedState`), never
from unverified bytes, and goes out as one `draft.Draft`: signed with every qualifying local
key, uploaded atomically once each threshold is met, or saved as a signing request otherwise.
Signing keys are found, not configured: a role is signed by the local keys its delegator lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from tufnotary.client import staging
from tufnotary.client.consumer import Consumer
from tufnotary.client.draft import Draft, Missing, Requirement
from tufnotary.client.errors import AlreadyInitializedError, ClientError, UsageError
from tufnotary.client.http import ServerClient
from tufnotary.client.keys import KeyStore
from tufnotary.client.names import check_collection, check_target_path
from tufnotary.client.results import PublishResult
from tufnotary.client.trusted import (
    RoleNotDelegatedError,
    RoleNotPublishedError,
    TrustedState,
    delegates,
    succinct,
)
from tufnotary.client.trustdir import (
    DEFAULT_EXPIRY_DAYS,
    CollectionKeys,
    CollectionSettings,
    StagedChanges,
    TrustDir,
)

BINS_PREFIX = "bins"
MAX_BINS = 2**14


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def target_from_digest(target: str, digest: str, length: int, custom: Any = None) -> TargetFile:
    """Target info for content known only by digest (e.g. an OCI manifest 'sha256:...')."""
    staged = staging.target_from_digest(target, digest, length, custom)
    return TargetFile.from_dict(staged.entry(), staged.path)


def target_from_file(target: str, path: Path, custom: Any = None) -> TargetFile:
    """Target info (length, sha256 and sha512) of a local file."""
    staged = staging.target_from_file(target, path, custom)
    return TargetFile.from_dict(staged.entry(), staged.path)


class ThresholdNotMetError(ClientError):
    """Local keys cannot meet every signature threshold of a draft."""

    code = "SIGNATURES_MISSING"

    def __init__(self, draft: Draft, missing: list[Missing]) -> None:
        lines = "; ".join(m.describe() for m in missing)
        hint = (
            "nothing was published. Sign with those keys here (import them or set their "
            "passphrases), or re-run the command with --save FILE and have each holder run "
            "'tufnotary sign --add-signature FILE', then 'tufnotary publish "
            f"{draft.collection} --from FILE'"
        )
        if any(m.role == Root.type and m.by.startswith("root version") for m in missing):
            hint += (
                ". A new root needs a threshold of the CURRENT root keys: if fewer than that "
                "many root keys survive anywhere, the root cannot be rotated and clients pinned "
                "to it cannot be moved (see docs/runbooks/lost-root-key.md)"
            )
        super().__init__(f"cannot publish {draft.summary}: {lines}; {hint}")
        self.draft = draft
        self.missing = missing


@dataclass(frozen=True)
class InitResult:
    collection: str
    root_keyid: str
    targets_keyid: str
    versions: dict[str, int]
    bins_keyid: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    """A draft either published (`versions`) or saved as a signing request (`saved`)."""

    draft: Draft
    signed_by: list[str]
    versions: dict[str, int] = field(default_factory=dict)
    saved: Path | None = None
    missing: list[Missing] = field(default_factory=list)


def copy_md(md: Metadata[Any]) -> Metadata[Any]:
    """An independent copy of verified metadata, to edit into the next version."""
    return Metadata.from_bytes(md.to_bytes())


def role_keys(delegator: Root | Targets, role: str) -> tuple[int, dict[str, Key]]:
    """(threshold, keys) that `delegator` requires for `role`."""
    delegated = delegator.get_delegated_role(role)
    keys = {}
    for keyid in delegated.keyids:
        try:
            keys[keyid] = delegator.get_key(keyid)
        except ValueError:
            continue
    return delegated.threshold, keys


def bins_bit_length(bins: int) -> int:
    if bins < 2 or bins > MAX_BINS or bins & (bins - 1):
        raise UsageError(
            f"--bins {bins}: use a power of two between 2 and {MAX_BINS}, e.g. 256 for about "
            "100,000 targets (a few hundred targets per bin)"
        )
    return bins.bit_length() - 1


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

    # --- creating a collection ----------------------------------------------------------

    def init(
        self,
        collection: str,
        root_keyid: str | None = None,
        targets_keyid: str | None = None,
        keytype: str = "ed25519",
        bins: int = 0,
        expiry_days: dict[str, float] | None = None,
    ) -> InitResult:
        """Create the collection with Root v1 and Targets v1 (and N empty hash bins); pin root."""
        check_collection(collection)
        bit_length = bins_bit_length(bins) if bins else 0
        if self.trust.has_pinned_root(collection) or self.trust.is_owner(collection):
            raise AlreadyInitializedError(
                f"{collection} is already initialised in {self.trust.root}; "
                "use 'tufnotary publish', or 'tufnotary delete' to start over"
            )
        settings = CollectionSettings(dict(DEFAULT_EXPIRY_DAYS) | (expiry_days or {}))
        for role, days in settings.expiry_days.items():
            if days <= 0:
                raise UsageError(f"the {role} expiry must be a positive number of days")
        # Check the server before creating any key, so an unreachable server leaves nothing behind.
        timestamp_key = self.server.online_key(collection, "timestamp")
        snapshot_key = self.server.online_key(collection, "snapshot")
        root_key = self.keys.resolve(root_keyid) if root_keyid else self.keys.generate(keytype)
        targets_key = (
            self.keys.resolve(targets_keyid) if targets_keyid else self.keys.generate(keytype)
        )
        now = self.now()
        root = Root(expires=now + settings.lifetime("root"), consistent_snapshot=True)
        root.add_key(root_key, Root.type)
        root.add_key(targets_key, Targets.type)
        root.add_key(snapshot_key, "snapshot")
        root.add_key(timestamp_key, "timestamp")
        targets_expires = now + settings.lifetime("targets")
        targets = Targets(expires=targets_expires)
        draft = Draft(collection, f"the first version of {collection}")
        root_md = Metadata(root)
        draft.add(Root.type, root_md, [Requirement(
            "the new root (version 1)", 1, {root_key.keyid: root_key})])
        bins_key = None
        if bins:
            bins_key = self.keys.generate(keytype)
            roles = SuccinctRoles([bins_key.keyid], 1, bit_length, BINS_PREFIX)
            targets.delegations = Delegations({bins_key.keyid: bins_key}, succinct_roles=roles)
            for name in roles.get_roles():
                draft.add(name, Metadata(Targets(expires=targets_expires)), [Requirement(
                    "targets", 1, {bins_key.keyid: bins_key})])
        draft.add(Targets.type, Metadata(targets), [Requirement(
            "root", 1, {targets_key.keyid: targets_key})])
        result = self.submit(draft)
        self.trust.pin_root(collection, root_md.to_bytes())
        self.trust.write_keys(
            collection, CollectionKeys(root=[root_key.keyid], targets=[targets_key.keyid])
        )
        self.trust.write_settings(collection, settings)
        self.trust.write_server_keyid(collection, Snapshot.type, snapshot_key.keyid)
        return InitResult(
            collection, root_key.keyid, targets_key.keyid, result.versions,
            bins_key.keyid if bins_key else None,
        )

    # --- staging --------------------------------------------------------------------------

    def stage_add(self, collection: str, info: TargetFile, role: str | None = None) -> None:
        self.stage_add_many(collection, [info], role)

    def stage_add_many(
        self, collection: str, infos: list[TargetFile], role: str | None = None
    ) -> None:
        """Stage many targets at once (one write of the staging file)."""
        changes: dict[str, dict[str, Any] | None] = {
            info.path: {"length": info.length, "hashes": info.hashes} | dict(info.unrecognized_fields)
            for info in infos
        }
        staging.stage(self.trust, collection, changes, role)

    def stage_remove(self, collection: str, target: str, role: str | None = None) -> None:
        staging.stage(self.trust, collection, {check_target_path(target): None}, role)

    def staged(self, collection: str, role: str | None = None) -> StagedChanges:
        return self.trust.read_staged(collection, role)

    # --- drafts ---------------------------------------------------------------------------

    def state(self, collection: str) -> TrustedState:
        """Verified state; an owner may work on a collection whose targets expired."""
        return self.consumer.state(collection, lenient=self.trust.is_owner(collection))

    def expiry(self, collection: str, role: str) -> datetime:
        return self.now() + self.trust.read_settings(collection).lifetime(role)

    def next_version(self, state: TrustedState, draft: Draft, role: str) -> Metadata[Any]:
        """The draft's copy of `role` (version + 1, renewed expiry), created on first use."""
        if role in draft.roles:
            return draft.roles[role].metadata
        if role == Root.type:
            md = copy_md(state.root)
        else:
            try:
                md = copy_md(state.role(role))
            except (RoleNotPublishedError, RoleNotDelegatedError):  # a role this draft creates
                meta = state.snapshot.signed.meta.get(f"{role}.json")
                md = Metadata(Targets(version=meta.version if meta else 1))
                if meta is None:
                    md.signed.version = 0  # becomes version 1 below
        md.signed.version += 1
        md.signed.expires = self.expiry(state.collection, role)
        draft.add(role, md, [])
        return md

    def delegator_in(self, state: TrustedState, draft: Draft, role: str) -> Root | Targets:
        """The delegator of `role` as it will be after the draft is published."""
        for name, draft_role in draft.roles.items():
            signed = draft_role.metadata.signed
            if name != role and isinstance(signed, Targets) and delegates(signed, role):
                return signed
        parent = state.parent_of(role)
        if parent in draft.roles:
            return draft.roles[parent].metadata.signed
        return state.root.signed if parent == Root.type else state.role(parent).signed

    def set_requirements(self, state: TrustedState, draft: Draft) -> None:
        """Fill each draft role's signature requirements from the post-publish delegators, and add a
        publisher-signed snapshot when the collection's snapshot is client-managed."""
        for role, draft_role in draft.roles.items():
            if role == Snapshot.type:
                continue
            if role == Root.type:
                old, new = state.root.signed, draft_role.metadata.signed
                draft_role.requirements = [
                    Requirement(f"root version {old.version}", *role_keys(old, Root.type)),
                    Requirement(f"the new root (version {new.version})", *role_keys(new, Root.type)),
                ]
                continue
            delegator = self.delegator_in(state, draft, role)
            by = "root" if isinstance(delegator, Root) else next(
                (n for n, r in draft.roles.items() if r.metadata.signed is delegator), None
            ) or state.parent_of(role)
            draft_role.requirements = [Requirement(by, *role_keys(delegator, role))]
        self._add_client_snapshot(state, draft)

    def _add_client_snapshot(self, state: TrustedState, draft: Draft) -> None:
        """When the post-publish root does not list the server's snapshot key, the publisher signs
        snapshot: the trusted one, version + 1, listing the versions this draft publishes."""
        draft.roles.pop(Snapshot.type, None)
        root = draft.roles[Root.type].metadata.signed if Root.type in draft.roles else state.root.signed
        listed = root.roles[Snapshot.type].keyids
        if draft.server_snapshot_key in listed or self.server_signs_snapshot(state.collection, listed):
            return
        snapshot = copy_md(state.snapshot)
        snapshot.signed.version += 1
        snapshot.signed.expires = self.expiry(state.collection, Snapshot.type)
        for role, draft_role in draft.roles.items():
            if isinstance(draft_role.metadata.signed, Targets):
                snapshot.signed.meta[f"{role}.json"] = MetaFile(version=draft_role.metadata.signed.version)
        draft.add(Snapshot.type, snapshot, [Requirement("root", *role_keys(root, Snapshot.type))])

    def server_signs_snapshot(self, collection: str, listed: list[str]) -> bool:
        """Whether the server's snapshot key is among `listed` (a root's snapshot key ids).

        The key id the server last gave is remembered in the trust directory, and while a root
        lists it the server is not asked again: every publish would otherwise pay a round trip
        (and a signer lookup on the server) for it. The server gives up a key only when a root
        listing its successor is published, and such a root no longer lists the remembered key
        unless it lists the successor too: either way the answer is the same. Otherwise the
        server is asked, and its answer remembered."""
        if self.trust.read_server_keyids(collection).get(Snapshot.type) in listed:
            return True
        key = self.server.online_key(collection, Snapshot.type)
        self.trust.write_server_keyid(collection, Snapshot.type, key.keyid)
        return key.keyid in listed

    def submit(self, draft: Draft, save: Path | None = None) -> SubmitResult:
        """Sign with local keys; upload when every threshold is met, or save a signing request."""
        signed_by = draft.sign_with(self.keys)
        if save is not None:
            save.write_text(draft.to_json())
            return SubmitResult(draft, signed_by, saved=save, missing=draft.missing())
        return self.upload(draft, signed_by)

    def upload(self, draft: Draft, signed_by: list[str] | None = None) -> SubmitResult:
        """Upload `draft` once every threshold is met (checked here, once: each check verifies
        every signature over every role's canonical bytes)."""
        missing = draft.missing()
        if missing:
            raise ThresholdNotMetError(draft, missing)
        uploads = draft.uploads()
        reply = self.server.upload(draft.collection, uploads)
        for role in draft.clear_staged:
            self.trust.write_staged(draft.collection, StagedChanges({}), role)
        for role, data in uploads.items():
            if isinstance(draft.roles[role].metadata.signed, Targets):
                self.trust.remember_published(draft.collection, role, data)
        return SubmitResult(draft, signed_by or [], versions=reply.get("versions", {}))

    def publish_request(self, collection: str, path: Path) -> SubmitResult:
        """Upload a signing request once every threshold is met."""
        try:
            draft = Draft.from_json(path.read_text(), str(path))
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from e
        if draft.collection != collection:
            raise UsageError(f"{path} is a signing request for {draft.collection}, not {collection}")
        return self.upload(draft)

    # --- publishing staged changes ----------------------------------------------------------

    def _apply(
        self, md: Metadata[Targets], changes: dict[str, dict[str, Any] | None],
        result: dict[str, list[str]],
    ) -> None:
        for path, change in sorted(changes.items()):
            if change is None:
                if md.signed.targets.pop(path, None) is None:
                    result["not_present"].append(path)
                else:
                    result["removed"].append(path)
            else:
                md.signed.targets[path] = TargetFile.from_dict(dict(change), path)
                result["added"].append(path)

    def prepare_publish(
        self, collection: str, role: str | None = None
    ) -> tuple[Draft, dict[str, list[str]]]:
        """A draft applying the staged changes (of `role`, or of targets/bins by default)."""
        staged = self.trust.read_staged(collection, role)
        if role is None:
            self.trust.read_keys(collection)
        state = self.state(collection)
        draft = Draft(collection, f"{role or 'targets'} of {collection}")
        draft.clear_staged = [role]
        outcome: dict[str, list[str]] = {"added": [], "removed": [], "not_present": []}
        bins = succinct(state.targets().signed) if role is None else None
        if bins is not None:
            by_bin: dict[str, dict[str, dict[str, Any] | None]] = {}
            for path, change in staged.changes.items():
                by_bin.setdefault(bins.get_role_for_target(path), {})[path] = change
            for name, changes in sorted(by_bin.items()):
                self._apply(self.next_version(state, draft, name), changes, outcome)
            if not by_bin:  # nothing staged: renew targets itself
                self.next_version(state, draft, Targets.type)
        else:
            name = role or Targets.type
            if role is not None and role != Targets.type:
                self._check_delegated_paths(state, role, staged)
            self._apply(self.next_version(state, draft, name), staged.changes, outcome)
        self.set_requirements(state, draft)
        return draft, outcome

    def _check_delegated_paths(self, state: TrustedState, role: str, staged: StagedChanges) -> None:
        delegator = state.delegator(role)
        assert isinstance(delegator, Targets)
        delegated = delegator.get_delegated_role(role)
        for path, change in staged.changes.items():
            if change is None:
                continue
            if isinstance(delegated, SuccinctRoles):
                ok = delegated.get_role_for_target(path) == role
                where = f"hash bin {delegated.get_role_for_target(path)}"
            else:
                assert isinstance(delegated, DelegatedRole)
                ok = delegated.is_delegated_path(path)
                where = f"the paths delegated to {role} ({', '.join(delegated.paths or delegated.path_hash_prefixes or [])})"
            if not ok:
                raise UsageError(
                    f"{path} is outside {where}: {role} cannot sign it; stage it for the role "
                    f"that owns it, or ask the delegator to widen the delegation"
                )

    def publish(
        self, collection: str, role: str | None = None, save: Path | None = None
    ) -> PublishResult:
        """Apply staged changes to the verified metadata, sign, and upload; then unstage."""
        draft, outcome = self.prepare_publish(collection, role)
        result = self.submit(draft, save)
        versions = {n: r.metadata.signed.version for n, r in draft.roles.items()}
        main = role or Targets.type
        version = versions.get(main, max(versions.values(), default=0))
        return PublishResult(
            collection, version, outcome["added"], outcome["removed"], outcome["not_present"],
            result.versions, sorted(draft.roles), result.saved, result.missing, result,
        )

    def delete(self, collection: str) -> None:
        """Delete the collection on the server, then forget it locally (keys are kept)."""
        self.server.delete(check_collection(collection))
        self.trust.forget_collection(collection)

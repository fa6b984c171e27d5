"""Owner and admin workflows on a published collection, each one atomic publish (or signing request).

Delegations (add, remove, list), role keys (add, remove, rotate, revoke with the history of what
a revoked key signed), expiry (bump, status). Every change is a `Draft` built on verified state
by `Publisher`; this module decides *what* changes, and refuses early, in words the owner can act
on, what the server or clients would refuse later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Root, Snapshot, SuccinctRoles, Targets

from tufnotary.client.draft import Draft
from tufnotary.client.errors import UsageError
from tufnotary.client.history import RoleVersion, role_versions
from tufnotary.client.publisher import Publisher, SubmitResult, role_keys
from tufnotary.client.revocation import RevertPlan, plan_reverts
from tufnotary.client.trusted import (
    RoleNotDelegatedError,
    TrustedState,
    succinct,
)

SERVER_ROLES = ("timestamp", "snapshot")
# The server renews timestamp and snapshot before they expire: warn only when it is late.
SERVER_ROLE_WARNING = timedelta(hours=1)


@dataclass
class DelegationInfo:
    role: str
    parent: str
    keyids: list[str]
    threshold: int
    paths: list[str]
    terminating: bool
    version: int | None  # published version, None when not published yet
    bins: int = 0  # > 0: a TAP 15 hash-bin delegation of that many roles (role is the prefix)


@dataclass
class RoleStatus:
    role: str
    version: int
    expires: datetime
    threshold: int
    signed_by: list[str]
    keyids: list[str]
    expired: bool
    warn: bool
    count: int = 1  # > 1: a summary of that many hash bins (earliest expiry shown)


@dataclass
class SignedTarget:
    role: str
    version: int
    path: str
    hashes: dict[str, str]


@dataclass
class RevokeResult:
    submitted: SubmitResult | None  # None: a dry run, nothing published
    roles: list[str]  # roles whose key lists changed
    replacement: str | None  # key id added where the threshold needed it
    signed: list[SignedTarget] = field(default_factory=list)
    plan: RevertPlan = field(default_factory=RevertPlan)
    kept: bool = False  # --keep-content: the plan was reported, not applied


class Admin:
    """Owner workflows of one trust directory against one server."""

    def __init__(self, publisher: Publisher) -> None:
        self.pub = publisher

    # --- shared helpers ---------------------------------------------------------------------

    def _finish(self, state: TrustedState, draft: Draft, save: Path | None) -> SubmitResult:
        self.pub.set_requirements(state, draft)
        return self.pub.submit(draft, save)

    def _bins_of(self, state: TrustedState, role: str) -> SuccinctRoles | None:
        """The succinct delegation when `role` names the bins prefix or one bin."""
        bins = succinct(state.targets().signed)
        if bins is not None and (role == bins.name_prefix or bins.is_delegated_role(role)):
            return bins
        return None

    def _resign_role(self, state: TrustedState, draft: Draft, role: str) -> None:
        """Add `role` (or every hash bin, when it is one) to the draft, version + 1."""
        bins = self._bins_of(state, role)
        for name in bins.get_roles() if bins is not None else [role]:
            self.pub.next_version(state, draft, name)

    def _change_keys(
        self,
        state: TrustedState,
        draft: Draft,
        role: str,
        add: list[Key],
        remove: list[str],
        threshold: int | None = None,
    ) -> None:
        """Change the keys that sign `role` in its delegator, and re-sign `role` with them."""
        if role in SERVER_ROLES:
            raise UsageError(
                f"the {role} key is managed by the server's signer: replace it with "
                f"`tufnotary key rotate {state.collection} {role} --server-managed`"
            )
        bins = self._bins_of(state, role)
        if role == Root.type or role == Targets.type:
            delegator: Root | Targets = self.pub.next_version(state, draft, Root.type).signed
            name: str | None = role
        else:
            parent = state.parent_of(role) if bins is None else Targets.type
            delegator = self.pub.next_version(state, draft, parent).signed
            name = None if bins is not None else role
        for keyid in remove:
            delegator.revoke_key(keyid, name)
        for key in add:
            delegator.add_key(key, name)
        delegated = delegator.get_delegated_role(name or next(iter(bins.get_roles())))  # type: ignore[union-attr]
        if threshold is not None:
            if threshold < 1:
                raise UsageError("a threshold must be at least 1")
            delegated.threshold = threshold
        if len(delegated.keyids) < delegated.threshold:
            raise UsageError(
                f"{role} would have {len(delegated.keyids)} key(s) for a threshold of "
                f"{delegated.threshold}: add keys or lower the threshold with --threshold"
            )
        if role != Root.type:
            self._resign_role(state, draft, role)

    # --- delegations ----------------------------------------------------------------------

    def delegation_add(
        self,
        collection: str,
        role: str,
        keys: list[Key],
        threshold: int,
        paths: list[str],
        terminating: bool = False,
        parent: str = Targets.type,
        save: Path | None = None,
    ) -> SubmitResult:
        if not keys:
            raise UsageError("give the delegated signers' public keys with --key")
        if not paths:
            raise UsageError(
                "give the target paths the role may sign with --paths, e.g. --paths 'prod/*'"
            )
        if threshold < 1 or threshold > len(keys):
            raise UsageError(
                f"--threshold {threshold} needs between 1 and {len(keys)} (the number of keys)"
            )
        if role in ("root", "targets", "snapshot", "timestamp") or not role:
            raise UsageError(f"{role!r} is a top-level role name; choose e.g. 'targets/prod'")
        state = self.pub.state(collection)
        if self._known_role(state, role):
            raise UsageError(
                f"{role} is already delegated in {collection}: use 'tufnotary key add|rotate' to "
                "change its keys, or 'tufnotary delegation remove' first"
            )
        draft = Draft(collection, f"the delegation of {role} in {collection}")
        parent_md = self.pub.next_version(state, draft, parent).signed
        if succinct(parent_md) is not None:
            raise UsageError(
                f"{parent} delegates to hash bins, and TUF allows either bins or named roles in "
                "one delegator; delegate from a role other than targets"
            )
        if parent_md.delegations is None:
            parent_md.delegations = Delegations({}, roles={})
        assert parent_md.delegations.roles is not None
        parent_md.delegations.roles[role] = DelegatedRole(
            role, [], threshold, terminating, paths=list(paths)
        )
        for key in keys:
            parent_md.add_key(key, role)
        # The new role's first (empty) version goes out with the delegation, so that clients
        # never meet a delegated role without metadata.
        self.pub.next_version(state, draft, role)
        return self._finish(state, draft, save)

    def _known_role(self, state: TrustedState, role: str) -> bool:
        try:
            state.parent_of(role)
            return True
        except RoleNotDelegatedError:
            return False

    def delegation_remove(
        self, collection: str, role: str, save: Path | None = None
    ) -> SubmitResult:
        state = self.pub.state(collection)
        if self._bins_of(state, role) is not None:
            raise UsageError(f"{role} is part of the collection's hash bins; they cannot be removed")
        parent = state.parent_of(role)
        draft = Draft(collection, f"the removal of {role} from {collection}")
        parent_md = self.pub.next_version(state, draft, parent).signed
        assert parent_md.delegations is not None and parent_md.delegations.roles is not None
        keyids = parent_md.delegations.roles[role].keyids
        for keyid in list(keyids):
            parent_md.revoke_key(keyid, role)
        del parent_md.delegations.roles[role]
        if not parent_md.delegations.roles:
            parent_md.delegations = None
        return self._finish(state, draft, save)

    def delegation_list(self, collection: str) -> list[DelegationInfo]:
        state = self.pub.state(collection)
        out: list[DelegationInfo] = []
        for visit in state.walk(bins=False):
            d = visit.metadata.signed.delegations if visit.metadata is not None else None
            if d is None:
                continue
            name = visit.role
            if d.succinct_roles is not None:
                sr = d.succinct_roles
                out.append(DelegationInfo(sr.name_prefix, name, list(sr.keyids), sr.threshold,
                                          [], True, None, sr.number_of_bins))
            for child, delegated in (d.roles or {}).items():
                meta = state.snapshot.signed.meta.get(f"{child}.json")
                out.append(DelegationInfo(
                    child, name, list(delegated.keyids), delegated.threshold,
                    list(delegated.paths or delegated.path_hash_prefixes or []),
                    delegated.terminating, meta.version if meta else None,
                ))
        return out

    # --- keys -------------------------------------------------------------------------------

    def key_add(
        self, collection: str, role: str, keys: list[Key], threshold: int | None = None,
        save: Path | None = None,
    ) -> SubmitResult:
        state = self.pub.state(collection)
        draft = Draft(collection, f"new {role} key(s) for {collection}")
        self._change_keys(state, draft, role, keys, [], threshold)
        return self._finish(state, draft, save)

    def key_remove(
        self, collection: str, role: str, keyid: str, threshold: int | None = None,
        save: Path | None = None,
    ) -> SubmitResult:
        state = self.pub.state(collection)
        threshold_now, keys = self._role_keys(state, role)
        if keyid not in keys:
            raise UsageError(f"key {keyid} does not sign {role} in {collection}")
        draft = Draft(collection, f"the removal of key {keyid[:16]} from {role} of {collection}")
        self._change_keys(state, draft, role, [], [keyid], threshold)
        return self._finish(state, draft, save)

    def _role_keys(self, state: TrustedState, role: str) -> tuple[int, dict[str, Key]]:
        if role in (Root.type, Targets.type, *SERVER_ROLES):
            return role_keys(state.root.signed, role)
        bins = self._bins_of(state, role)
        if bins is not None:
            return bins.threshold, {k: state.targets().signed.get_key(k) for k in bins.keyids}
        return role_keys(state.delegator(role), role)

    def rotate(
        self,
        collection: str,
        role: str,
        new_key: Key | None = None,
        keytype: str | None = None,
        old: str | None = None,
        save: Path | None = None,
    ) -> tuple[SubmitResult, str, str]:
        """Replace one key of `role` (the only one, or `old`); return (result, old id, new id)."""
        state = self.pub.state(collection)
        _, keys = self._role_keys(state, role)
        if old is None:
            if len(keys) != 1:
                raise UsageError(
                    f"{role} has {len(keys)} keys ({', '.join(sorted(keys))}): name the one "
                    "to replace with --old KEYID"
                )
            old = next(iter(keys))
        elif old not in keys:
            raise UsageError(f"key {old} does not sign {role} in {collection}")
        if new_key is None:
            new_key = self.pub.keys.generate(keytype or keys[old].keytype)
        if new_key.keyid in keys:
            raise UsageError(f"key {new_key.keyid} already signs {role}: choose another key")
        draft = Draft(collection, f"the rotation of the {role} key of {collection}")
        self._change_keys(state, draft, role, [new_key], [old])
        return self._finish(state, draft, save), old, new_key.keyid

    def rotate_server_managed(
        self, collection: str, role: str, save: Path | None = None
    ) -> tuple[SubmitResult, list[str], str]:
        """Replace the `role` key (timestamp or snapshot) by a new one the server makes: the new root
        lists only that key, and the server signs `role` with it once the root is published (for
        snapshot this also hands signing back to the server after --client-managed).
        Returns (result, old key ids, new key id)."""
        if role not in SERVER_ROLES:
            raise UsageError(f"--server-managed applies to {' and '.join(SERVER_ROLES)}, not {role}")
        state = self.pub.state(collection)
        _, keys = self._role_keys(state, role)
        new_key = self.pub.server.rotate_online_key(collection, role)
        draft = Draft(collection, f"the rotation of the server's {role} key of {collection}")
        if role == Snapshot.type:
            draft.server_snapshot_key = new_key.keyid
        self._replace_in_root(state, draft, role, keys, new_key)
        return self._finish(state, draft, save), sorted(keys), new_key.keyid

    def make_snapshot_client_managed(
        self, collection: str, new_key: Key | None = None, keytype: str | None = None, save: Path | None = None
    ) -> tuple[SubmitResult, list[str], str]:
        """Move snapshot signing to the publisher: the new root lists only a publisher key for
        snapshot, and from then on every publish carries a snapshot signed with it (the server
        still signs, and renews, the timestamp). Returns (result, old key ids, new key id)."""
        state = self.pub.state(collection)
        _, keys = self._role_keys(state, Snapshot.type)
        if new_key is None:
            new_key = self.pub.keys.generate(keytype or "ed25519")
        draft = Draft(collection, f"moving snapshot signing of {collection} to the publisher")
        self._replace_in_root(state, draft, Snapshot.type, keys, new_key)
        return self._finish(state, draft, save), sorted(keys), new_key.keyid

    def _replace_in_root(self, state: TrustedState, draft: Draft, role: str, old: dict[str, Key], new: Key) -> None:
        root = self.pub.next_version(state, draft, Root.type).signed
        for keyid in old:
            root.revoke_key(keyid, role)
        root.add_key(new, role)

    def revoke(
        self,
        collection: str,
        keyid: str,
        replacement: Key | None = None,
        save: Path | None = None,
        keep_content: bool = False,
        dry_run: bool = False,
        since: int | None = None,
    ) -> RevokeResult:
        """Remove `keyid` from every role that lists it, undo what only it vouched for, re-sign,
        publish; list what it signed.

        Target entries whose current value only the revoked key signed are reverted to their
        value in the latest version a still-trusted key signed, or dropped (`revocation.py`):
        a leaked key's work must not stay trusted just because the owner re-signs the role.
        `keep_content` (the key was retired, not stolen) reports that plan without applying it;
        `dry_run` builds everything and publishes nothing. `since`: the role version from which
        the key is considered compromised; versions before it stay trusted (its honest work).
        """
        state = self.pub.state(collection)
        listing = self._roles_listing(state, keyid)
        if not listing:
            raise UsageError(f"no role of {collection} lists key {keyid}")
        for role in listing:
            if role in SERVER_ROLES:
                raise UsageError(
                    f"{keyid} is the server-managed {role} key: replace it with "
                    f"`tufnotary key rotate {collection} {role} --server-managed`"
                )
        versions = self._versions_of(state, listing)
        if since is not None:
            _check_since(since, versions, keyid)
        history = signed_by(versions, keyid)
        plan = plan_reverts(versions, frozenset({keyid}), since or 1)
        draft = Draft(collection, f"the revocation of key {keyid[:16]} in {collection}")
        added: str | None = None
        for role in listing:
            threshold, keys = self._role_keys(state, role)
            add: list[Key] = []
            if len(keys) - 1 < threshold:
                if replacement is None and dry_run:
                    # A throwaway public key, so a dry run creates no local key.
                    replacement = CryptoSigner.generate_ed25519().public_key
                    added = "(a new key, made by the real run)"
                elif replacement is None:
                    replacement = self.pub.keys.generate(keys[keyid].keytype)
                add = [replacement]
                added = added if dry_run and added else replacement.keyid
            self._change_keys(state, draft, role, add, [keyid])
        if not keep_content:
            for revert in plan.reverts:
                targets = self.pub.next_version(state, draft, revert.role).signed.targets
                if revert.restored is None:
                    targets.pop(revert.path, None)
                else:
                    targets[revert.path] = revert.restored
        submitted = None if dry_run else self._finish(state, draft, save)
        return RevokeResult(submitted, listing, added, history, plan, keep_content)

    def _versions_of(self, state: TrustedState, roles: list[str]) -> list[RoleVersion]:
        """Every stored version of the targets-type `roles` (each hash bin, for bins), with the
        signatures that verify against the keys their delegators listed."""
        candidates: set[str] = set()
        for role in roles:
            if role == Root.type or role in SERVER_ROLES:
                continue
            bins = self._bins_of(state, role)
            candidates.update(bins.get_roles() if bins is not None else [role])
        return [rv for rv in role_versions(state) if rv.role in candidates]

    def _roles_listing(self, state: TrustedState, keyid: str) -> list[str]:
        root = state.root.signed
        roles = [name for name, r in root.roles.items() if keyid in r.keyids]
        for info in self.delegation_list(state.collection):
            if keyid in info.keyids:
                roles.append(info.role)
        return roles

    # --- expiry -----------------------------------------------------------------------------

    def _server_signs_snapshot(self, state: TrustedState) -> bool:
        return self.pub.server_signs_snapshot(state.collection, state.root.signed.roles[Snapshot.type].keyids)

    def bump_expiry(
        self, collection: str, role: str, days: float, save: Path | None = None
    ) -> SubmitResult:
        if role == Snapshot.type and days > 0:
            state = self.pub.state(collection)
            if not self._server_signs_snapshot(state):  # --client-managed: the owner renews it
                draft = Draft(collection, f"new expiry of snapshot in {collection}")
                self.pub.set_requirements(state, draft)
                draft.roles[Snapshot.type].metadata.signed.expires = self.pub.now() + timedelta(days=days)
                return self.pub.submit(draft, save)
        if role in SERVER_ROLES:
            raise UsageError(
                f"{role} is signed and renewed by the server; only root, targets and delegated "
                "roles are bumped by their owner"
            )
        if days <= 0:
            raise UsageError("--days must be a positive number of days")
        state = self.pub.state(collection)
        draft = Draft(collection, f"new expiry of {role} in {collection}")
        bins = self._bins_of(state, role) if role != Targets.type else None
        names = list(bins.get_roles()) if bins is not None else [role]
        for name in names:
            md = self.pub.next_version(state, draft, name)
            md.signed.expires = self.pub.now() + timedelta(days=days)
        return self._finish(state, draft, save)

    def status(self, collection: str, warn_days: float, all_bins: bool = False) -> list[RoleStatus]:
        state = self.pub.state(collection)
        now = self.pub.now()
        root = state.root.signed
        renewed_by_server = {"timestamp"} | ({"snapshot"} if self._server_signs_snapshot(state) else set())

        def entry(role: str, md: Metadata[Any], delegator: Root | Targets) -> RoleStatus:
            result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
            expires = md.signed.expires
            window = SERVER_ROLE_WARNING if role in renewed_by_server else timedelta(days=warn_days)
            return RoleStatus(
                role, md.signed.version, expires, result.threshold, sorted(result.signed),
                sorted(set(result.signed) | set(result.unsigned)), expires <= now,
                expires <= now + window,
            )

        out = [entry(Root.type, state.root, root)]
        out.append(entry("timestamp", state.timestamp, root))
        out.append(entry("snapshot", state.snapshot, root))
        out.append(entry(Targets.type, state.targets(), root))
        for info in self.delegation_list(collection):
            if info.bins:
                bins = succinct(state.role(info.parent).signed)
                assert bins is not None
                entries = [entry(n, state.role(n), state.role(info.parent).signed)
                           for n in bins.get_roles()]
                if all_bins:
                    out.extend(entries)
                else:
                    first = min(entries, key=lambda e: e.expires)
                    first.role = f"{info.role}-* ({len(entries)} bins)"
                    first.count = len(entries)
                    first.warn = any(e.warn for e in entries)
                    first.expired = any(e.expired for e in entries)
                    out.append(first)
            elif info.version is not None:
                out.append(entry(info.role, state.role(info.role), state.role(info.parent).signed))
        return out


def _check_since(since: int, versions: list[RoleVersion], keyid: str) -> None:
    """Refuse a `--since` that names no version the key could have signed: before anything changes."""
    current: dict[str, int] = {}
    for rv in versions:
        current[rv.role] = max(rv.version, current.get(rv.role, 0))
    if not current:
        raise UsageError(
            f"--since counts versions of targets-type roles, and key {keyid} signs none: "
            "revoke it without --since"
        )
    latest = max(current.values())
    if since < 1 or since > latest:
        at = ", ".join(f"{role} {version}" for role, version in sorted(current.items()))
        raise UsageError(
            f"--since {since} is not a version of the roles key {keyid} signs (current versions: "
            f"{at}): give the role version from which the key was compromised, between 1 and "
            f"{latest} (see 'tufnotary history'); nothing was changed"
        )


def signed_by(versions: list[RoleVersion], keyid: str) -> list[SignedTarget]:
    """Every target entry of a version that `keyid` validly signed, once per role, path and digest."""
    out: list[SignedTarget] = []
    seen: set[tuple[str, str, str]] = set()
    for rv in versions:
        if keyid not in rv.signers:
            continue
        for path, info in rv.metadata.signed.targets.items():
            digest = sorted(info.hashes.items())[0]
            key = (rv.role, path, f"{digest[0]}:{digest[1]}")
            if key not in seen:
                seen.add(key)
                out.append(SignedTarget(rv.role, rv.version, path, dict(info.hashes)))
    return out


__all__ = ["Admin", "DelegationInfo", "RevertPlan", "RevokeResult", "RoleStatus", "SignedTarget", "SuccinctRoles"]

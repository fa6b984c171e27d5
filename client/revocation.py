"""What a revoked key alone vouched for, and what to publish instead: pure, over stored role versions.

Revoking a leaked key must not leave trusted what the attacker signed with it. Walking the
versions of a role (oldest first, signatures already checked against the keys its delegator
listed, `history.role_versions`), a version is *tainted* when every valid signature on it is by
a revoked key. A target entry whose current value (a digest and length, or its absence) was
introduced by a tainted version is reverted to its value in the latest untainted version, or
dropped when no untainted version signed it (or restored, when a tainted version removed it).
Entries that a tainted version only re-signed unchanged keep their earlier provenance.

A key is usually honest until it leaks (a CI key's earlier tags): with `since`, the role version
from which the key is considered compromised, versions before it that the revoked key validly
signed stay trusted. A version with no valid signature at all stays tainted whatever `since` says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tuf.api.metadata import TargetFile

from tufnotary.client.history import RoleVersion


@dataclass(frozen=True)
class Revert:
    """One target entry to change: `current` came from version `introduced_in`, signed only by
    revoked keys; `restored` (None: drop the entry) is its value in version `trusted_version`."""

    role: str
    path: str
    current: TargetFile | None
    restored: TargetFile | None
    introduced_in: int
    trusted_version: int | None  # the latest version a still-trusted key signed; None if none

    @property
    def action(self) -> str:
        if self.restored is None:
            return "drop"
        return "restore" if self.current is None else "revert"


@dataclass
class RevertPlan:
    reverts: list[Revert] = field(default_factory=list)
    # Roles in which a tainted version changed the delegations: the owner must review them.
    delegations_changed: list[tuple[str, int]] = field(default_factory=list)
    since: int = 1  # role versions before this one are trusted even if only revoked keys signed them
    # (role, version) signed only by revoked keys but trusted because it precedes `since`.
    spared: list[tuple[str, int]] = field(default_factory=list)

    def for_role(self, role: str) -> list[Revert]:
        return [r for r in self.reverts if r.role == role]


def _value(info: TargetFile | None) -> tuple[int, tuple[tuple[str, str], ...]] | None:
    """What a target entry vouches for: length and hashes (not custom data such as signedAt)."""
    return None if info is None else (info.length, tuple(sorted(info.hashes.items())))


def signed_only_by(version: RoleVersion, revoked: frozenset[str]) -> bool:
    """True when no key other than the revoked ones validly signed `version`."""
    return not set(version.signers) - revoked


def tainted(version: RoleVersion, revoked: frozenset[str], since: int = 1) -> bool:
    """True when `version` is not vouched for by a trusted key: signed only by revoked keys from
    version `since` on, or (whatever `since` says) validly signed by no key at all."""
    if not signed_only_by(version, revoked):
        return False
    return version.version >= since or not version.signers


def plan_reverts(
    versions: Iterable[RoleVersion], revoked: frozenset[str], since: int = 1
) -> RevertPlan:
    """The reverts that leave trusted only what some non-revoked key vouched for, or what the
    revoked keys signed before role version `since` (when they were not yet compromised).

    `versions`: each role's versions oldest first (roles may interleave only by blocks, as
    `role_versions` yields them)."""
    if since < 1:
        raise ValueError(f"since must be a role version (at least 1), not {since}")
    plan = RevertPlan(since=since)
    by_role: dict[str, list[RoleVersion]] = {}
    for rv in versions:
        by_role.setdefault(rv.role, []).append(rv)
    for role, role_versions in by_role.items():
        current: dict[str, TargetFile | None] = {}
        introduced: dict[str, tuple[int, bool]] = {}  # path -> (version, tainted)
        good: RoleVersion | None = None
        previous_delegations = None
        for rv in role_versions:
            bad = tainted(rv, revoked, since)
            if not bad and signed_only_by(rv, revoked):
                plan.spared.append((role, rv.version))
            targets = rv.metadata.signed.targets
            for path in set(targets) | set(current):
                info = targets.get(path)
                if path in current and _value(info) == _value(current[path]):
                    continue
                current[path] = info
                introduced[path] = (rv.version, bad)
            delegations = rv.metadata.signed.delegations
            delegations_dict = delegations.to_dict() if delegations is not None else None
            if bad and rv.version > 1 and delegations_dict != previous_delegations:
                plan.delegations_changed.append((role, rv.version))
            previous_delegations = delegations_dict
            if not bad:
                good = rv
        for path in sorted(introduced):
            version, bad = introduced[path]
            if not bad:
                continue
            restored = good.metadata.signed.targets.get(path) if good is not None else None
            if _value(restored) == _value(current[path]):
                continue
            plan.reverts.append(Revert(
                role, path, current[path],
                TargetFile.from_dict(restored.to_dict(), path) if restored is not None else None,
                version, good.version if good is not None else None,
            ))
    return plan

"""Target history: every signed digest a tag ever had, from the server's immutable versioned metadata.

The server keeps every version of every targets-type role (`N.targets.json`, `N.<role>.json`).
For each version this module reports what it signed for each target, and which keys' signatures
on it are valid. A key counts only if a *trusted* delegator listed it for that role: a root this
client verified (the pinned root and the chain ngclient walked, `root_history/`) for `targets`,
or a version of the delegating role that itself meets its threshold with such keys. Signatures
by any other key are reported by key id as unverified, never as signers. TUF metadata carries no
signing time: `signedAt` from the target's custom data (written by `tufnotary sign`) is shown when
present, with the version's expiry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root, Targets

from tufnotary.client.trusted import RoleNotPublishedError, TrustedState


@dataclass(frozen=True)
class HistoryEntry:
    role: str
    version: int
    target: str
    digest: str | None  # None: removed in this version
    length: int | None
    signed_at: str | None
    expires: datetime
    signers: tuple[str, ...]  # key ids with valid signatures by trusted keys
    unverified: tuple[str, ...] = ()  # key ids of other signatures
    meets_threshold: bool = True


@dataclass
class _RoleKeys:
    keys: dict[str, Key] = field(default_factory=dict)
    threshold: int = 1


def _digest(hashes: dict[str, str]) -> str:
    algo = "sha256" if "sha256" in hashes else sorted(hashes)[0]
    return f"{algo}:{hashes[algo]}"


def _trusted_roots(state: TrustedState) -> list[Root]:
    history = state.metadata_dir / "root_history"
    roots = [Metadata[Root].from_bytes(p.read_bytes()).signed for p in sorted(history.glob("*.root.json"))]
    return roots + [state.root.signed]


def _roles_in_order(state: TrustedState, target: str | None) -> list[str]:
    """Targets-type roles, delegators before delegates; bins reduced to the target's bin."""
    out, queue, seen = [], [Targets.type], set()
    while queue:
        role = queue.pop(0)
        if role in seen:
            continue
        seen.add(role)
        out.append(role)
        try:
            d = state.role(role).signed.delegations
        except RoleNotPublishedError:
            continue
        if d is None:
            continue
        if d.roles:
            queue.extend(d.roles)
        if d.succinct_roles is not None:
            sr = d.succinct_roles
            queue.extend([sr.get_role_for_target(target)] if target else sr.get_roles())
    return out


@dataclass(frozen=True)
class RoleVersion:
    """One stored version of a targets-type role, with the trusted keys whose signatures on it verify."""

    role: str
    version: int
    metadata: Metadata[Targets]
    signers: tuple[str, ...]  # key ids with valid signatures by keys a trusted delegator listed
    unverified: tuple[str, ...]  # key ids of every other signature
    meets_threshold: bool


def role_versions(state: TrustedState, target: str | None = None) -> Iterator[RoleVersion]:
    """Every stored version of every targets-type role (only `target`'s bin among hash bins),
    delegators before their delegates, each role's versions oldest first."""
    trusted: dict[str, _RoleKeys] = {Targets.type: _RoleKeys()}
    for root in _trusted_roots(state):
        role = root.roles[Targets.type]
        trusted[Targets.type].threshold = role.threshold
        for keyid in role.keyids:
            trusted[Targets.type].keys[keyid] = root.keys[keyid]
    for role in _roles_in_order(state, target):
        meta = state.snapshot.signed.meta.get(f"{role}.json")
        rk = trusted.get(role, _RoleKeys())
        for version in range(1, (meta.version if meta else 0) + 1):
            try:
                md = Metadata[Targets].from_bytes(state.fetch(f"{version}.{quote(role, safe='')}.json"))
            except Exception:  # noqa: BLE001 - a missing or unreadable version signs nothing
                continue
            signers, unverified = [], []
            for keyid, sig in md.signatures.items():
                key = rk.keys.get(keyid)
                try:
                    if key is None:
                        raise ValueError(keyid)
                    key.verify_signature(sig, md.signed_bytes)
                    signers.append(keyid)
                except Exception:  # noqa: BLE001 - any failure means "not a trusted signature"
                    unverified.append(keyid)
            meets = len(signers) >= rk.threshold
            if meets and md.signed.delegations is not None:
                d = md.signed.delegations
                delegated = list((d.roles or {}).values())
                if d.succinct_roles is not None:
                    delegated = [d.succinct_roles]
                for child in delegated:
                    names = child.get_roles() if d.succinct_roles is not None else [child.name]  # type: ignore[union-attr]
                    for name in names:
                        ck = trusted.setdefault(name, _RoleKeys())
                        ck.threshold = child.threshold
                        for keyid in child.keyids:
                            if keyid in d.keys:
                                ck.keys[keyid] = d.keys[keyid]
            yield RoleVersion(role, version, md, tuple(sorted(signers)), tuple(sorted(unverified)), meets)


def history(state: TrustedState, target: str | None = None) -> list[HistoryEntry]:
    """Each change of each target's signed digest (or only `target`'s), oldest version first."""
    out: list[HistoryEntry] = []
    last: dict[str, str | None] = {}
    current_role = None
    for rv in role_versions(state, target):
        if rv.role != current_role:
            current_role, last = rv.role, {}
        md = rv.metadata
        paths = [target] if target else sorted(set(md.signed.targets) | set(last))
        for path in paths:
            info = md.signed.targets.get(path)
            now = _digest(info.hashes) if info else None
            if path not in last and now is None:
                continue
            if last.get(path, "absent") == now:
                continue
            last[path] = now
            custom = info.custom if info else None
            signed_at = custom.get("signedAt") if isinstance(custom, dict) else None
            out.append(HistoryEntry(
                rv.role, rv.version, path, now, info.length if info else None,
                str(signed_at) if signed_at else None, md.signed.expires,
                rv.signers, rv.unverified, rv.meets_threshold,
            ))
    return out

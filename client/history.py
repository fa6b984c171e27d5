"""Target history: every signed digest a tag ever had, from the server's immutable versioned metadata.

The server keeps every version of every targets-type role (`N.targets.json`, `N.<role>.json`).
For each version this module reports what it signed for each target, and which keys' signatures
on it are valid. A key counts only if a *trusted* delegator listed it for that role: a root this
client verified (the pinned root and the chain ngclient walked, `root_history/`) for `targets`,
or a version of the delegating role that itself meets its threshold with such keys. Signatures
by any other key are reported by key id as unverified, never as signers.

TUF metadata carries no time of publication and no publisher: the server's audit log does. Its
changefeed records, per accepted publish, the time, the authenticated subject and the version of
every role written; `audit_index` reads it and `with_audit` joins it to the versions, so each
line says who published it and when. The changefeed needs a token with pull access (anonymous
pull does not extend to the audit log): without one the history still comes from the metadata,
and says why the subject is missing. `signedAt` from the target's custom data (written by
`tufnotary sign`, the publisher's own clock) is kept as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root, Targets

from tufnotary.client.errors import ServerError, ServerUnreachableError
from tufnotary.client.trusted import TrustedState

if TYPE_CHECKING:
    from tufnotary.client.http import ServerClient

ANONYMOUS_SUBJECT = "anonymous"  # what the server records when a request carried no token
CHANGEFEED_PAGE = 1000  # the server's largest page


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
    recorded: Recorded | None = None  # the audit record of the publish that wrote this version


@dataclass(frozen=True)
class Recorded:
    """Who published a role version and when, as the server's audit log recorded it."""

    seq: int
    time: str
    subject: str
    client: str | None

    @property
    def authenticated(self) -> bool:
        return self.subject != ANONYMOUS_SUBJECT


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
    # Delegators before delegates: a role's trusted keys come from its delegator's versions.
    for role in [visit.role for visit in state.walk(bin_for=target)]:
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


def index_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], Recorded]:
    """(role, version) -> the record of the publish that wrote it, from changefeed records in
    order. A deletion forgets what came before: a re-created collection reuses version numbers."""
    index: dict[tuple[str, int], Recorded] = {}
    for record in records:
        if record.get("action") == "delete":
            index.clear()
            continue
        details = record.get("details")
        roles = details.get("roles") if isinstance(details, dict) else None
        if not isinstance(roles, dict):
            continue
        recorded = Recorded(int(record.get("seq") or 0), str(record.get("time") or ""),
                            str(record.get("subject") or ""), record.get("client"))
        for role, version in roles.items():
            if isinstance(version, int):
                index[(str(role), version)] = recorded
    return index


def with_audit(entries: list[HistoryEntry], index: Mapping[tuple[str, int], Recorded]) -> list[HistoryEntry]:
    return [replace(e, recorded=index.get((e.role, e.version))) for e in entries]


def audit_index(server: ServerClient, collection: str) -> tuple[dict[tuple[str, int], Recorded] | None, str]:
    """Every audit record of `collection`, indexed by (role, version); or None and why not.

    History is useful without the audit log, so a refusal is a reason to show, not an error."""
    records: list[Mapping[str, Any]] = []
    since = 0
    try:
        while True:
            page = server.changefeed(collection, since=since, limit=CHANGEFEED_PAGE)
            records.extend(r for r in page["records"] if isinstance(r, dict))
            if not page.get("more") or int(page.get("next") or 0) <= since:
                break
            since = int(page["next"])
    except ServerUnreachableError as e:
        return None, f"the server's audit log could not be read ({e.message})"
    except ServerError as e:
        if e.status in (401, 403):
            return None, (f"the server's audit log needs a token with pull access to {collection} "
                          f"(anonymous pull does not cover it; {e.message}): set TUFNOTARY_USERNAME "
                          "and TUFNOTARY_PASSWORD, or log in to the server with 'docker login'")
        if e.status == 404 and e.server_code != "COLLECTION_NOT_FOUND":
            return None, "the server has no audit log (changefeed) to read"
        return None, f"the server's audit log could not be read ({e.message})"
    return index_records(records), ""

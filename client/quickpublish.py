"""The express publish: staged target changes signed and uploaded without python-tuf.

Most of a `tufnotary publish` was importing python-tuf and securesystemslib's signers and
refreshing the collection from the server (four requests) before its one upload. When the trust
directory already holds what a publish needs, this module builds the upload from it instead:

- the collection's root, targets, and the hash bins the staged paths fall in, as ngclient
  persisted them after verifying them, or as this client uploaded them and the server accepted
  them (`TrustDir.remember_published`);
- a root listing, among its snapshot keys, the key the server last gave for its snapshot role
  (the server signs snapshot and timestamp; no publisher-signed snapshot is needed);
- local keys meeting each changed role's threshold, of schemes `keyfiles.sign` signs.

Each changed role (targets, or the hash bins of the staged paths) becomes version + 1 with a
renewed expiry, is signed by every local key its delegator lists, and all of them go up in one
request: the upload the full publish (`publisher.py`) makes from the same state.

The local copy may be stale (another publisher's upload, a rotated key, a deleted collection).
The server then refuses the upload (a version, signature or threshold error, or not found), and
`publish` returns None having changed nothing, as it does when the trust directory lacks any of
the above. The caller then runs the full publish, which refreshes and verifies first and explains
any refusal in its own words. Nothing here trusts bytes from the server, and the server validates
this upload like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from tufnotary.client import keyfiles
from tufnotary.client.canonical import canonical_bytes, compact_json
from tufnotary.client.errors import ServerError
from tufnotary.client.results import PublishResult
from tufnotary.client.trustdir import StagedChanges, TrustDir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    from tufnotary.client.http import ServerClient

# Refusals a refreshed state may avoid: the full publish retries them and explains them.
RETRY_STATUSES = frozenset({400, 404, 409})
EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as python-tuf writes `expires`


def role_for_target(succinct: dict[str, Any], path: str) -> str:
    """The hash bin of target `path` under a `succinct_roles` delegation (TAP 15: the leftmost
    `bit_length` bits of the path's sha256, as python-tuf's `SuccinctRoles` computes it)."""
    bit_length = int(succinct["bit_length"])
    if not 0 < bit_length <= 32:
        raise ValueError(f"bit_length {bit_length} is not between 1 and 32")
    import hashlib  # here: hashlib loads the system's OpenSSL; a collection without bins never needs it

    first = int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "big")
    width = len(f"{2 ** bit_length - 1:x}")
    return f"{succinct['name_prefix']}-{first >> (32 - bit_length):0{width}x}"


class RoleDraft(NamedTuple):
    """One role this publish re-signs: its next `signed` body and the delegation it must meet."""

    name: str
    signed: dict[str, Any]
    keys: dict[str, dict[str, Any]]  # the delegator's keys: key id -> TUF key dict
    keyids: list[str]
    threshold: int


class Plan(NamedTuple):
    """The roles of one express publish, and what it does to the staged paths."""

    roles: list[RoleDraft]
    added: list[str]
    removed: list[str]
    not_present: list[str]


def _persisted(trust: TrustDir, collection: str, role: str) -> dict[str, Any] | None:
    try:
        md = json.loads(trust.role_metadata_path(collection, role).read_bytes())
    except (OSError, ValueError):
        return None
    return md["signed"] if isinstance(md, dict) and isinstance(md.get("signed"), dict) else None


def plan(trust: TrustDir, collection: str, staged: StagedChanges, now: datetime) -> Plan | None:
    """The next versions of the roles `staged` changes, from the trust directory alone; None when
    it lacks anything the express publish needs (see the module docstring)."""
    root = _persisted(trust, collection, "root")
    targets = _persisted(trust, collection, "targets")
    if root is None or targets is None or not staged.changes:
        return None
    try:
        if trust.read_server_keyids(collection).get("snapshot") not in root["roles"]["snapshot"]["keyids"]:
            return None
        delegations = targets.get("delegations") or {}
        succinct = delegations.get("succinct_roles")
        if succinct is None:
            delegated = root["roles"]["targets"]
            groups = {"targets": (targets, staged.changes)}
            keys = root["keys"]
        else:
            delegated, keys = succinct, delegations["keys"]
            by_bin: dict[str, dict[str, dict[str, Any] | None]] = {}
            for path, change in staged.changes.items():
                by_bin.setdefault(role_for_target(succinct, path), {})[path] = change
            groups = {}
            for name, changes in by_bin.items():
                signed = _persisted(trust, collection, name)
                if signed is None:
                    return None
                groups[name] = (signed, changes)
        keyids, threshold = list(delegated["keyids"]), int(delegated["threshold"])
        lifetime = trust.read_settings(collection).lifetime
        result = Plan([], [], [], [])
        for name, (signed, changes) in sorted(groups.items()):
            signed["version"] = int(signed["version"]) + 1
            signed["expires"] = (now + lifetime(name)).strftime(EXPIRES_FORMAT)
            entries = signed["targets"]
            for path, change in sorted(changes.items()):
                if change is None:
                    (result.removed if entries.pop(path, None) is not None else result.not_present).append(path)
                else:
                    entries[path] = dict(change)
                    result.added.append(path)
            result.roles.append(RoleDraft(name, signed, keys, keyids, threshold))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # not the shape python-tuf wrote: the full publish says what is wrong
    return result


def _local_keys(trust: TrustDir, role: RoleDraft) -> list[str]:
    return [k for k in dict.fromkeys(role.keyids)
            if k in role.keys and role.keys[k].get("scheme") in keyfiles.SCHEMES
            and keyfiles.has_private(trust.root, k)]


def sign(trust: TrustDir, roles: list[RoleDraft], passphrases: keyfiles.Passphrases) -> dict[str, bytes] | None:
    """Each role's metadata signed by every local key its delegation lists, serialized as
    python-tuf's `Metadata.to_bytes` does (compact JSON, sorted keys); None unless local keys
    meet every threshold."""
    local = {role.name: _local_keys(trust, role) for role in roles}
    if any(len(local[role.name]) < role.threshold for role in roles):
        return None
    private: dict[str, PrivateKeyTypes] = {}
    uploads = {}
    for role in roles:
        payload = canonical_bytes(role.signed)
        signatures = []
        for keyid in local[role.name]:
            if keyid not in private:
                private[keyid] = keyfiles.decrypt(trust.root, keyid, passphrases)
            scheme = role.keys[keyid]["scheme"]
            if not keyfiles.signs(private[keyid], scheme):
                return None  # the key file does not match its delegation: the full path says so
            signatures.append({"keyid": keyid, "sig": keyfiles.sign(private[keyid], scheme, payload)})
        uploads[role.name] = _compact_metadata(signatures, role.signed, payload)
    return uploads


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # what compact_json escapes in ASCII besides " and \\


def _compact_metadata(signatures: list[dict[str, str]], signed: dict[str, Any], payload: bytes) -> bytes:
    """`compact_json({"signatures": signatures, "signed": signed})`, encoded. Canonical JSON in
    printable ASCII is the compact encoding of `signed` too, so `payload` is used as it is rather
    than encoded a second time."""
    if not payload.isascii() or _CONTROL.search(payload):  # compact_json escapes what canonical JSON writes raw
        return compact_json({"signatures": signatures, "signed": signed}).encode()
    return b'{"signatures":' + compact_json(signatures).encode() + b',"signed":' + payload + b"}"


def publish(trust: TrustDir, collection: str, server: ServerClient, passphrases: keyfiles.Passphrases,
            now: Callable[[], datetime] | None = None) -> PublishResult | None:
    """Publish the staged changes of targets (or its hash bins) the express way; None when the
    full publish must do it (nothing was uploaded or changed then)."""
    trust.read_keys(collection)  # the publisher's own collection, or the usual refusal
    staged = trust.read_staged(collection)
    at = (now or (lambda: datetime.now(timezone.utc).replace(microsecond=0)))()
    drafted = plan(trust, collection, staged, at)
    uploads = sign(trust, drafted.roles, passphrases) if drafted is not None else None
    if drafted is None or uploads is None:
        return None
    try:
        reply = server.upload(collection, uploads)
    except ServerError as e:
        if e.status in RETRY_STATUSES:
            return None
        raise
    trust.write_staged(collection, StagedChanges({}))
    for name, data in uploads.items():
        trust.remember_published(collection, name, data)
    versions = {role.name: role.signed["version"] for role in drafted.roles}
    return PublishResult(
        collection, versions.get("targets", max(versions.values())), drafted.added, drafted.removed,
        drafted.not_present, reply.get("versions", {}), sorted(versions), express=True,
    )

"""Staging target changes in the trust directory: the bookkeeping behind `add` and `remove`.

Staging is local and needs no TUF object, no network and no cryptography beyond hashing, so this
module imports none of them: `tufnotary add` and `remove` skip the ~200 ms of imports a publish
needs (python-tuf, securesystemslib, urllib3; see docs/client.md, "Start-up cost"). A staged
addition is the TUF target entry (`length`, `hashes`, optional `custom`) that `publish` later
turns into a `TargetFile` of the signed metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tufnotary.client.errors import UsageError
from tufnotary.client.names import check_target_path
from tufnotary.client.trustdir import TrustDir

HASH_ALGORITHMS = ("sha256", "sha512")
_DIGEST_RE = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StagedTarget:
    """One target to stage: its path and TUF target entry."""

    path: str
    length: int
    hashes: dict[str, str]
    custom: Any = None

    def entry(self) -> dict[str, Any]:
        """The TUF target entry, as staged and later signed."""
        d: dict[str, Any] = {"length": self.length, "hashes": dict(self.hashes)}
        if self.custom is not None:
            d["custom"] = self.custom
        return d


def parse_custom(text: str | None) -> Any:
    """The target's `custom` value from a JSON string (None when not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise UsageError(f"--custom is not valid JSON: {e}") from e


def target_from_digest(target: str, digest: str, length: int, custom: Any = None) -> StagedTarget:
    """A target known only by digest (e.g. an OCI manifest 'sha256:...')."""
    match = _DIGEST_RE.fullmatch(digest.lower())
    if match is None:
        raise UsageError(
            f"invalid digest {digest!r}: expected sha256:<64 hex digits> or sha512:<128 hex digits>"
        )
    if length < 0:
        raise UsageError(f"invalid length {length}: must be zero or more bytes")
    algo = match.group(1) or match.group(3)
    value = match.group(2) or match.group(4)
    return StagedTarget(check_target_path(target), length, {algo: value}, custom)


def target_from_file(target: str, path: Path, custom: Any = None) -> StagedTarget:
    """A local file as a target: its length, sha256 and sha512 (read once)."""
    check_target_path(target)
    digests = [hashlib.new(algo) for algo in HASH_ALGORITHMS]
    length = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                length += len(chunk)
                for d in digests:
                    d.update(chunk)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    return StagedTarget(target, length, {d.name: d.hexdigest() for d in digests}, custom)


def stage(
    trust: TrustDir, collection: str, changes: dict[str, dict[str, Any] | None], role: str | None = None
) -> None:
    """Record `changes` (target path -> TUF target entry to add, or None to remove) in one write
    of the staging file of `role` (of targets, or routed to hash bins at publish, when None).

    Targets are staged only by the collection's publisher (its keys.json), a delegated role's
    changes by anyone who trusts the collection (a pinned root)."""
    if role is None:
        trust.read_keys(collection)
    else:
        trust.read_pinned_root(collection)
    staged = trust.read_staged(collection, role)
    staged.changes.update(changes)
    trust.write_staged(collection, staged, role)

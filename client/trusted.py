"""Verified metadata of one collection, role by role, as python-tuf's ngclient accepted it.

`TrustedState` wraps a refreshed `Updater`. Top-level roles come from the files ngclient
persisted after verifying them; a delegated role is loaded *by name* through ngclient's own
verification step (`Updater._load_targets`: the method `get_targetinfo` uses for each role of
its walk), because ngclient's public API reaches delegated roles only by target path. That is
the one private python-tuf call of the client; everything else is public API.

Owners may load a collection whose targets (or a delegated role) expired: such a role is
checked exactly like ngclient does (signed by a threshold of its delegator, at the version the
verified snapshot lists) except for its expiry, and it is recorded in `expired` so that callers
can say so. Consumers never get that leniency.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import (
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    Targets,
    Timestamp,
)
from tuf.ngclient import Updater

from tufnotary.client.errors import ClientError, VerificationError

TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")


class RoleNotPublishedError(ClientError):
    """A delegated role exists in its delegator but has no metadata on the server yet."""

    code = "ROLE_NOT_PUBLISHED"


class RoleNotDelegatedError(ClientError):
    """No role of the collection delegates to the named role."""

    code = "ROLE_NOT_DELEGATED"


def read_persisted(metadata_dir: Path, role: str) -> Metadata[Any]:
    """A metadata file ngclient persisted after verifying it."""
    return Metadata.from_bytes((metadata_dir / f"{quote(role, safe='')}.json").read_bytes())


def delegates(parent: Targets, role: str) -> bool:
    d = parent.delegations
    if d is None:
        return False
    if d.roles is not None and role in d.roles:
        return True
    return d.succinct_roles is not None and d.succinct_roles.is_delegated_role(role)


def succinct(targets: Targets) -> SuccinctRoles | None:
    return targets.delegations.succinct_roles if targets.delegations is not None else None


@dataclass(frozen=True)
class RoleVisit:
    """One role of `TrustedState.walk`: its name, its delegator, and its verified metadata
    (None: delegated but not published yet)."""

    role: str
    parent: str
    metadata: Metadata[Targets] | None


@dataclass
class TrustedState:
    """Verified metadata of one collection after one refresh."""

    collection: str
    updater: Updater
    metadata_dir: Path
    fetch: Any  # callable(filename) -> bytes, unverified bytes from the server
    root_version_before: int
    lenient: bool = False  # owners: load expired roles (listed in `expired`)
    expired: list[str] = field(default_factory=list)
    _roles: dict[str, Metadata[Targets]] = field(default_factory=dict)
    _parents: dict[str, str] = field(default_factory=dict)

    @cached_property
    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_bytes((self.metadata_dir / "root.json").read_bytes())

    @cached_property
    def timestamp(self) -> Metadata[Timestamp]:
        return read_persisted(self.metadata_dir, Timestamp.type)

    @cached_property
    def snapshot(self) -> Metadata[Snapshot]:
        return read_persisted(self.metadata_dir, Snapshot.type)

    def root_chain(self) -> Iterator[tuple[Metadata[Root], Metadata[Root]]]:
        """(previous, new) root pairs ngclient accepted in this refresh."""
        history = self.metadata_dir / "root_history"
        current = self.root.signed.version
        previous = Metadata[Root].from_bytes(
            (history / f"{self.root_version_before}.root.json").read_bytes()
        )
        for version in range(self.root_version_before + 1, current + 1):
            new = Metadata[Root].from_bytes((history / f"{version}.root.json").read_bytes())
            yield previous, new
            previous = new

    def targets(self) -> Metadata[Targets]:
        return self.role(Targets.type)

    def walk(self, bins: bool = True, bin_for: str | None = None) -> Iterator[RoleVisit]:
        """Every targets-type role, breadth first from `targets`, each once, delegators before
        their delegates (named roles in their delegator's order, then hash bins).

        The one walk of the delegation tree: listing, status, bundles, history and `parent_of`
        all see the same roles in the same order. A delegated role without published metadata
        is visited with `metadata=None` and not descended into; other load errors (an expired
        role, for consumers) propagate. `bins=False` does not descend into hash bins (the
        delegator still lists them); `bin_for` descends only into the bin of that target path.
        """
        queue: list[tuple[str, str]] = [(Targets.type, Root.type)]
        seen: set[str] = set()
        while queue:
            name, parent = queue.pop(0)
            if name in seen:
                continue
            seen.add(name)
            try:
                md: Metadata[Targets] | None = self.role(name)
            except RoleNotPublishedError:
                md = None
            yield RoleVisit(name, parent, md)
            d = md.signed.delegations if md is not None else None
            if d is None:
                continue
            children = list(d.roles or [])
            if d.succinct_roles is not None and bins:
                sr = d.succinct_roles
                children += [sr.get_role_for_target(bin_for)] if bin_for is not None else sr.get_roles()
            for child in children:
                # Recorded before the child is loaded: `role(child)` asks `parent_of(child)`.
                self._parents.setdefault(child, name)
                queue.append((child, name))

    def parent_of(self, role: str) -> str:
        """The role that delegates `role` (searching the delegation tree breadth first)."""
        if role == Targets.type:
            return Root.type
        if role in self._parents:
            return self._parents[role]
        for visit in self.walk(bins=False):
            if visit.metadata is not None and delegates(visit.metadata.signed, role):
                self._parents[role] = visit.role
                return visit.role
        raise RoleNotDelegatedError(
            f"no role of {self.collection} delegates to {role!r}: see 'tufnotary delegation list "
            f"{self.collection}'"
        )

    def delegator(self, role: str) -> Root | Targets:
        parent = self.parent_of(role)
        return self.root.signed if parent == Root.type else self.role(parent).signed

    def role(self, role: str) -> Metadata[Targets]:
        """Verified metadata of a targets-type role (raises RoleNotPublishedError if absent)."""
        if role in self._roles:
            return self._roles[role]
        parent = self.parent_of(role)
        if f"{role}.json" not in self.snapshot.signed.meta:
            raise RoleNotPublishedError(
                f"{role} is delegated in {self.collection} but has not been published yet"
            )
        try:
            self.updater._load_targets(role, parent)  # noqa: SLF001 - see the module docstring
            md: Metadata[Targets] = read_persisted(self.metadata_dir, role)
        except tuf_exc.ExpiredMetadataError:
            if not self.lenient:
                raise
            md = self._load_expired(role, parent)
            self.expired.append(role)
        self._roles[role] = md
        return md

    def _load_expired(self, role: str, parent: str) -> Metadata[Targets]:
        """`role` as ngclient would verify it, except that it may have expired."""
        version = self.snapshot.signed.meta[f"{role}.json"].version
        data = self.fetch(f"{version}.{quote(role, safe='')}.json")
        md = Metadata[Targets].from_bytes(data)
        delegator = self.root.signed if parent == Root.type else self.role(parent).signed
        try:
            delegator.verify_delegate(role, md.signed_bytes, md.signatures)
        except tuf_exc.UnsignedMetadataError as e:
            raise VerificationError(f"{role} of {self.collection} is not signed by its keys: {e}") from e
        if md.signed.version != version or md.signed.type != Targets.type:
            raise VerificationError(
                f"{role} of {self.collection} is not the version {version} the snapshot lists"
            )
        return md

"""The high-water-mark rule over a batch of claims: which versions a set of locked catalog rows lets be signed.

Pure: the rows (as read under lock in one transaction) and the claims in, each claim's outcome and the
writes that make the accepted ones durable out. Claims are decided in order, each seeing the effect of
the ones before it, so a batch decides exactly as the same claims made one after another would: a second
claim of one version is `VERSION_ALREADY_SIGNED`, a pending key's first accepted claim retires the active
key of its pair, and a later claim on that retired key is `KEY_RETIRED`. A claim that names a collection and
role is refused unless they are its key's (`binding_error`), checked on the locked row before anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tufnotary.signer.errors import (
    InvalidRequestError,
    KeyNotFoundError,
    KeyRetiredError,
    RollbackRefusedError,
    SignerError,
    VersionAlreadySignedError,
)


class Claim(NamedTuple):
    """A signature about to be made: the key, the version of the payload, the payload's SHA-256 (hex), and the
    collection and role the request named for the key (None: not checked). A tuple: a batch makes one per item."""

    key_id: str
    version: int
    payload_sha256: str
    collection: str | None = None
    role: str | None = None


class KeyState(NamedTuple):
    """A catalog row as read under its row lock: what it is for and its mutable part."""

    key_id: str
    collection: str
    role: str
    state: str
    highest: int


def binding_error(key_id: str, key_collection: str, key_role: str, collection: str, role: str) -> SignerError | None:
    """The refusal of a request naming (`collection`, `role`) for a key of (`key_collection`, `key_role`), or None."""
    if collection == key_collection and role == key_role:
        return None
    return InvalidRequestError(
        f"key {key_id} belongs to {key_collection} {key_role}, "
        f"not to {collection or '(no collection)'} {role or '(no role)'}"
    )


@dataclass
class Decision:
    """Per-claim outcome (None: accepted) and what to write, in this order: the active keys retired by a
    promotion, the new mark of every key with an accepted claim (its last, i.e. highest, accepted version), the
    pending keys promoted to active (after the retirements: one active key per pair at every statement), the
    accepted claims' audit rows."""

    outcomes: list[SignerError | None] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    accepted: list[Claim] = field(default_factory=list)


def decide(rows: Mapping[str, KeyState], claims: Sequence[Claim]) -> Decision:
    """Decide `claims` in order against `rows` (every claimed key that exists, plus the active key of the
    pair of every pending one). A refused claim changes nothing, for itself or for the claims after it."""
    state = {key_id: row.state for key_id, row in rows.items()}
    highest = {key_id: row.highest for key_id, row in rows.items()}
    active_of = {(row.collection, row.role): key_id for key_id, row in rows.items() if row.state == "active"}
    decision = Decision()
    outcomes = decision.outcomes
    for claim in claims:
        key_id = claim.key_id
        row = rows.get(key_id)
        if row is None:
            outcomes.append(KeyNotFoundError(f"the signer holds no key {key_id}"))
            continue
        if (claim.collection is not None or claim.role is not None) and (
            claim.collection != row.collection or claim.role != row.role
        ):
            outcomes.append(binding_error(key_id, row.collection, row.role, claim.collection or "", claim.role or ""))
            continue
        current = state[key_id]
        if current == "retired":
            outcomes.append(KeyRetiredError(f"key {key_id} is retired: it never signs again"))
            continue
        mark = highest[key_id]
        partner = active_of.get((row.collection, row.role)) if current == "pending" else None
        if partner is not None:
            mark = max(mark, highest[partner])
        version = claim.version
        if version == mark:
            outcomes.append(VersionAlreadySignedError(
                f"version {version} already signed: key {key_id} ({row.collection} {row.role}) "
                f"signs only versions above {mark}",
                mark,
            ))
            continue
        if version < mark:
            outcomes.append(RollbackRefusedError(
                f"key {key_id} already signed version {mark}; it will not sign the lower version {version}",
                mark,
            ))
            continue
        if partner is not None:
            state[partner] = "retired"
            decision.retired.append(partner)
        if current == "pending":  # now the pair's active key (an active key already is)
            decision.promoted.append(key_id)
            state[key_id] = "active"
            active_of[row.collection, row.role] = key_id
        highest[key_id] = version
        decision.accepted.append(claim)
        outcomes.append(None)
    return decision

"""What a publish did: the one result both publish paths (`publisher.py`, `quickpublish.py`) return."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tufnotary.client.draft import Missing
    from tufnotary.client.publisher import SubmitResult


class PublishResult(NamedTuple):
    """What one publish did (a NamedTuple, not a dataclass: importing dataclasses was ~13 ms of every
    publish)."""

    collection: str
    targets_version: int
    added: list[str]
    removed: list[str]
    not_present: list[str]  # staged removals of targets that were not signed anyway
    versions: dict[str, int]
    roles: list[str]  # roles re-signed by this publish
    saved: Path | None = None
    missing: Sequence[Missing] = ()
    submitted: SubmitResult | None = None
    express: bool = False  # built from the trust directory without a refresh (quickpublish.py)

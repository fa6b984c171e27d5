"""What a publish did: the one result both publish paths (`publisher.py`, `quickpublish.py`) return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tufnotary.client.draft import Missing
    from tufnotary.client.publisher import SubmitResult


@dataclass(frozen=True)
class PublishResult:
    collection: str
    targets_version: int
    added: list[str]
    removed: list[str]
    # Staged removals of targets that were not signed anyway.
    not_present: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)  # roles re-signed by this publish
    saved: Path | None = None
    missing: list[Missing] = field(default_factory=list)
    submitted: SubmitResult | None = None
    express: bool = False  # built from the trust directory without a refresh (quickpublish.py)

"""Reading typed settings from TUFNOTARY_SERVER_* environment variables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "TUFNOTARY_SERVER_"


def read_fields(environ: Mapping[str, str], fields: Mapping[str, tuple[str, Callable[[str], Any]]]) -> dict[str, Any]:
    """Parse each set variable ENV_PREFIX+suffix into its field; unset or empty ones are left out."""
    values: dict[str, Any] = {}
    for suffix, (name, parse) in fields.items():
        raw = environ.get(ENV_PREFIX + suffix)
        if raw:
            try:
                values[name] = parse(raw)
            except ValueError as e:
                raise ValueError(f"{ENV_PREFIX + suffix}: cannot read {raw!r}: {e}") from e
    return values

"""The consumer's configuration file: algorithm policy and the expiry warning window.

`<trust-dir>/config.toml` (or the file given with `--config`), for example:

    deny-algorithms = ["rsa<3072", "ecdsa-sha2-nistp256"]
    expiry-warning-days = 30

Configuration is a frozen dataclass; this module reads only the file it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tufnotary.client.errors import UsageError
from tufnotary.client.policy import AlgorithmPolicy

DEFAULT_WARNING_DAYS = 30.0


@dataclass(frozen=True)
class ClientConfig:
    policy: AlgorithmPolicy = field(default_factory=AlgorithmPolicy)
    expiry_warning_days: float = DEFAULT_WARNING_DAYS


def load_config(path: Path, required: bool = False) -> ClientConfig:
    """Read `path`; a missing file gives the defaults unless `required`.

    tomllib is imported only when there is a file to parse: most commands run without one and
    should not pay for compiling its grammar."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise UsageError(f"configuration file {path} does not exist") from None
        return ClientConfig()
    except (OSError, ValueError) as e:  # unreadable, or not UTF-8
        raise UsageError(f"cannot read configuration file {path}: {e}") from e
    import tomllib

    try:
        data = tomllib.loads(text)
    except ValueError as e:
        raise UsageError(f"cannot read configuration file {path}: {e}") from e
    unknown = set(data) - {"deny-algorithms", "expiry-warning-days"}
    if unknown:
        raise UsageError(
            f"{path}: unknown settings {', '.join(sorted(unknown))}; "
            "known: deny-algorithms, expiry-warning-days"
        )
    deny = data.get("deny-algorithms", [])
    if not isinstance(deny, list) or not all(isinstance(d, str) for d in deny):
        raise UsageError(f"{path}: deny-algorithms must be a list of strings")
    days = data.get("expiry-warning-days", DEFAULT_WARNING_DAYS)
    if not isinstance(days, int | float) or days < 0:
        raise UsageError(f"{path}: expiry-warning-days must be a number >= 0")
    return ClientConfig(AlgorithmPolicy.parse(deny, str(path)), float(days))

"""Client-side checks of collection names and target paths, before they touch disk or URLs."""

from __future__ import annotations

import re

from tufnotary.client.errors import UsageError

# Same grammar as the server: OCI repository-name components joined by '/'.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COLLECTION_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
MAX_COLLECTION_LENGTH = 255


def check_collection(name: str) -> str:
    """Return `name` if it is a valid collection name, else raise UsageError."""
    if len(name) > MAX_COLLECTION_LENGTH or not _COLLECTION_RE.fullmatch(name):
        raise UsageError(
            f"invalid collection name {name!r}: use lowercase path components of letters and "
            "digits separated by '.', '_' or '-', joined by '/', e.g. 'wabbit-networks/net-monitor'"
        )
    return name


def check_target_path(path: str) -> str:
    """Return `path` if it is a usable TUF target path (relative, no empty/'.'/'..' segments)."""
    segments = path.split("/")
    if not path or any(s in ("", ".", "..") for s in segments) or any(
        c.isspace() or ord(c) < 32 for c in path
    ):
        raise UsageError(
            f"invalid target name {path!r}: use a relative path such as 'net-monitor:v1' or "
            "'charts/app-1.0.tgz' without empty, '.' or '..' segments or whitespace"
        )
    return path

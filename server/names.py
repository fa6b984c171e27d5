"""The grammar of collection and role names, checked before anything touches storage."""

from __future__ import annotations

import re

from tufnotary.server.errors import BadRoleError, InvalidCollectionError

MAX_COLLECTION_LENGTH = 255
MAX_ROLE_LENGTH = 255
TOP_LEVEL_ROLES = ("root", "targets", "snapshot", "timestamp")

# OCI repository-name components: lowercase alphanumerics with single separators.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COLLECTION_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# Delegated role names: printable, '/'-separated segments, none empty, '.' or '..'.
_ROLE_SEGMENT_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
_VERSION_PREFIX_RE = re.compile(r"[0-9]+\.")


def check_collection(name: str) -> str:
    """Return `name` if it is a valid collection name, else raise InvalidCollectionError."""
    if len(name) > MAX_COLLECTION_LENGTH:
        raise InvalidCollectionError(
            f"collection name is {len(name)} characters long; at most {MAX_COLLECTION_LENGTH} are allowed"
        )
    if not _COLLECTION_RE.fullmatch(name):
        raise InvalidCollectionError(
            f"invalid collection name {name!r}: use lowercase path components of letters and digits "
            "separated by '.', '_', '__' or '-', joined by '/', e.g. 'wabbit-networks/net-monitor'"
        )
    return name


def check_role(name: str) -> str:
    """Return `name` if it is a valid role name, else raise BadRoleError."""
    if name in TOP_LEVEL_ROLES:
        return name
    if not name or len(name) > MAX_ROLE_LENGTH:
        raise BadRoleError(
            f"role name must be 1 to {MAX_ROLE_LENGTH} characters long", {"role": name[:64]}
        )
    segments = name.split("/")
    if _VERSION_PREFIX_RE.match(name):
        raise BadRoleError(
            f"invalid role name {name!r}: a name starting with digits and '.' would be read as a "
            "versioned file name (N.role.json)",
            {"role": name[:64]},
        )
    if any(s in ("", ".", "..") or not _ROLE_SEGMENT_RE.fullmatch(s) for s in segments):
        raise BadRoleError(
            f"invalid role name {name!r}: use letters, digits, '.', '_' and '-', in '/'-separated "
            "segments that are not empty, '.' or '..'",
            {"role": name[:64]},
        )
    return name

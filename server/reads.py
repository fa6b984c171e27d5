"""What a GET of a metadata file answers: the file name's meaning, and the response's status, headers
and body. Shared by the Flask route (`api.get_metadata`) and the fast read path (`fastread.py`), so
that both answer byte for byte the same."""

from __future__ import annotations

import re

from tufnotary.server.storage import StoredFile

_VERSIONED = re.compile(r"(?P<version>[0-9]+)\.(?P<role>.+)\.json")
_CURRENT = re.compile(r"(?P<role>.+)\.json")
# Versioned files never change: any cache may keep them. Current files change on publish.
IMMUTABLE = "public, max-age=31536000, immutable"


def parse_filename(filename: str) -> tuple[str, int | None] | None:
    """(role, version) of "N.role.json" or (role, None) of "role.json"; None for any other name."""
    if match := _VERSIONED.fullmatch(filename):
        return match["role"], int(match["version"])
    if match := _CURRENT.fullmatch(filename):
        return match["role"], None
    return None


def current_cache_control(shared_max_age: int) -> str:
    """Current files (timestamp.json, root.json...): every client revalidates; shared caches such as
    a CDN may serve one for `shared_max_age` seconds, which caps origin reads per edge."""
    return f"public, max-age=0, s-maxage={shared_max_age}" if shared_max_age > 0 else "no-cache"


def answer(stored: StoredFile, versioned: bool, if_none_match: str | None,
           shared_max_age: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a GET of `stored`: 200 with the bytes, or 304 if the client has them."""
    etag = f'"{stored.sha256}"'
    cache_control = IMMUTABLE if versioned else current_cache_control(shared_max_age)
    headers = [("ETag", etag), ("Cache-Control", cache_control)]
    if if_none_match == etag:
        return 304, headers, b""  # no body, so no Content-Type or Content-Length either
    return 200, [("Content-Type", "application/json"), *headers], stored.data

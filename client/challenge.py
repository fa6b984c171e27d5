"""`WWW-Authenticate` challenges, as registries and the metadata server send them."""

from __future__ import annotations

import re
from typing import NamedTuple

_PARAM = re.compile(r'\s*([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


class Challenge(NamedTuple):
    """A parsed `WWW-Authenticate` header: its scheme (lower case, e.g. `bearer`) and parameters
    (names lower case)."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """The challenge of a `WWW-Authenticate` header (`Bearer realm="…",service="…"`), or None."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)

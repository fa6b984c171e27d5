"""Canonical JSON (OLPC), the bytes TUF signatures are over, made by json's C encoder where it can.

securesystemslib's `encode_canonical` is pure Python: a 1,000-target file takes it tens of
milliseconds, and importing it costs every CLI command securesystemslib and `logging`.
`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes the very same text
when it writes no escape (canonical JSON escapes only `"` and `\\`, and writes control characters
raw) and no float (canonical JSON refuses them). Otherwise, and on any other doubt, the result is
`encode_canonical`'s own, errors included. Metadata rarely has a backslash or quote in a string;
PEM keys (newlines) do, and take the slow path.

Pure and free of python-tuf: the express publish, the server and its tests share it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# What python-tuf's compact serialiser writes (`JSONSerializer(compact=True)`), and so what our client
# uploads: not canonical JSON (non-ASCII and control characters are escaped), but the same key order.
compact_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
# Outside strings a float's digits run into `.` or an exponent; an integer's never do.
_FLOAT = re.compile(r"[0-9][.eE]")


def fast_canonical(value: Any) -> bytes | None:
    """The canonical JSON bytes of `value` (JSON types with str keys, as json.loads and python-tuf's
    `to_dict` make), or None when json's encoder cannot vouch for them."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return None
    if "\\" in text:
        return None
    # With no escapes, every `"` opens or closes a string: the even parts are outside strings.
    if _FLOAT.search("".join(text.split('"')[::2])):
        return None
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: let encode_canonical's path report it
        return None


def canonical_bytes(value: Any) -> bytes:
    """`encode_canonical(value).encode()`, with its exceptions, faster."""
    fast = fast_canonical(value)
    if fast is not None:
        return fast
    from securesystemslib.formats import encode_canonical  # only for what json's encoder cannot vouch for

    encoded = encode_canonical(value)
    assert encoded is not None
    return encoded.encode()

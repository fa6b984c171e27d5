"""The version and expiry of a TUF `signed` dict of the plain shape our metadata server sends, read without
building python-tuf objects (which cost the signer about as much CPU as the signature itself).

`plain_fields` answers only when python-tuf (`Timestamp.from_dict` / `Snapshot.from_dict`) would accept the dict
and find the same version and expiry. For anything else — unrecognized fields, `null` or `true` where a number is
expected, dates `strptime` reads more leniently, malformed metadata — it answers None and the caller lets
python-tuf decide, so the signer accepts and refuses exactly what python-tuf does.

`canonical_plain_timestamp` goes one step further for the timestamp our server sends: it reads the version and
expiry straight from the payload bytes when they are, character for character, the canonical JSON of a plain
timestamp — which then needs neither decoding nor re-encoding to be checked.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

_EXPIRES = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z", re.ASCII)
# python-tuf: two or three dot-separated digit strings, the first "1".
_SPEC_VERSION = re.compile(r"1\.[0-9]+(?:\.[0-9]+)?", re.ASCII)
_SIGNED_KEYS = frozenset({"_type", "spec_version", "version", "expires", "meta"})
# The canonical JSON of a plain timestamp, and nothing else: the keys in canonical (sorted) order, no whitespace,
# integers without leading zeros, strings of characters that need no escaping. A snapshot.json entry with an
# optional lowercase-hex sha256 hash and an optional length. Anything else is left to the decoding path.
_CANONICAL_TIMESTAMP = re.compile(
    rb'\{"_type":"timestamp","expires":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)",'
    rb'"meta":\{"snapshot\.json":\{(?:"hashes":\{"sha256":"[0-9a-f]+"\},)?(?:"length":(?:0|[1-9][0-9]*),)?'
    rb'"version":[1-9][0-9]*\}\},"spec_version":"(1\.[0-9]+(?:\.[0-9]+)?)","version":([1-9][0-9]*)\}'
)
_META_FILE_KEYS = frozenset({"version", "length", "hashes"})


def plain_fields(signed: dict[str, Any], role: str) -> tuple[int, datetime] | None:
    """(version, expires in UTC) of `signed` if it is plain `role` ("timestamp" or "snapshot") metadata that
    python-tuf accepts, else None (python-tuf must decide). Never raises; never changes `signed`."""
    if signed.keys() != _SIGNED_KEYS or signed["_type"] != role:
        return None
    version, spec_version, meta = signed["version"], signed["spec_version"], signed["meta"]
    if type(version) is not int or version < 1:
        return None
    if type(spec_version) is not str or not _plain_spec_version(spec_version):
        return None
    if type(meta) is not dict:
        return None
    if role == "timestamp":
        if meta.keys() != {"snapshot.json"}:
            return None
    elif role != "snapshot":
        return None
    for entry in meta.values():  # a loop: all() over a generator cost a third of this function
        if not _plain_meta_file(entry):
            return None
    expires = signed["expires"]
    expires = _expires(expires) if type(expires) is str else None
    return None if expires is None else (version, expires)


def canonical_plain_timestamp(payload: bytes) -> tuple[int, datetime] | None:
    """(version, expires in UTC) if `payload` is exactly the canonical JSON of a plain timestamp (see
    `_CANONICAL_TIMESTAMP`) that python-tuf accepts; else None (decode the payload and decide from there). When it
    answers, decoding, the canonical check and `plain_fields` would answer the same."""
    match = _CANONICAL_TIMESTAMP.fullmatch(payload)
    if match is None:
        return None
    expires = _expires(match[1].decode("ascii"))
    return None if expires is None else (int(match[3]), expires)


def _plain_meta_file(entry: Any) -> bool:
    """Whether `entry` is a MetaFile dict python-tuf accepts, with no unrecognized fields."""
    if type(entry) is not dict or not entry.keys() <= _META_FILE_KEYS:
        return False
    version = entry.get("version")
    if type(version) is not int or version < 1:
        return False
    if "length" in entry and (type(entry["length"]) is not int or entry["length"] < 0):
        return False
    if "hashes" in entry:
        hashes = entry["hashes"]
        if type(hashes) is not dict or not hashes:
            return False
        for name, value in hashes.items():
            if type(name) is not str or type(value) is not str:
                return False
    return True


# A batch's payloads share a few expiry and spec_version strings: each is read once. Both caches are bounded
# and hold immutable values (an aware datetime, a bool).
@lru_cache(maxsize=4096)
def _expires(value: str) -> datetime | None:
    """`YYYY-MM-DDTHH:MM:SSZ` (ASCII digits, two per field but the year's four) as an aware UTC datetime, or None."""
    match = _EXPIRES.fullmatch(value)
    if match is None:
        return None
    try:
        return datetime(*map(int, match.groups()), tzinfo=timezone.utc)  # type: ignore[misc]
    except ValueError:  # no such date or time (month 13, February 30, hour 24...)
        return None


@lru_cache(maxsize=256)
def _plain_spec_version(value: str) -> bool:
    return _SPEC_VERSION.fullmatch(value) is not None

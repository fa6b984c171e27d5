"""The signing policy: what the signer checks in a request before a key signs it.

Pure: bytes, the key's record and the time in, a `CheckedPayload` or a `SignerError` out. The key
store then enforces the one stateful rule (the version high-water mark) atomically. `check_metadata` is the
part that needs no record (everything but the key's collection and role), for callers that check those
under the key store's row lock (`Claim`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Snapshot, Timestamp

from tufnotary.signer.claims import binding_error
from tufnotary.signer.errors import ExpiryTooLongError, InvalidRequestError
from tufnotary.signer.keystore import KeyRecord
from tufnotary.signer.signed_fields import canonical_plain_timestamp, plain_fields

MAX_VERSION = 2**63 - 1  # a signed 64-bit integer: the catalog's high-water marks and audit rows

DEFAULT_MAX_EXPIRY: Mapping[str, timedelta] = {"timestamp": timedelta(days=1), "snapshot": timedelta(days=7)}
DEFAULT_EXPIRY_LEEWAY = timedelta(minutes=5)
_SIGNED_TYPES = {"timestamp": Timestamp, "snapshot": Snapshot}


@dataclass(frozen=True)
class SigningPolicy:
    """How far in the future each role's metadata may expire (plus `leeway` for clock skew)."""

    max_expiry: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_MAX_EXPIRY))
    leeway: timedelta = DEFAULT_EXPIRY_LEEWAY
    # Each role's window plus the leeway, added once.
    _windows: Mapping[str, timedelta] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for role in _SIGNED_TYPES:
            if self.max_expiry.get(role, timedelta(0)) <= timedelta(0):
                raise ValueError(f"the maximum {role} expiry window must be positive")
        if self.leeway < timedelta(0):
            raise ValueError("the expiry leeway cannot be negative")
        object.__setattr__(self, "_windows", {role: self.max_expiry[role] + self.leeway for role in _SIGNED_TYPES})


class CheckedPayload(NamedTuple):
    """What the audit and the high-water mark need to know about an accepted payload (a tuple: one per item)."""

    version: int
    expires: datetime
    sha256: str


def check_payload(
    policy: SigningPolicy,
    record: KeyRecord,
    collection: str,
    role: str,
    payload: bytes,
    now: datetime,
) -> CheckedPayload:
    """Accept `payload` for `record`'s key, or raise saying why the signer will not sign it.

    The request must name the key's own collection and role; the payload must be the canonical JSON of
    a valid TUF `signed` object of that role that expires within the policy's window from `now`.
    """
    error = binding_error(record.key_id, record.collection, record.role, collection, role)
    if error is not None:
        raise error
    return check_metadata(policy, role, payload, now)


def check_metadata(policy: SigningPolicy, role: str, payload: bytes, now: datetime) -> CheckedPayload:
    """`check_payload` but for the key's collection and role, which the caller checks: accept `payload` as `role`
    metadata (`role` being the key's), or raise saying why the signer will not sign it."""
    # The exact bytes the server sends for a timestamp are read without decoding; anything else is decoded.
    fields = canonical_plain_timestamp(payload) if role == "timestamp" else None
    version, expires = fields or _decoded_fields(role, payload)
    # python-tuf takes `true` for 1 (bool is an int); the catalog stores 64-bit versions.
    if type(version) is not int or version < 1:
        raise InvalidRequestError(f"the {role} metadata has no valid version (a positive integer)")
    if version > MAX_VERSION:
        raise InvalidRequestError(
            f"the {role} metadata version {version} is above {MAX_VERSION}, the largest version the signer records"
        )
    limit = now + policy._windows[role]
    if expires > limit:
        raise ExpiryTooLongError(
            f"{role} metadata version {version} expires {expires.isoformat()}, beyond the signer's "
            f"maximum window of {policy.max_expiry[role]} for {role} (latest allowed now: {limit.isoformat()})"
        )
    return CheckedPayload(version, expires, hashlib.sha256(payload).hexdigest())


def _decoded_fields(role: str, payload: bytes) -> tuple[object, datetime]:
    """(version, expires) of `payload` decoded, once it proved to be the canonical JSON of `role` metadata that
    python-tuf accepts (the version still to be checked); else raise saying why not."""
    has_floats = False
    try:
        try:
            signed = _decode(payload)
        except _FloatSeen:
            signed, has_floats = json.loads(payload), True
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(f"the payload is not JSON: the signer only signs TUF {role} metadata") from None
    if not isinstance(signed, dict) or signed.get("_type") != role:
        found = signed.get("_type") if isinstance(signed, dict) else type(signed).__name__
        raise InvalidRequestError(f"a {role} key only signs {role} metadata, not {found!r}")
    try:
        canonical = _is_canonical(signed, payload, has_floats)
        # The plain shape the server sends is read directly; python-tuf decides everything else.
        version, expires = plain_fields(signed, role) or _parsed_fields(signed, role)
    except Exception as e:  # tuf raises ValueError, KeyError, TypeError... for malformed metadata
        raise InvalidRequestError(f"the payload is not valid TUF {role} metadata ({type(e).__name__})") from None
    if not canonical:
        raise InvalidRequestError(f"the payload is not the canonical JSON of TUF {role} metadata")
    return version, expires


def _parsed_fields(signed: dict, role: str) -> tuple[int, datetime]:
    """(version, expires in UTC) as python-tuf parses them; raises as python-tuf does for malformed metadata."""
    parsed = _SIGNED_TYPES[role].from_dict(dict(signed))
    expires = parsed.expires.replace(tzinfo=timezone.utc) if parsed.expires.tzinfo is None else parsed.expires
    return parsed.version, expires


def _encoding(payload: bytes) -> str:
    """`json.detect_encoding(payload)`, answered at once for what canonical JSON starts with: `{` then a byte
    other than NUL (neither a BOM nor UTF-16/32)."""
    if payload[:1] == b"{" and payload[1:2] not in (b"", b"\x00"):
        return "utf-8"
    return json.detect_encoding(payload)


class _FloatSeen(Exception):
    """A float (or NaN, Infinity) in the payload: canonical JSON has none; the canonical encoder decides."""


def _no_float(text: str) -> float:
    raise _FloatSeen()


_NO_FLOATS = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_float)
_SORTED_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)  # made once, as above


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")  # never reached: decoded JSON holds only JSON types


def _sorted_compact_encoder() -> Callable[[object], str]:
    """`_SORTED_COMPACT.encode`, or the C encoder it builds per call (CPython's `json.encoder.c_make_encoder`) built
    once: `encode` spent 40% of its time around the C call. No cycle check: decoded JSON has no cycles."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _SORTED_COMPACT.encode
    encode = make(None, _unencodable, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    return lambda value: "".join(encode(value, 0))


_sorted_compact = _sorted_compact_encoder()


def _decode(payload: bytes) -> object:
    """What `json.loads(payload)` answers or raises, through one decoder made once (json.loads builds one per call
    when given any option); `_FloatSeen` for a float. A document with no whitespace around it (canonical JSON) is
    scanned directly; anything else goes through `decode`, which skips the whitespace and reports the errors."""
    text = payload.decode(_encoding(payload), "surrogatepass")
    try:
        signed, end = _NO_FLOATS.scan_once(text, 0)
    except StopIteration:  # no value at 0 (e.g. whitespace first): decode decides
        return _NO_FLOATS.decode(text)
    return signed if end == len(text) else _NO_FLOATS.decode(text)


def _is_canonical(signed: dict, payload: bytes, has_floats: bool) -> bool:
    """Whether `payload` is exactly the canonical JSON (securesystemslib's) of `signed`; raises like
    `encode_canonical` when `signed` has none (floats).

    The standard library's C encoder (sorted keys, no spaces, no ASCII escaping) writes the same bytes as
    the canonical encoder, three times faster, whenever no string needed escaping — it escapes with a
    backslash, the canonical encoder escapes only `"` and `\\` — and no number is a float. Otherwise the
    canonical encoder decides.
    """
    if not has_floats:
        fast = _sorted_compact(signed).encode("utf-8")
        if b"\\" not in fast:
            return fast == payload
    return encode_canonical(signed).encode("utf-8") == payload  # type: ignore[union-attr]

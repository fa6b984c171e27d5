"""`plain_fields` reads the version and expiry python-tuf would find, and only of metadata python-tuf accepts:
checked against python-tuf over generated and malformed `signed` dicts, and through `check_payload`, whose
answers (accepted fields, or the refusal's class and message) must not change when python-tuf decides alone.
It must also answer for the payloads the metadata server sends, or it saves nothing."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Snapshot, Timestamp

from tests.signer.harness import tuf_payload
from tufnotary.signer import policy
from tufnotary.signer.errors import SignerError
from tufnotary.signer.keystore import KeyRecord
from tufnotary.signer.policy import CheckedPayload, SigningPolicy, check_payload
from tufnotary.signer.signed_fields import canonical_plain_timestamp, plain_fields

TUF_TYPES = {"timestamp": Timestamp, "snapshot": Snapshot}
NOW = datetime(2030, 6, 15, 12, 0, 0, tzinfo=timezone.utc)
POLICY = SigningPolicy()

# Values that are, are nearly, or are not what each field holds.
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=3), st.integers(min_value=2**62, max_value=2**70), st.booleans(), st.none(),
    st.sampled_from(["5", "", 1.0, 2.5, [], {}]),
)
SPEC_VERSIONS = st.one_of(
    st.sampled_from(["1.0.31", "1.0", "1", "1.0.31.0", "2.0.0", "01.0.0", "1.x.0", "1..0", "1.0.", " 1.0", "1.0\n",
                     "１.0.0", "1.²", "1.0.3a", 1, None, True]),
    st.from_regex(r"[0-9.]{0,7}", fullmatch=True), st.text(max_size=8),
)


def _mostly(draw: st.DrawFn, valid: st.SearchStrategy, odd: st.SearchStrategy) -> Any:
    """A value from `valid` nine times in ten, else from `odd`: most dicts keep most fields well-formed."""
    return draw(odd if draw(st.integers(min_value=0, max_value=9)) == 9 else valid)


def _lax_date(draw: st.DrawFn) -> str:
    """A date string in the shapes `strptime("%Y-%m-%dT%H:%M:%SZ")` might or might not read."""
    width = st.integers(min_value=0, max_value=3)
    digits = lambda n: draw(st.text("0123456789", min_size=n, max_size=n))  # noqa: E731
    fields = [digits(draw(st.sampled_from([4, 4, 4, 3, 5])))] + [digits(draw(width) if draw(st.booleans()) else 2)
                                                                  for _ in range(5)]
    seps = draw(st.sampled_from([("-", "-", "T", ":", ":", "Z"), ("-", "-", "t", ":", ":", "z"),
                                 ("-", "-", " ", ":", ":", "Z"), ("/", "/", "T", ":", ":", "Z"),
                                 ("-", "-", "T", ":", ":", "")]))
    return "".join(f + s for f, s in zip(fields, seps))


@st.composite
def expires_values(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(min_value=0, max_value=4)) if draw(st.integers(min_value=0, max_value=3)) == 3 else 0
    if kind == 0:  # well-formed, any real instant
        when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
        return when.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0")
    if kind == 1:
        return _lax_date(draw)
    if kind == 2:
        return draw(st.sampled_from(["2030-01-01T00:00:00Z", "2030-02-30T00:00:00Z", "2030-13-01T00:00:00Z",
                                     "0000-01-01T00:00:00Z", "2030-01-01T24:00:00Z", "2030-01-01T23:60:00Z",
                                     "2030-01-01T23:59:60Z", "2030-01-01T23:59:61Z", "2030-1-1T1:2:3Z",
                                     "2030-01- 1T00:00:00Z", "2030-01-01T00:00:00.5Z", "2030-01-01T00:00:00+00:00",
                                     "２０３０-01-01T00:00:00Z", "2030-01-01T00:00:00Z\n", ""]))
    if kind == 3:
        return draw(st.text(max_size=22))
    return draw(NUMBERS)


@st.composite
def meta_files(draw: st.DrawFn) -> Any:
    if draw(st.integers(min_value=0, max_value=19)) == 19:
        return draw(st.one_of(NUMBERS, st.just("snapshot.json"), st.lists(st.integers(), max_size=2)))
    entry: dict[str, Any] = {}
    if draw(st.integers(min_value=0, max_value=19)) < 19:
        entry["version"] = _mostly(draw, st.integers(min_value=1, max_value=10**6), NUMBERS)
    if draw(st.booleans()):
        entry["length"] = _mostly(draw, st.integers(min_value=0, max_value=10**6), NUMBERS)
    if draw(st.booleans()):
        entry["hashes"] = _mostly(
            draw,
            st.dictionaries(st.sampled_from(["sha256", "sha512"]), st.text("0123456789abcdef", max_size=4),
                            min_size=1, max_size=2),
            st.one_of(st.dictionaries(st.sampled_from(["sha256", ""]), st.one_of(st.text(max_size=4), NUMBERS),
                                      max_size=2),
                      NUMBERS, st.lists(st.text(max_size=3), max_size=2), st.text(max_size=3)),
        )
    if draw(st.integers(min_value=0, max_value=19)) == 19:
        entry[draw(st.sampled_from(["x-extra", "custom"]))] = draw(NUMBERS)
    return entry


@st.composite
def signed_dicts(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A role and a `signed` dict: mostly well-formed, each field sometimes missing, wrong or odd."""
    role = draw(st.sampled_from(["timestamp", "snapshot"]))
    if role == "timestamp":
        meta = {_mostly(draw, st.just("snapshot.json"), st.sampled_from(["targets.json", ""])): draw(meta_files())}
        if draw(st.integers(min_value=0, max_value=9)) == 9:
            meta[draw(st.sampled_from(["snapshot.json", "targets.json", ""]))] = draw(meta_files())
    else:
        names = st.sampled_from(["targets.json", "bins-0.json", "snapshot.json", ""])
        meta = draw(st.dictionaries(names, meta_files(), max_size=3))
    signed: dict[str, Any] = {
        "_type": _mostly(draw, st.just(role), st.sampled_from(["root", "Timestamp", None])),
        "spec_version": _mostly(draw, st.sampled_from(["1.0.31", "1.0", "1.20.0"]), SPEC_VERSIONS),
        "version": _mostly(draw, st.integers(min_value=1, max_value=10**9), NUMBERS),
        "expires": draw(expires_values()),
        "meta": _mostly(draw, st.just(meta), st.one_of(NUMBERS, st.lists(st.integers()))),
    }
    if draw(st.integers(min_value=0, max_value=9)) == 9:
        del signed[draw(st.sampled_from(sorted(signed)))]
    if draw(st.integers(min_value=0, max_value=19)) == 19:
        signed[draw(st.sampled_from(["x-extra", "signatures", "_extra"]))] = draw(NUMBERS)
    return role, signed


def tuf_fields(signed: dict[str, Any], role: str) -> tuple[object, datetime] | None:
    """What python-tuf makes of `signed`: (version, expires), or None if it refuses it."""
    try:
        parsed = TUF_TYPES[role].from_dict(copy.deepcopy(signed))
    except Exception:  # noqa: BLE001 - any refusal
        return None
    return parsed.version, parsed.expires


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed_dicts())
def test_plain_fields_answer_only_what_python_tuf_accepts_and_the_same_fields(case: tuple[str, dict]) -> None:
    role, signed = case
    before = copy.deepcopy(signed)
    fields = plain_fields(signed, role)
    assert signed == before  # read only
    if fields is not None:
        assert type(fields[0]) is int
        assert fields == tuf_fields(signed, role)


def _outcome(payload: bytes, role: str) -> CheckedPayload | tuple[str, str]:
    record = KeyRecord("ab" * 32, "wabbit-networks/net-monitor", role, "ed25519", "ed25519", "00" * 32)
    try:
        return check_payload(POLICY, record, record.collection, role, payload, NOW)
    except SignerError as e:
        return type(e).__name__, e.message


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed_dicts(), st.sampled_from(["canonical", "canonical", "spaced"]))
def test_check_payload_answers_as_python_tuf_alone_does(case: tuple[str, dict], encoding: str) -> None:
    role, signed = case
    if encoding == "canonical":
        try:
            payload = encode_canonical(signed).encode("utf-8")  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - floats: the canonical encoder has none; use the standard one
            payload = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    else:
        payload = json.dumps(signed, indent=1).encode()
    with_plain = _outcome(payload, role)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(policy, "plain_fields", lambda signed, role: None)
        patch.setattr(policy, "canonical_plain_timestamp", lambda payload: None)
        tuf_alone = _outcome(payload, role)
    assert with_plain == tuf_alone


def _decoded_outcome(payload: bytes, role: str) -> CheckedPayload | tuple[str, str]:
    """`_outcome` with every payload decoded (no reading of the canonical timestamp bytes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(policy, "canonical_plain_timestamp", lambda payload: None)
        return _outcome(payload, role)


def _timestamp_payload(version: int = 7, meta: dict[str, Any] | None = None, **fields: Any) -> bytes:
    signed = json.loads(tuf_payload("timestamp", version))
    if meta is not None:
        signed["meta"]["snapshot.json"] = meta
    signed.update(fields)
    return encode_canonical(signed).encode("utf-8")  # type: ignore[union-attr]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed_dicts())
def test_the_canonical_timestamp_bytes_are_read_as_decoding_reads_them(case: tuple[str, dict]) -> None:
    _, signed = case
    try:
        payload = encode_canonical(signed).encode("utf-8")  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - floats: the canonical encoder has none
        payload = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    fields = canonical_plain_timestamp(payload)
    if fields is not None:
        assert fields == plain_fields(json.loads(payload), "timestamp")
    assert _outcome(payload, "timestamp") == _decoded_outcome(payload, "timestamp")


def test_every_one_byte_change_to_a_timestamp_is_decided_as_decoding_decides_it() -> None:
    """Each byte of a plain timestamp deleted, doubled, replaced by a few others, or preceded by a space."""
    payload = _timestamp_payload(7, {"version": 3, "length": 40, "hashes": {"sha256": "0a" * 32}})
    assert canonical_plain_timestamp(payload) is not None
    variants = set()
    for i in range(len(payload)):
        head, byte, tail = payload[:i], payload[i:i + 1], payload[i + 1:]
        variants.update([head + tail, head + byte + byte + tail, head + b" " + byte + tail])
        variants.update(head + other + tail for other in (b"0", b"9", b"A", b"a", b'"', b"\\", b".", b"\xc3\xa9"))
    variants.add(payload + b" ")
    answered = 0
    for variant in variants:
        fast = _outcome(variant, "timestamp")
        assert fast == _decoded_outcome(variant, "timestamp"), variant
        answered += canonical_plain_timestamp(variant) is not None
    assert answered > 100  # the digits of versions, length, hash and dates that stay valid


@pytest.mark.parametrize("payload", [
    _timestamp_payload(1), _timestamp_payload(2**63 - 1), _timestamp_payload(2**63),
    _timestamp_payload(5, {"version": 1}), _timestamp_payload(5, {"version": 2, "length": 0}),
    _timestamp_payload(5, {"version": 2, "hashes": {"sha256": "ff"}}),
    _timestamp_payload(5, expires="2030-06-16T12:05:00Z"), _timestamp_payload(5, expires="2030-06-16T12:05:01Z"),
    _timestamp_payload(5, expires="2030-02-30T00:00:00Z"), _timestamp_payload(5, spec_version="1.20"),
])
def test_the_timestamps_the_server_sends_are_read_without_decoding(payload: bytes) -> None:
    fields = canonical_plain_timestamp(payload)
    if b"02-30" in payload:
        assert fields is None  # no such day: decoding decides
    else:
        assert fields is not None and fields == plain_fields(json.loads(payload), "timestamp")
    assert _outcome(payload, "timestamp") == _decoded_outcome(payload, "timestamp")


@pytest.mark.parametrize("role", ["timestamp", "snapshot"])
@pytest.mark.parametrize("version", [1, 7, 2**40])
@pytest.mark.parametrize("expires_in", [timedelta(hours=1), timedelta(days=3), timedelta(days=-1)])
def test_the_payloads_the_server_sends_are_read_without_python_tuf(
    role: str, version: int, expires_in: timedelta
) -> None:
    signed = json.loads(tuf_payload(role, version, expires_in))
    assert plain_fields(signed, role) == tuf_fields(signed, role)
    assert plain_fields(signed, role) is not None


def test_snapshot_listing_many_files_is_read_without_python_tuf() -> None:
    signed = json.loads(tuf_payload("snapshot", 3))
    signed["meta"].update({f"bins-{i:02x}.json": {"version": i + 1, "length": 9, "hashes": {"sha256": "00"}}
                           for i in range(256)})
    fields = plain_fields(signed, "snapshot")
    assert fields is not None and fields == tuf_fields(signed, "snapshot")


@pytest.mark.parametrize("change, value", [
    ("version", True),  # python-tuf takes a bool for an int; the plain reader leaves that to it
    ("expires", "2030-1-2T3:4:5Z"),  # strptime reads one-digit fields
    ("expires", "2030-01-02t03:04:05z"),  # and ignores case
    ("x-extra", "kept as an unrecognized field"),
])
def test_lax_forms_python_tuf_accepts_are_left_to_it(change: str, value: object) -> None:
    signed = json.loads(tuf_payload("timestamp", 3))
    signed[change] = value
    assert tuf_fields(signed, "timestamp") is not None
    assert plain_fields(signed, "timestamp") is None

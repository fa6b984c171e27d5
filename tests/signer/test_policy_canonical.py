"""The policy's canonical-JSON check accepts exactly what securesystemslib's canonical encoder writes: the fast
path (the standard library's encoder) never accepts bytes the canonical encoder would not write, nor refuses
bytes it would. Pure: `check_payload` without a signer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical

from tests.signer.harness import tuf_payload
from tufnotary.signer.errors import InvalidRequestError
from tufnotary.signer.keystore import KeyRecord
from tufnotary.signer import policy
from tufnotary.signer.policy import SigningPolicy, check_payload

RECORD = KeyRecord("ab" * 32, "wabbit-networks/net-monitor", "timestamp", "ed25519", "ed25519", "00" * 32)
NOW = datetime.now(timezone.utc)

EXTRA_VALUES = [
    "plain", 'a "quoted" word', "back\\slash", "new\nline", "tab\there", "\x7f del", "é unicode ☃", "\u2028",
    "emoji 🦀", 0, -5, 2**70, True, None, [], {}, {"b": 1, "a": [1, "x"]},
]


def _check(payload: bytes) -> bool:
    try:
        check_payload(SigningPolicy(), RECORD, RECORD.collection, "timestamp", payload, NOW)
    except InvalidRequestError:
        return False
    return True


def _signed(extra: object) -> dict:
    signed = json.loads(tuf_payload("timestamp", 3))
    signed["x-extra"] = extra  # TUF keeps unrecognized fields: they must be canonical too
    return signed


def _reference(payload: bytes) -> bool:
    """The definition: strict JSON whose canonical encoding is the payload itself."""
    try:
        return encode_canonical(json.loads(payload)).encode("utf-8") == payload  # type: ignore[union-attr]
    except (ValueError, FormatError):
        return False


@pytest.mark.parametrize("extra", EXTRA_VALUES, ids=repr)
@pytest.mark.parametrize("encoding", ["canonical", "ascii-escaped", "spaced", "unsorted", "utf-16", "utf-8-bom"])
def test_exactly_the_canonical_encoding_is_accepted(extra: object, encoding: str) -> None:
    signed = _signed(extra)
    if encoding == "canonical":
        payload = encode_canonical(signed).encode("utf-8")  # type: ignore[union-attr]
    elif encoding == "ascii-escaped":
        payload = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    elif encoding == "spaced":
        payload = json.dumps(signed, sort_keys=True, ensure_ascii=False).encode()
    elif encoding == "unsorted":
        payload = json.dumps(dict(reversed(list(signed.items()))), separators=(",", ":"), ensure_ascii=False).encode()
    else:  # the canonical text in another encoding json.loads also reads
        payload = encode_canonical(signed).encode(encoding.replace("-bom", "-sig"))  # type: ignore[union-attr]
    assert _check(payload) == _reference(payload)


@pytest.mark.parametrize("extra", ["plain", 'a "quoted" word', "back\\slash", "é unicode ☃", 2**70, {"b": [None]}])
def test_canonical_payloads_with_escapes_and_unicode_are_signed(extra: object) -> None:
    assert _check(encode_canonical(_signed(extra)).encode("utf-8"))  # type: ignore[union-attr]


@pytest.mark.parametrize("number", [b"1.5", b"1e3", b"NaN", b"Infinity", b"-0.0"])
def test_floats_are_refused_as_the_canonical_encoder_refuses_them(number: bytes) -> None:
    canonical = encode_canonical(_signed(0)).encode("utf-8")  # type: ignore[union-attr]
    payload = canonical.replace(b'"x-extra":0', b'"x-extra":' + number)
    assert payload != canonical
    with pytest.raises(InvalidRequestError, match="not valid TUF timestamp metadata"):
        check_payload(SigningPolicy(), RECORD, RECORD.collection, "timestamp", payload, NOW)


@pytest.mark.parametrize("start", [b"", b"{", b'{"', b"{\x00", b"{\x00\x00", b"{\x00\x00\x00", b"{\x00a\x00", b"\x00{",
                                   b"\xef\xbb\xbf{", b"\xff\xfe{\x00", b"\xfe\xff\x00{", b"\xff\xfe\x00\x00{\x00\x00\x00",
                                   b"[1]", b"{}", '{"é":1}'.encode("utf-16-le"), '{"é":1}'.encode("utf-32-be")])
def test_the_payload_encoding_is_detected_as_json_does(start: bytes) -> None:
    assert policy._encoding(start) == json.detect_encoding(start)


@pytest.mark.parametrize("version, message", [
    (True, "has no valid version (a positive integer)"),  # python-tuf alone would read it as 1
    (2**63, f"version {2**63} is above {2**63 - 1}, the largest version the signer records"),
])
def test_versions_the_signer_cannot_record_are_refused(version: object, message: str) -> None:
    signed = json.loads(tuf_payload("timestamp", 3))
    signed["version"] = version
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_payload(SigningPolicy(), RECORD, RECORD.collection, "timestamp", encode_canonical(signed).encode(), NOW)


def test_the_largest_recordable_version_is_signed() -> None:
    signed = json.loads(tuf_payload("timestamp", 3))
    signed["version"] = 2**63 - 1
    checked = check_payload(SigningPolicy(), RECORD, RECORD.collection, "timestamp", encode_canonical(signed).encode(), NOW)
    assert checked.version == 2**63 - 1


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - compared below
        return type(e), str(e)


@pytest.mark.parametrize("text", [b'{"a":[1,"x",null]}', b' {"a":1}', b'{"a":1} ', b'{"a":1}\n', b'\t{"a":1}\r\n',
                                  b'{"a":1}x', b'{"a":1}{}', b'{"a":1', b"", b" ", b"x", b"[1,2]", b'"s"', b"7",
                                  b'{"a":1.5}', b' {"a":NaN}', b"\xef\xbb\xbf{}", '{"é":1}'.encode("utf-16"),
                                  b'{"a":"\xed\xa0\x80"}', b'{"a":"\xff"}'])
def test_the_payload_is_decoded_exactly_as_the_standard_decoder_decodes_it(text: bytes) -> None:
    def standard() -> object:
        return policy._NO_FLOATS.decode(text.decode(json.detect_encoding(text), "surrogatepass"))

    assert _outcome(lambda: policy._decode(text)) == _outcome(standard)


@pytest.mark.parametrize("value", [{}, {"b": 1, "a": [True, False, None, -5, 2**70, "é ☃ 🦀"]},
                                   {"x": {"z": {}, "y": []}}, {"q": 'a "quoted" back\\slash\nline\x7f\u2028'},
                                   [1, "two"], "text", 0])
def test_the_fast_canonical_candidate_is_the_standard_encoders_text(value: object) -> None:
    assert policy._sorted_compact(value) == policy._SORTED_COMPACT.encode(value)

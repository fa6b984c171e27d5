"""The fast canonical encoder writes exactly what securesystemslib's `encode_canonical` writes, and
raises what it raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Metadata, TargetFile, Targets

from tufnotary.client.canonical import canonical_bytes, fast_canonical
from tufnotary.server.canonical import signed_bytes

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    # runs of backslashes, quotes and control characters next to text that looks like numbers
    | st.text(alphabet='\\"\n\x01a1.e-:,['),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


def reference(value) -> bytes:
    encoded = encode_canonical(value)
    assert encoded is not None
    return encoded.encode()


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_same_bytes_or_same_error_as_encode_canonical(value):
    try:
        expected: bytes | Exception = reference(value)
    except (FormatError, UnicodeEncodeError) as e:
        expected = e
    try:
        got: bytes | Exception = canonical_bytes(value)
    except (FormatError, UnicodeEncodeError) as e:
        got = e
    if isinstance(expected, Exception):
        assert type(got) is type(expected) and str(got) == str(expected)
    else:
        assert got == expected


@pytest.mark.parametrize("value", [
    {"a": "line\nbreak"},  # canonical JSON writes control characters raw; json escapes them
    {"a": "\x00"},
    ["\x1f"],
    {"length": 1.5},  # canonical JSON has no floats
    [1e100],
    2.0,
    {"a": "\ud800"},  # a lone surrogate cannot be UTF-8
    {"a": 'a "quote"'},  # escapes canonical JSON shares: not worth telling apart
    {"a": "\\n is a backslash and an n"},
])
def test_leaves_escapes_floats_and_surrogates_to_encode_canonical(value):
    assert fast_canonical(value) is None


@pytest.mark.parametrize("value", [
    {"path": "v1.2e3 and 1e5 in a string", "n": [1, -2, 10**30], "ok": True, "no": None},
    {"ünïcode ✓": "snow ☃", "b": {"z": 1, "a": [False, "x"]}},
    "just a string",
    -7,
])
def test_writes_plain_json_itself(value):
    assert fast_canonical(value) == reference(value)


def test_floats_raise_as_encode_canonical_does():
    with pytest.raises(FormatError, match="I cannot encode 1.5"):
        canonical_bytes({"x": 1.5})


def test_signed_bytes_is_python_tufs():
    md = Metadata(Targets(version=3))
    md.signed.targets["a/b.txt"] = TargetFile(5, {"sha256": "ab" * 32}, "a/b.txt", {"custom": {"x": "\t"}})
    assert signed_bytes(md) == md.signed_bytes
    md.signed.targets["a/b.txt"].unrecognized_fields["custom"] = {"x": "plain", "y": [1, 2]}
    assert signed_bytes(md) == md.signed_bytes
    assert json.loads(signed_bytes(md))["version"] == 3

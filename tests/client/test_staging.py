"""Staging without python-tuf: the entries it stages are those python-tuf would compute."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from tests.client.conftest import COLLECTION, Client
from tufnotary.client.errors import NotInitializedError, UsageError
from tufnotary.client.staging import stage, target_from_digest, target_from_file


def test_a_file_target_has_the_length_and_hashes_python_tuf_computes(tmp_path: Path) -> None:
    artifact = tmp_path / "app.tgz"
    artifact.write_bytes(b"release 1.0\n" * 200_000)  # more than one read chunk

    staged = target_from_file("charts/app.tgz", artifact, {"note": "x"})

    expected = TargetFile.from_file("charts/app.tgz", str(artifact), ["sha256", "sha512"])
    assert (staged.path, staged.length, staged.hashes) == (expected.path, expected.length, expected.hashes)
    assert staged.entry() == {"length": expected.length, "hashes": expected.hashes, "custom": {"note": "x"}}


def test_a_digest_target_entry_is_a_valid_tuf_target() -> None:
    staged = target_from_digest("app:v1", "SHA256:" + "AB" * 32, 10)

    info = TargetFile.from_dict(staged.entry(), staged.path)
    assert (info.path, info.length, info.hashes) == ("app:v1", 10, {"sha256": "ab" * 32})


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        target_from_file("app", tmp_path / "missing")


def test_stage_adds_and_removes_in_one_write_for_the_publisher_only(client: Client, tmp_path: Path) -> None:
    with pytest.raises(NotInitializedError):
        stage(client.trust, COLLECTION, {"app:v1": target_from_digest("app:v1", "sha256:" + "ab" * 32, 10).entry()})
    client.publisher.init(COLLECTION)

    stage(client.trust, COLLECTION, {"app:v1": target_from_digest("app:v1", "sha256:" + "ab" * 32, 10).entry()})
    stage(client.trust, COLLECTION, {"old:v0": None})

    assert client.publisher.staged(COLLECTION).changes == {
        "app:v1": {"length": 10, "hashes": {"sha256": "ab" * 32}}, "old:v0": None,
    }

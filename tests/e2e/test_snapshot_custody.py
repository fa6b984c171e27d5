"""Moving snapshot signing to the publisher (`--client-managed`) and back (`--server-managed`),
through the CLI against the real stack, with a consumer verifying after each step."""

from __future__ import annotations

import json
import urllib.request

from tests.e2e.test_cli_flow import ok, tufnotary


def _snapshot_signers(stack, collection) -> set[str]:
    with urllib.request.urlopen(stack.base(collection) + "timestamp.json", timeout=10) as r:
        version = json.load(r)["signed"]["meta"]["snapshot.json"]["version"]
    with urllib.request.urlopen(stack.base(collection) + f"{version}.snapshot.json", timeout=10) as r:
        return {s["keyid"] for s in json.load(r)["signatures"]}


def _root_snapshot_keys(stack, collection) -> list[str]:
    with urllib.request.urlopen(stack.base(collection) + "root.json", timeout=10) as r:
        return json.load(r)["signed"]["roles"]["snapshot"]["keyids"]


def test_snapshot_custody_round_trip(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    artifact = tmp_path / "a.bin"
    artifact.write_bytes(b"a")
    ok(tufnotary(stack, owner, "init", collection))
    server_key = _root_snapshot_keys(stack, collection)
    root_file = owner / "collections" / collection / "metadata" / "root.json"
    pinned = tmp_path / "root-v1.json"
    pinned.write_bytes(root_file.read_bytes())

    out = ok(tufnotary(stack, owner, "key", "rotate", collection, "snapshot", "--client-managed"))
    own_key = _root_snapshot_keys(stack, collection)
    assert own_key != server_key and own_key[0] in out
    assert _snapshot_signers(stack, collection) == set(own_key)

    ok(tufnotary(stack, owner, "add", collection, "a.bin", str(artifact)))
    ok(tufnotary(stack, owner, "publish", collection))
    assert _snapshot_signers(stack, collection) == set(own_key)  # the publisher signed this publish's snapshot
    ok(tufnotary(stack, consumer, "verify", "--root", str(pinned), collection, "a.bin", str(artifact)))
    status = tufnotary(stack, owner, "status", collection, "--warn-days", "30")
    assert status.returncode == 0 and f"warning: snapshot of {collection} expires in" in status.stderr
    ok(tufnotary(stack, owner, "bump-expiry", collection, "snapshot", "--days", "20"))
    with urllib.request.urlopen(stack.base(collection) + "snapshot.json", timeout=10) as r:
        assert json.load(r)["signed"]["expires"] > "2026-12-01"  # 20 days, not the 7-day default

    ok(tufnotary(stack, owner, "key", "rotate", collection, "snapshot", "--server-managed"))
    back = _root_snapshot_keys(stack, collection)
    assert back not in (own_key, server_key)
    ok(tufnotary(stack, owner, "remove", collection, "a.bin"))
    ok(tufnotary(stack, owner, "publish", collection))
    assert _snapshot_signers(stack, collection) == set(back)
    refused = tufnotary(stack, consumer, "verify", collection, "a.bin", str(artifact))
    assert refused.returncode == 3 and "a.bin" in refused.stderr
    assert "--client-managed applies to snapshot" in tufnotary(
        stack, owner, "key", "rotate", collection, "timestamp", "--client-managed").stderr

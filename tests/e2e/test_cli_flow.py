"""The publisher and consumer CLI against the real stack: init, add, publish, list, lookup, verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def tufnotary(stack, trust_dir: Path, *args: str, passphrase: str = "publisher passphrase"):
    env = {**os.environ, "TUFNOTARY_PASSPHRASE": passphrase}
    env.pop("TUFNOTARY_TRUST_DIR", None)
    return subprocess.run(
        [str(BIN / "tufnotary"), "--server", stack.url, "--trust-dir", str(trust_dir), *args],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_publish_and_verify_flow(stack, collection, tmp_path):
    publisher = tmp_path / "publisher"
    artifact = tmp_path / "net-monitor.tar"
    artifact.write_bytes(b"net-monitor build 1")
    other = tmp_path / "other.tar"
    other.write_bytes(b"net-monitor build 2")

    ok(tufnotary(stack, publisher, "init", collection))
    ok(tufnotary(stack, publisher, "add", collection, "net-monitor:1.0", str(artifact)))
    ok(tufnotary(stack, publisher, "add", collection, "sbom:1.0", "--digest", "sha256:" + "ab" * 32, "--length", "42"))
    ok(tufnotary(stack, publisher, "publish", collection))

    listed = ok(tufnotary(stack, publisher, "list", collection))
    assert "net-monitor:1.0" in listed and "sbom:1.0" in listed
    assert "ab" * 32 in ok(tufnotary(stack, publisher, "lookup", collection, "sbom:1.0"))
    ok(tufnotary(stack, publisher, "verify", collection, "net-monitor:1.0", str(artifact)))

    refused = tufnotary(stack, publisher, "verify", collection, "net-monitor:1.0", str(other))
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr and refused.stderr.strip().count("\n") == 0
    unsigned = tufnotary(stack, publisher, "verify", collection, "not-there", str(artifact))
    assert unsigned.returncode != 0 and "not-there" in unsigned.stderr

    # a consumer who never published pins the root by file and verifies
    root_file = tmp_path / "root.json"
    root_file.write_bytes((publisher / "collections" / collection / "metadata" / "root.json").read_bytes())
    consumer = tmp_path / "consumer"
    ok(tufnotary(stack, consumer, "verify", "--root", str(root_file), collection, "net-monitor:1.0", str(artifact)))
    assert tufnotary(stack, consumer, "verify", collection, "net-monitor:1.0", str(other)).returncode != 0

    # removal is published too
    ok(tufnotary(stack, publisher, "remove", collection, "net-monitor:1.0"))
    ok(tufnotary(stack, publisher, "publish", collection))
    gone = tufnotary(stack, consumer, "verify", collection, "net-monitor:1.0", str(artifact))
    assert gone.returncode != 0


def test_express_publish_into_hash_bins_and_after_another_publisher(stack, collection, tmp_path):
    """The express publish (client/quickpublish.py) against the real server: it re-signs only the
    bins of the staged paths, the server accepts it, consumers verify it; and when another copy of
    the trust directory published first, the server refuses the stale version, nothing changes,
    and the full publish takes over."""
    from tuf.api.metadata import SuccinctRoles

    from tufnotary.client import quickpublish
    from tufnotary.client.http import HttpConfig, ServerClient
    from tufnotary.client.trustdir import TrustDir

    publisher, copy = tmp_path / "publisher", tmp_path / "copy"
    server = ServerClient(HttpConfig(server=stack.url))
    ok(tufnotary(stack, publisher, "init", collection, "--bins", "16"))
    paths = ["app:v1", "db:v1", "web:v1"]
    for i, path in enumerate(paths):
        ok(tufnotary(stack, publisher, "add", collection, path, "--digest", "sha256:" + f"{i:02x}" * 32,
                     "--length", "7"))

    result = quickpublish.publish(TrustDir(publisher), collection, server, lambda keyid, new: "publisher passphrase")

    bins = SuccinctRoles([], 1, 4, "bins")
    assert result is not None and result.express
    assert result.roles == sorted({bins.get_role_for_target(p) for p in paths})
    listed = ok(tufnotary(stack, tmp_path / "consumer", "list", "--root",
                          str(publisher / "collections" / collection / "metadata" / "root.json"), collection))
    assert all(p in listed for p in paths)

    shutil.copytree(publisher, copy)
    ok(tufnotary(stack, copy, "add", collection, "app:v2", "--digest", "sha256:" + "aa" * 32, "--length", "7"))
    ok(tufnotary(stack, copy, "publish", collection))
    # a target of the bin the copy just re-signed: this trust directory holds its previous version
    mine = next(p for p in (f"app:v{n}" for n in range(3, 1000))
                if bins.get_role_for_target(p) == bins.get_role_for_target("app:v2"))
    ok(tufnotary(stack, publisher, "add", collection, mine, "--digest", "sha256:" + "bb" * 32, "--length", "7"))
    staged = TrustDir(publisher).read_staged(collection).changes

    assert quickpublish.publish(TrustDir(publisher), collection, server,
                                lambda keyid, new: "publisher passphrase") is None

    assert TrustDir(publisher).read_staged(collection).changes == staged
    assert mine not in ok(tufnotary(stack, publisher, "list", collection))
    ok(tufnotary(stack, publisher, "publish", collection))
    listed = ok(tufnotary(stack, publisher, "list", collection))
    assert "app:v2" in listed and mine in listed


@pytest.mark.parametrize("keep", [False, True], ids=["leaked", "retired"])
def test_revoking_the_hash_bins_key_re_signs_every_bin_with_its_replacement(stack, collection, tmp_path, keep):
    """`key revoke` of the bins key with `--replace-with` swaps it in targets' succinct delegation
    and re-signs every bin with the new key only. A leaked key (the default) loses everything only
    it vouched for: here every entry, each named as dropped; a retired one (`--keep-content`)
    keeps its content, which consumers still verify."""
    import json

    publisher = tmp_path / "publisher"
    ok(tufnotary(stack, publisher, "init", collection, "--bins", "4"))
    paths = [f"app:v{i}" for i in range(6)]
    for i, path in enumerate(paths):
        ok(tufnotary(stack, publisher, "add", collection, path, "--digest", "sha256:" + f"{i:02x}" * 32,
                     "--length", "7"))
    ok(tufnotary(stack, publisher, "publish", collection))
    metadata = publisher / "collections" / collection / "metadata"
    old = json.loads((metadata / "targets.json").read_bytes())["signed"]["delegations"]["succinct_roles"]["keyids"]
    assert len(old) == 1
    new = ok(tufnotary(stack, publisher, "key", "generate")).split()[-1]

    out = ok(tufnotary(stack, publisher, "key", "revoke", collection, old[0], "--replace-with", new,
                       *(["--keep-content"] if keep else [])))

    ok(tufnotary(stack, publisher, "list", collection))  # a refresh: the verified copies are current
    delegation = json.loads((metadata / "targets.json").read_bytes())["signed"]["delegations"]
    assert delegation["succinct_roles"]["keyids"] == [new] and list(delegation["keys"]) == [new]
    for n in range(4):
        signatures = json.loads((metadata / f"bins-{n}.json").read_bytes())["signatures"]
        assert [s["keyid"] for s in signatures] == [new]
    listed = ok(tufnotary(stack, tmp_path / "consumer", "list", "--root", str(metadata / "root.json"), collection))
    if keep:
        assert all(p in listed for p in paths) and "dropped" not in out
    else:
        assert not any(p in listed for p in paths)
        assert all(f" {p}: sha256:" in out for p in paths) and out.count("dropped bins-") == len(paths)

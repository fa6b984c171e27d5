"""Publisher and admin workflows through the `tufnotary` CLI against the real stack.

Delegations and --role publishing, threshold ceremonies, root/targets rotation walked by
ngclient, revocation with history, root key recovery, algorithm migration with a consumer
deny-algorithms policy, expiry (status, expired-but-repairable, bump-expiry), hash bins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tuf.api.metadata import Metadata, Root
from tuf.ngclient import Updater

BIN = Path(sys.executable).parent
PASSPHRASE = "publisher passphrase"


def run(stack, trust: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
    full_env["TUFNOTARY_PASSPHRASE"] = PASSPHRASE
    full_env.update(env or {})
    return subprocess.run(
        [str(BIN / "tufnotary"), "--server", stack.url, "--trust-dir", str(trust), *args],
        env=full_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], status: int, *phrases: str) -> str:
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    return result.stderr


def pinned_root(trust: Path, collection: str) -> Path:
    return trust / "collections" / collection / "metadata" / "root.json"


def new_key(stack, trust: Path, tmp_path: Path, *args: str) -> tuple[str, Path]:
    """Generate a key in `trust`; return its id and its exported public key file."""
    keyid = ok(run(stack, trust, "key", "generate", *args)).strip()
    exported = tmp_path / f"{keyid[:12]}.pub.json"
    exported.write_text(ok(run(stack, trust, "key", "export", keyid)))
    return keyid, exported


def artifact(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_delegation_to_another_signer_and_require_role(stack, collection, tmp_path):
    owner, holder, consumer = tmp_path / "owner", tmp_path / "holder", tmp_path / "consumer"
    app = artifact(tmp_path, "app.tar", b"prod app build 7")
    ok(run(stack, owner, "init", collection))
    holder_key, holder_pub = new_key(stack, holder, tmp_path)

    # The holder's key is not here: the delegation (with the role's first, empty version)
    # becomes a signing request the holder signs.
    request = tmp_path / "delegation.json"
    refusal = refused(
        run(stack, owner, "delegation", "add", collection, "targets/prod", "--key", str(holder_pub),
            "--paths", "prod/*"), 1, "targets/prod: 0 of 1 signature(s) required by targets", holder_key,
        "--save FILE")
    assert refusal.count("\n") == 1
    out = ok(run(stack, owner, "delegation", "add", collection, "targets/prod", "--key", str(holder_pub),
                 "--paths", "prod/*", "--save", str(request)))
    assert "still needed: targets/prod" in out
    assert "every threshold is met" in ok(run(stack, holder, "sign", "--add-signature", str(request)))
    ok(run(stack, owner, "publish", collection, "--from", str(request)))
    listed = ok(run(stack, owner, "delegation", "list", collection))
    assert f"targets/prod  from targets: paths prod/*; threshold 1 of [{holder_key[:16]}]; version 1" in listed

    # The holder pins the root and publishes into its role with its own key.
    ok(run(stack, holder, "list", "--root", str(pinned_root(owner, collection)), collection))
    ok(run(stack, holder, "add", collection, "prod/app", str(app), "--role", "targets/prod"))
    outside = run(stack, holder, "add", collection, "dev/app", str(app), "--role", "targets/prod")
    ok(outside)
    refused(run(stack, holder, "publish", collection, "--role", "targets/prod"), 1,
            "dev/app is outside the paths delegated to targets/prod (prod/*)")
    ok(run(stack, holder, "remove", collection, "dev/app", "--role", "targets/prod"))
    out = ok(run(stack, holder, "publish", collection, "--role", "targets/prod"))
    assert "targets/prod version 2 (1 added" in out

    # A consumer requiring both the owner (targets) and the delegate to sign the same bytes.
    ok(run(stack, consumer, "verify", "--root", str(pinned_root(owner, collection)), collection,
           "prod/app", str(app)))
    refused(run(stack, consumer, "verify", collection, "prod/app", str(app), "--require-role", "targets"),
            3, "required role targets does not sign prod/app")
    ok(run(stack, owner, "add", collection, "prod/app", str(app)))
    ok(run(stack, owner, "publish", collection))
    out = ok(run(stack, consumer, "verify", collection, "prod/app", str(app),
                 "--require-role", "targets", "--require-role", "targets/prod"))
    assert "signed by targets, targets/prod" in out

    # The delegate signs other bytes under the same name: requiring both roles now refuses.
    other = artifact(tmp_path, "other.tar", b"something else")
    ok(run(stack, holder, "add", collection, "prod/app", str(other), "--role", "targets/prod"))
    ok(run(stack, holder, "publish", collection, "--role", "targets/prod"))
    refused(run(stack, consumer, "verify", collection, "prod/app", str(app),
                "--require-role", "targets", "--require-role", "targets/prod"),
            3, "required role targets/prod signs different content for prod/app")

    ok(run(stack, owner, "delegation", "remove", collection, "targets/prod"))
    assert "has no delegations" in ok(run(stack, owner, "delegation", "list", collection))


def test_threshold_ceremony_two_of_two_targets(stack, collection, tmp_path):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    app = artifact(tmp_path, "app.tar", b"release 2.0")
    ok(run(stack, alice, "init", collection))
    bob_key, bob_pub = new_key(stack, bob, tmp_path)

    setup = tmp_path / "setup.json"
    ok(run(stack, alice, "key", "add", collection, "targets", "--key", str(bob_pub), "--threshold", "2",
           "--save", str(setup)))
    assert "every threshold is met" in ok(run(stack, bob, "sign", "--add-signature", str(setup)))
    ok(run(stack, alice, "publish", collection, "--from", str(setup)))

    ok(run(stack, alice, "add", collection, "app", str(app)))
    refused(run(stack, alice, "publish", collection), 1,
            "targets: 1 of 2 signature(s) required by root; missing 1 from key(s)", bob_key)
    prepared = run(stack, alice, "sign", "--prepare", collection, "targets")
    ok(prepared)
    assert "needs targets: 0 of 2" in prepared.stderr
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(prepared.stdout)
    request = json.loads(unsigned.read_text())
    assert request["tufnotary-signing-request"] == 1
    assert "app" in request["roles"]["targets"]["metadata"]["signed"]["targets"]
    assert "PRIVATE" not in unsigned.read_text()

    assert "still needed: targets: 1 of 2" in ok(run(stack, alice, "sign", "--add-signature", str(unsigned)))
    refused(run(stack, alice, "publish", collection, "--from", str(unsigned)), 1, "1 of 2", bob_key)
    assert "every threshold is met" in ok(run(stack, bob, "sign", "--add-signature", str(unsigned)))
    ok(run(stack, alice, "publish", collection, "--from", str(unsigned)))
    assert "no staged changes" in ok(run(stack, alice, "status", collection))
    ok(run(stack, alice, "verify", collection, "app", str(app)))


def test_root_and_targets_rotation_walked_by_ngclient_and_verify(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    app = artifact(tmp_path, "app.tar", b"app 1")
    ok(run(stack, owner, "init", collection))
    root_v1 = pinned_root(owner, collection).read_bytes()
    (tmp_path / "root-v1.json").write_bytes(root_v1)
    ok(run(stack, owner, "add", collection, "app", str(app)))
    ok(run(stack, owner, "publish", collection))
    ok(run(stack, consumer, "verify", "--root", str(tmp_path / "root-v1.json"), collection, "app", str(app)))

    old_root = Metadata[Root].from_bytes(root_v1).signed.roles["root"].keyids[0]
    out = ok(run(stack, owner, "key", "rotate", collection, "root"))
    assert f"rotated root of {collection}: {old_root} -> " in out
    chosen = ok(run(stack, owner, "key", "generate", "--type", "ecdsa-p384")).strip()
    ok(run(stack, owner, "key", "rotate", collection, "targets", "--key", chosen))
    ok(run(stack, owner, "key", "rotate", collection, "root", "--type", "rsa"))

    # Our verify walks v1 -> v4 from the consumer's pinned root...
    ok(run(stack, consumer, "verify", collection, "app", str(app)))
    # ... and so does python-tuf's own Updater, bootstrapped with root v1.
    metadata_dir = tmp_path / "ngclient"
    metadata_dir.mkdir()
    updater = Updater(str(metadata_dir), stack.base(collection), bootstrap=root_v1)
    updater.refresh()
    info = updater.get_targetinfo("app")
    assert info is not None and info.length == len(b"app 1")
    root = Metadata[Root].from_bytes((metadata_dir / "root.json").read_bytes()).signed
    assert root.version == 4  # root, targets (a root change), root again
    assert root.roles["targets"].keyids == [chosen]
    assert root.get_key(root.roles["root"].keyids[0]).keytype == "rsa"
    # The old root key alone can no longer sign a root: the server refuses a forged rotation.
    assert old_root not in root.roles["root"].keyids


def test_revoke_a_leaked_targets_key_lists_what_it_signed(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    one, two = artifact(tmp_path, "one", b"one"), artifact(tmp_path, "two", b"two")
    init = ok(run(stack, owner, "init", collection))
    targets_key = init.split("targets key ")[1].strip()
    ok(run(stack, consumer, "list", "--root", str(pinned_root(owner, collection)), collection))
    for name, path in (("one", one), ("two", two)):
        ok(run(stack, owner, "add", collection, name, str(path)))
        ok(run(stack, owner, "publish", collection))

    keys_before = ok(run(stack, owner, "key", "list"))
    plan = ok(run(stack, owner, "key", "revoke", collection, targets_key, "--dry-run"))
    assert "dry run: nothing published" in plan and "would be dropped targets two: sha256:" in plan
    assert ok(run(stack, owner, "key", "list")) == keys_before  # no replacement key made
    ok(run(stack, consumer, "verify", collection, "two", str(two)))

    out = ok(run(stack, owner, "key", "revoke", collection, targets_key))
    assert f"revoked {targets_key} in {collection} (roles: targets)" in out
    assert "new key " in out
    assert "  one  sha256:" in out and "(targets version 2)" in out
    assert "  two  sha256:" in out and "(targets version 3)" in out
    # Only the leaked key ever signed them: revoke drops them until the owner vouches again.
    assert "dropped targets one: sha256:" in out and "dropped targets two: sha256:" in out
    refused(run(stack, consumer, "verify", collection, "two", str(two)), 3, "two")

    ok(run(stack, owner, "add", collection, "two", str(two)))
    ok(run(stack, owner, "publish", collection))
    ok(run(stack, consumer, "verify", collection, "two", str(two)))
    root = Metadata[Root].from_bytes(pinned_root(consumer, collection).read_bytes()).signed
    assert targets_key not in root.roles["targets"].keyids and targets_key not in root.keys
    refused(run(stack, owner, "key", "revoke", collection, targets_key), 1, "no role of")
    timestamp_key = root.roles["timestamp"].keyids[0]
    refused(run(stack, owner, "key", "revoke", collection, timestamp_key), 1,
            "--server-managed")  # a leaked server key is replaced by the server, not revoked


def test_root_recovery_with_a_lost_key_and_refusal_when_impossible(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    app = artifact(tmp_path, "app", b"app")
    init = ok(run(stack, owner, "init", collection))
    k1 = init.split("root key ")[1].split(",")[0]
    k2 = ok(run(stack, owner, "key", "generate")).strip()
    k3 = ok(run(stack, owner, "key", "generate")).strip()
    ok(run(stack, owner, "key", "add", collection, "root", "--key", k2, "--key", k3, "--threshold", "2"))
    ok(run(stack, consumer, "list", "--root", str(pinned_root(owner, collection)), collection))

    (owner / "private" / f"{k1}.pem").unlink()  # k1 is lost; 2 of 3 survive
    refused(run(stack, owner, "key", "rotate", collection, "root"), 1, "name the one to replace with --old")
    out = ok(run(stack, owner, "key", "rotate", collection, "root", "--old", k1))
    k4 = out.strip().split(" -> ")[1].split(" ")[0]
    ok(run(stack, owner, "add", collection, "app", str(app)))
    ok(run(stack, owner, "publish", collection))
    ok(run(stack, consumer, "verify", collection, "app", str(app)))
    root = Metadata[Root].from_bytes(pinned_root(consumer, collection).read_bytes()).signed
    assert sorted(root.roles["root"].keyids) == sorted([k2, k3, k4]) and root.roles["root"].threshold == 2

    for lost in (k3, k4):  # now only k2 survives: 1 of the 2 signatures a new root needs
        (owner / "private" / f"{lost}.pem").unlink()
    err = refused(run(stack, owner, "key", "rotate", collection, "root", "--old", k3), 1,
                  f"root: 1 of 2 signature(s) required by root version {root.version}",
                  "A new root needs a threshold of the CURRENT root keys",
                  "docs/runbooks/lost-root-key.md")
    assert err.count("\n") == 1


def test_algorithm_migration_with_a_deny_policy(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    app = artifact(tmp_path, "app", b"app")
    old = ok(run(stack, owner, "key", "generate", "--type", "ecdsa")).strip()
    ok(run(stack, owner, "init", collection, "--targets-key", old))
    ok(run(stack, owner, "add", collection, "app", str(app)))
    ok(run(stack, owner, "publish", collection))
    consumer.mkdir()
    config = consumer / "config.toml"
    config.write_text('deny-algorithms = ["ecdsa-sha2-nistp256", "rsa<3072"]\n')
    root_file = str(pinned_root(owner, collection))
    refused(run(stack, consumer, "verify", "--root", root_file, collection, "app", str(app)), 3,
            "targets of", "0 signature(s) from allowed algorithms but needs 1",
            f"{old[:16]} (ecdsa-sha2-nistp256, denied by 'ecdsa-sha2-nistp256')")

    # Grace period: a second, allowed key signs alongside the old one; nothing is rebuilt.
    new = ok(run(stack, owner, "key", "generate", "--type", "ecdsa-p384")).strip()
    ok(run(stack, owner, "key", "add", collection, "targets", "--key", new))
    out = ok(run(stack, owner, "status", collection))
    assert f"2 of 1 needed: {min(old, new)[:16]}" in out or "2 of 1 needed" in out
    ok(run(stack, consumer, "verify", collection, "app", str(app)))
    ok(run(stack, tmp_path / "legacy", "verify", "--root", root_file, collection, "app", str(app)))

    # End of the grace period: the old key is removed from the role.
    ok(run(stack, owner, "key", "remove", collection, "targets", old))
    ok(run(stack, consumer, "verify", collection, "app", str(app)))
    root = Metadata[Root].from_bytes(pinned_root(consumer, collection).read_bytes()).signed
    assert root.roles["targets"].keyids == [new]


def test_expired_targets_are_listable_and_repairable_by_the_owner(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    app = artifact(tmp_path, "app", b"app")
    ok(run(stack, owner, "init", collection, "--targets-expiry-days", str(6 / 86400)))
    ok(run(stack, owner, "add", collection, "app", str(app)))
    ok(run(stack, owner, "publish", collection))
    published = time.monotonic()
    status = run(stack, owner, "status", collection)
    ok(status)
    assert "targets" in status.stdout and "expires in 0.0 days" in status.stderr
    ok(run(stack, consumer, "verify", "--root", str(pinned_root(owner, collection)), collection, "app", str(app)))
    time.sleep(max(0.0, 6.5 - (time.monotonic() - published)))

    refused(run(stack, consumer, "verify", collection, "app", str(app)), 3, "expired")
    listed = run(stack, owner, "list", collection)
    assert listed.returncode == 0 and "app  3 bytes" in listed.stdout
    assert "targets of" in listed.stderr and "EXPIRED" in listed.stderr
    assert f"tufnotary bump-expiry {collection} targets --days 90" in listed.stderr
    assert "EXPIRED" in run(stack, owner, "status", collection).stderr
    ok(run(stack, owner, "bump-expiry", collection, "targets", "--days", "30"))
    ok(run(stack, consumer, "verify", collection, "app", str(app)))
    refused(run(stack, owner, "bump-expiry", collection, "timestamp", "--days", "3"), 1,
            "renewed by the server")


def test_hash_bins_route_targets_and_publish_only_changed_bins(stack, collection, tmp_path):
    owner, consumer = tmp_path / "owner", tmp_path / "consumer"
    files = {f"charts/app-{i}.tgz": artifact(tmp_path, f"app-{i}", f"app {i}".encode()) for i in range(3)}
    out = ok(run(stack, owner, "init", collection, "--bins", "16"))
    assert "16 hash bins" in out
    for name, path in files.items():
        ok(run(stack, owner, "add", collection, name, str(path)))
    out = ok(run(stack, owner, "publish", collection))
    assert "3 added" in out
    for name, path in files.items():
        ok(run(stack, consumer, "verify", "--root", str(pinned_root(owner, collection)), collection, name, str(path)))
    listed = ok(run(stack, consumer, "list", collection))
    assert all(name in listed for name in files) and "hash bins: 16" in listed
    status = ok(run(stack, owner, "status", collection))
    assert "bins-* (16 bins)" in status
    assert "bins-*  (16 hash bins) from targets" in ok(run(stack, owner, "delegation", "list", collection))
    refused(run(stack, owner, "init", f"{collection}-x", "--bins", "12"), 1, "power of two")

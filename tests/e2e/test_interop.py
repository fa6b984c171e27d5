"""Interoperability matrix: python-tuf's ngclient.Updater, used directly, against the real server
process (SQLite and PostgreSQL), after each kind of change a publisher can make."""

from __future__ import annotations

import json

from tests.e2e.tuf_http import new_collection, post, updater


def _client_version(tmp_path, role: str) -> int:
    return json.loads((tmp_path / "client-metadata" / f"{role}.json").read_bytes())["signed"]["version"]


def test_adding_and_removing_targets(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    root = repo.sign("root")
    repo.add_target("a.tar", b"a")
    repo.add_target("b.tar", b"b")
    repo.bump("targets")
    post(stack, collection, {"targets": repo.sign("targets")})
    client = updater(stack.base(collection), root, tmp_path / "1")
    client.refresh()
    assert client.get_targetinfo("a.tar") and client.get_targetinfo("b.tar")

    del repo.md("targets").signed.targets["a.tar"]
    repo.bump("targets")
    post(stack, collection, {"targets": repo.sign("targets")})
    client = updater(stack.base(collection), root, tmp_path / "1")  # same cache: an update, not a first fetch
    client.refresh()
    assert client.get_targetinfo("a.tar") is None
    assert client.get_targetinfo("b.tar") is not None
    assert _client_version(tmp_path / "1", "targets") == 3


def test_three_root_rotations_in_a_row(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    first_root = repo.sign("root")
    for n in range(3):
        old = repo.signers["root"]
        repo.rotate("root")
        repo.bump("root")
        post(stack, collection, {"root": repo.sign("root", signers=old + repo.signers["root"])})
    repo.add_target("signed-under-root-4", b"x")
    repo.bump("targets")
    post(stack, collection, {"targets": repo.sign("targets")})

    client = updater(stack.base(collection), first_root, tmp_path)
    client.refresh()
    assert client.get_targetinfo("signed-under-root-4") is not None
    assert _client_version(tmp_path, "root") == 4


def test_rotating_the_targets_key(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    root_v1 = repo.sign("root")
    repo.rotate("targets")
    repo.bump("root")
    repo.add_target("under-new-key", b"k")
    repo.bump("targets")
    post(stack, collection, {"root": repo.sign("root"), "targets": repo.sign("targets")})
    client = updater(stack.base(collection), root_v1, tmp_path)
    client.refresh()
    assert client.get_targetinfo("under-new-key") is not None


def test_nested_delegation_three_levels_deep(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    # In TUF path patterns '*' does not cross '/': each level names the depth of what it delegates.
    repo.delegate("a", ["a/*/*/*"])
    repo.delegate("a/b", ["a/b/*/*"], parent="a")
    repo.delegate("a/b/c", ["a/b/c/*"], parent="a/b")
    repo.add_target("a/b/c/deep.bin", b"deep", role="a/b/c")
    repo.bump("targets")
    post(stack, collection, {r: repo.sign(r) for r in ("targets", "a", "a/b", "a/b/c")})
    client = updater(stack.base(collection), repo.sign("root"), tmp_path)
    client.refresh()
    info = client.get_targetinfo("a/b/c/deep.bin")
    assert info is not None and info.length == 4


def test_terminating_delegation_shadows_a_later_one(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    repo.delegate("first", ["apps/*"], terminating=True)
    repo.delegate("second", ["apps/*"])
    repo.add_target("apps/only-in-second", b"2", role="second")
    repo.add_target("apps/in-first", b"1", role="first")
    repo.bump("targets")
    post(stack, collection, {r: repo.sign(r) for r in ("targets", "first", "second")})
    client = updater(stack.base(collection), repo.sign("root"), tmp_path / "terminating")
    client.refresh()
    assert client.get_targetinfo("apps/in-first") is not None
    assert client.get_targetinfo("apps/only-in-second") is None  # the search stopped at "first"

    repo.md("targets").signed.delegations.roles["first"].terminating = False
    repo.bump("targets")
    post(stack, collection, {"targets": repo.sign("targets")})
    client = updater(stack.base(collection), repo.sign("root"), tmp_path / "not-terminating")
    client.refresh()
    assert client.get_targetinfo("apps/only-in-second") is not None


def test_rotating_the_server_managed_timestamp_and_snapshot_keys(stack, collection, tmp_path):
    import urllib.request

    from securesystemslib.signer import SSlibKey

    repo = new_collection(stack, collection)
    root_v1 = repo.sign("root")
    client = updater(stack.base(collection), root_v1, tmp_path)
    client.refresh()
    for role in ("timestamp", "snapshot"):
        request = urllib.request.Request(stack.base(collection) + f"{role}.key", method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            body = json.load(r)
        assert body.pop("state") == "pending"
        repo.set_online_key(role, SSlibKey.from_dict(body.pop("keyid"), body))
    repo.bump("root")
    repo.add_target("after-online-rotation", b"r")
    repo.bump("targets")
    post(stack, collection, {"root": repo.sign("root"), "targets": repo.sign("targets")})

    client = updater(stack.base(collection), root_v1, tmp_path)  # same cache: trusts the old keys
    client.refresh()
    assert client.get_targetinfo("after-online-rotation") is not None
    assert _client_version(tmp_path, "root") == 2

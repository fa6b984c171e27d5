"""`tufnotary history` joined with the server's audit log: who published each version and when,
through the real stack with token auth on (the server's own issuer) and anonymous pull allowed,
so a consumer without a token still reads the metadata but not the audit log."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_auth_flow import ok, tufnotary
from tests.server.auth_helpers import own_issuer_files
from tests.stack import start_stack

COLLECTION = "wabbit-networks/history"
ALICE = {"TUFNOTARY_USERNAME": "alice", "TUFNOTARY_PASSWORD": "alice password"}
BOB = {"TUFNOTARY_USERNAME": "bob", "TUFNOTARY_PASSWORD": "bob password"}
READER = {"TUFNOTARY_USERNAME": "reader", "TUFNOTARY_PASSWORD": "reader password"}
OUTSIDER = {"TUFNOTARY_USERNAME": "outsider", "TUFNOTARY_PASSWORD": "outsider password"}


@pytest.fixture(scope="module")
def audited_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("history-audit")
    users, key = own_issuer_files(workdir, {
        "alice": ("alice password", ["repository:wabbit-networks/*:pull,push"]),
        "bob": ("bob password", ["repository:wabbit-networks/*:pull,push"]),
        "reader": ("reader password", ["repository:wabbit-networks/*:pull"]),
        "outsider": ("outsider password", ["repository:acme/*:pull"]),
    })
    stack = start_stack(workdir, f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}", {
        "TUFNOTARY_SERVER_AUTH": "token",
        "TUFNOTARY_SERVER_AUTH_USERS_FILE": str(users),
        "TUFNOTARY_SERVER_AUTH_TOKEN_KEY": str(key),
        "TUFNOTARY_SERVER_AUTH_ANONYMOUS_PULL": "true",
        "TUFNOTARY_SERVER_RATE_LIMIT": "500",
    })
    yield stack
    stack.stop()


def test_history_names_who_published_each_version_and_when(audited_stack, tmp_path):
    owner = tmp_path / "home" / "owner"
    v1, v2 = tmp_path / "v1.tar", tmp_path / "v2.tar"
    v1.write_bytes(b"net-monitor 1")
    v2.write_bytes(b"net-monitor 2")
    ok(tufnotary(audited_stack, owner, "init", COLLECTION, **ALICE))
    ok(tufnotary(audited_stack, owner, "add", COLLECTION, "net-monitor", str(v1), **ALICE))
    ok(tufnotary(audited_stack, owner, "publish", COLLECTION, **ALICE))
    # The same signing key, another authenticated subject: the audit log tells them apart.
    ok(tufnotary(audited_stack, owner, "add", COLLECTION, "net-monitor", str(v2), **BOB))
    ok(tufnotary(audited_stack, owner, "publish", COLLECTION, **BOB))

    root = owner / "collections" / COLLECTION / "metadata" / "root.json"  # the pinned root, version 1
    reader = tmp_path / "home" / "reader"
    result = tufnotary(audited_stack, reader, "history", COLLECTION, "net-monitor", "--root", str(root), **READER)
    lines = ok(result).strip().splitlines()
    assert "unavailable" not in result.stderr
    assert len(lines) == 2, lines
    stamp = r"recorded \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(\+00:00|Z)? by"
    assert re.search(rf"net-monitor  targets v2  sha256:\S+ \(13 bytes\)  {stamp} alice  signed by [0-9a-f]{{16}}",
                     lines[0]), lines[0]
    assert re.search(rf"net-monitor  targets v3  sha256:\S+ \(13 bytes\)  {stamp} bob  signed by [0-9a-f]{{16}}",
                     lines[1]), lines[1]
    assert READER["TUFNOTARY_PASSWORD"] not in result.stdout + result.stderr

    # Anonymous pull reads the metadata but not the audit log: history still works, and says why.
    for who, env in (("anonymous", {}), ("outsider", OUTSIDER)):
        result = tufnotary(audited_stack, tmp_path / "home" / who, "history", COLLECTION, "net-monitor",
                           "--root", str(root), **env)
        lines = ok(result).strip().splitlines()
        assert len(lines) == 2 and all("recorded: subject unavailable" in line for line in lines), lines
        assert "alice" not in result.stdout and "bob" not in result.stdout
        assert "who published each version, and when, is unavailable" in result.stderr
        assert "needs a token with pull access to wabbit-networks/history" in result.stderr
        assert "TUFNOTARY_USERNAME" in result.stderr

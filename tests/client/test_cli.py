"""The `tufnotary` CLI: through the installed entry point as a subprocess, and through main()."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import COLLECTION, PASSPHRASE
from tests.client.fake_server import FakeServer
from tufnotary.client.cli import main

TUFNOTARY = Path(sys.executable).parent / "tufnotary"


def run(
    server: FakeServer, trust: Path, *args: str, passphrase: str | None = PASSPHRASE
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
    env["TUFNOTARY_TRUST_DIR"] = str(trust)
    if passphrase is not None:
        env["TUFNOTARY_PASSPHRASE"] = passphrase
    return subprocess.run(
        [str(TUFNOTARY), "--server", server.url, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], status: int, pattern: str) -> None:
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tufnotary: error: ")
    assert re.search(pattern, lines[0]), lines[0]


def test_publish_and_verify_through_the_installed_command(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    trust = tmp_path / "trust"
    artifact = tmp_path / "net-monitor.tar"
    artifact.write_bytes(b"image layers")

    gen = run(fake_server, trust, "key", "generate", "--type", "ecdsa")
    assert gen.returncode == 0, gen.stderr
    keyid = gen.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", keyid)
    listed = run(fake_server, trust, "key", "list")
    assert listed.stdout.split() == [keyid, "ecdsa", "ecdsa-sha2-nistp256"]

    init = run(fake_server, trust, "init", COLLECTION, "--root-key", keyid)
    assert init.returncode == 0, init.stderr
    assert f"root key {keyid}" in init.stdout
    assert run(fake_server, trust, "add", COLLECTION, "net-monitor:v1", str(artifact)).returncode == 0
    status = run(fake_server, trust, "status", COLLECTION)
    assert status.stdout.startswith("add    net-monitor:v1 (12 bytes, sha256:")
    publish = run(fake_server, trust, "publish", COLLECTION)
    assert publish.returncode == 0, publish.stderr
    assert "targets version 2 (1 added, 0 removed)" in publish.stdout

    ok = run(fake_server, trust, "verify", COLLECTION, "net-monitor:v1", str(artifact))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: ")
    lookup = run(fake_server, trust, "lookup", COLLECTION, "net-monitor:v1")
    assert json.loads(lookup.stdout)["length"] == 12

    artifact.write_bytes(b"image layers, tampered")
    bad = run(fake_server, trust, "verify", COLLECTION, "net-monitor:v1", str(artifact))
    assert_one_line_error(bad, 3, "does not match the trusted net-monitor:v1")
    unknown = run(fake_server, trust, "verify", COLLECTION, "net-monitor:v2", str(artifact))
    assert_one_line_error(unknown, 3, "net-monitor:v2 is not signed")


def test_passphrase_is_never_accepted_from_argv(fake_server: FakeServer, tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    proc = run(fake_server, trust, "key", "generate", "--passphrase", "secret", passphrase=None)
    assert proc.returncode == 2
    assert "unrecognized arguments: --passphrase secret" in proc.stderr
    assert not (trust / "private").exists()
    assert "passphrase" not in run(fake_server, trust, "key", "generate", "--help").stdout


def test_missing_passphrase_without_a_terminal_is_one_line(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    proc = run(fake_server, tmp_path / "trust", "key", "generate", passphrase=None)
    assert_one_line_error(proc, 1, "set TUFNOTARY_PASSPHRASE")


def test_wrong_passphrase_names_the_key(fake_server: FakeServer, tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    keyid = run(fake_server, trust, "key", "generate").stdout.strip()
    proc = run(fake_server, trust, "init", COLLECTION, "--root-key", keyid, passphrase="wrong")
    assert_one_line_error(proc, 1, f"cannot decrypt key {keyid}: wrong passphrase")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TUFNOTARY_PASSPHRASE", PASSPHRASE)
    trust = tmp_path / "publisher"
    monkeypatch.setenv("TUFNOTARY_TRUST_DIR", str(trust))
    return trust


def test_consumer_pins_a_root_file_and_verifies(
    cli_env: Path, fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--server", fake_server.url]
    artifact = tmp_path / "chart.tgz"
    artifact.write_bytes(b"chart")
    assert main([*server, "init", COLLECTION]) == 0
    assert main([*server, "add", COLLECTION, "chart.tgz", str(artifact)]) == 0
    assert main([*server, "publish", COLLECTION]) == 0
    root_file = cli_env / "collections" / COLLECTION / "metadata" / "root.json"
    capsys.readouterr()

    consumer = ["--trust-dir", str(tmp_path / "consumer"), *server]
    assert main([*consumer, "verify", COLLECTION, "chart.tgz", str(artifact)]) == 1
    assert "pass --root FILE" in capsys.readouterr().err
    assert main([*consumer, "verify", "--root", str(root_file), COLLECTION, "chart.tgz", str(artifact)]) == 0
    assert main([*consumer, "list", COLLECTION]) == 0
    out = capsys.readouterr().out
    assert "chart.tgz  5 bytes, sha256:" in out


def test_server_refusal_and_unreachable_server_are_one_line(
    cli_env: Path, fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--server", fake_server.url]
    assert main([*server, "init", COLLECTION]) == 0
    assert main([*server, "add", COLLECTION, "x", "--digest", "sha256:" + "0" * 64, "--length", "3"]) == 0
    # twice: the full publish retries what the express publish was refused
    fake_server.refuse_next_upload("VERSION_CONFLICT", "targets version 2 already exists", status=409, times=2)
    capsys.readouterr()
    assert main([*server, "publish", COLLECTION]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "server refused (VERSION_CONFLICT): targets version 2 already exists" in err

    assert main(["--server", "http://127.0.0.1:9", "init", "other/collection"]) == 4
    assert "cannot reach server http://127.0.0.1:9" in capsys.readouterr().err


def test_delete_needs_yes(cli_env: Path, fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server = ["--server", fake_server.url]
    assert main([*server, "init", COLLECTION]) == 0
    assert main([*server, "delete", COLLECTION]) == 1
    assert "--yes" in capsys.readouterr().err
    assert COLLECTION in fake_server.collections
    assert main([*server, "delete", COLLECTION, "--yes"]) == 0
    assert COLLECTION not in fake_server.collections


def test_interactive_passphrase_is_asked_twice_for_new_keys_and_must_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import getpass

    from tufnotary.client.cli import TerminalPassphrases
    from tufnotary.client.errors import PassphraseError

    monkeypatch.delenv("TUFNOTARY_PASSPHRASE", raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["one", "one", "two", "three"])
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    passphrases = TerminalPassphrases()
    assert passphrases("a" * 64, True) == "one"
    assert passphrases("b" * 64, True) == "one"  # one confirmed passphrase for all new keys
    assert passphrases("a" * 64, False) == "one"  # already known in this command
    assert len(prompts) == 2 and prompts[1] == "Repeat passphrase: "
    with pytest.raises(PassphraseError, match="differ"):
        TerminalPassphrases()("c" * 64, True)


@pytest.mark.parametrize("argv, command", [
    (["publish", "c"], "publish"),
    (["--server", "http://h:1", "--trust-dir=/t", "--timeout", "3", "key", "list"], "key"),
    (["--config=/c.toml", "delegation", "add", "c", "r"], "delegation"),
    (["--help"], None),
    (["--serv", "http://h:1", "publish", "c"], None),  # an abbreviation: let argparse decide
    ([], None),
])
def test_command_named_in_finds_the_command_word_after_global_options(argv: list[str], command: str | None) -> None:
    from tufnotary.client.cli import command_named_in

    assert command_named_in(argv) == command


@pytest.mark.parametrize("argv", [
    ["--server", "http://h:1", "publish", "c", "--role", "targets/prod", "--save", "req.json"],
    ["add", "c", "app:v1", "--digest", "sha256:" + "ab" * 32, "--length", "3"],
    ["key", "rotate", "c", "snapshot", "--client-managed"],
    ["delegation", "add", "c", "targets/prod", "--key", "k", "--paths", "prod/*"],
    ["verify", "reg/repo:tag", "--bundle", "b.json"],
    ["bundle", "export", "c", "-o", "out.json"],
])
def test_a_one_command_parser_parses_as_the_full_parser(argv: list[str]) -> None:
    from tufnotary.client.cli import build_parser, command_named_in

    command = command_named_in(argv)
    assert command is not None
    assert vars(build_parser(command).parse_args(argv)) == vars(build_parser().parse_args(argv))


def test_an_unknown_command_is_refused_with_every_command_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pubish", "c"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'pubish'" in err
    assert "'publish'" in err and "'changefeed'" in err and "'key'" in err


@pytest.mark.parametrize("columns", ["50", "120", None, "junk"])
def test_help_is_wrapped_as_argparse_wraps_it(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The help formatter sizes itself without shutil, to the same width argparse's own would use."""
    import argparse

    from tufnotary.client.cli import build_parser

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    parser = build_parser("publish")
    publish = parser._subparsers._group_actions[0].choices["publish"]  # type: ignore[union-attr]
    ours = (parser.format_help(), publish.format_help())
    for p in (parser, publish):
        p.formatter_class = argparse.HelpFormatter
    assert ours == (parser.format_help(), publish.format_help())
    if columns == "50":
        assert max(len(line) for line in ours[1].splitlines()) <= 50

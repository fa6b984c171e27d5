"""Every `sh` block of docs/runbooks/*.md, run as written against the real stack.

The blocks use placeholders ($C, $TARGETS_KEY, ...) that each test fills from the state it
set up; `tufnotary key generate` sets $NEW_KEY. Commands run in-process through `cli.main`
(the same code as the installed command) to keep the suite fast.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from tufnotary.client.cli import main

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
PASSPHRASE = "runbook passphrase"


def sh_blocks(name: str) -> list[list[str]]:
    text = (RUNBOOKS / name).read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [[line for line in b.splitlines() if line.startswith("tufnotary ")] for b in blocks]


class Shell:
    def __init__(self, stack, trust: Path, capsys: pytest.CaptureFixture[str], variables: dict[str, str]) -> None:
        self.stack, self.trust, self.capsys, self.vars = stack, trust, capsys, variables

    def tufnotary(self, *args: str, status: int = 0) -> str:
        self.capsys.readouterr()
        code = main(["--server", self.stack.url, "--trust-dir", str(self.trust), *args])
        out, err = self.capsys.readouterr()
        assert code == status, f"tufnotary {' '.join(args)} -> {code}\n{out}{err}"
        return out + err

    def run_block(self, block: list[str]) -> list[str]:
        outputs = []
        for line in block:
            expanded = re.sub(r"\$([A-Z_0-9]+)", lambda m: self.vars[m[1]], line)
            args = shlex.split(expanded)[1:]
            out = self.tufnotary(*args)
            if args[:2] == ["key", "generate"]:
                self.vars["NEW_KEY"] = out.strip()
            outputs.append(out)
        return outputs


@pytest.fixture
def shell(stack, collection, tmp_path, capsys, monkeypatch) -> Shell:
    for var in ("TUFNOTARY_TRUST_DIR", "TUFNOTARY_CONFIG", "TUFNOTARY_SERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TUFNOTARY_PASSPHRASE", PASSPHRASE)
    return Shell(stack, tmp_path / "owner", capsys, {"C": collection})


def consumer_root(shell: Shell, consumer: Path) -> Root:
    path = consumer / "collections" / shell.vars["C"] / "metadata" / "root.json"
    return Metadata[Root].from_bytes(path.read_bytes()).signed


def test_key_compromise_runbook(shell: Shell, tmp_path: Path) -> None:
    c = shell.vars["C"]
    init = shell.tufnotary("init", c)
    shell.vars["ROOT_KEY"] = init.split("root key ")[1].split(",")[0]
    shell.vars["TARGETS_KEY"] = init.split("targets key ")[1].split()[0]
    shell.vars["DELEGATION_KEY"] = prod_key = shell.tufnotary("key", "generate").strip()
    shell.tufnotary("delegation", "add", c, "targets/prod", "--key", prod_key, "--paths", "prod/*")
    (tmp_path / "app").write_bytes(b"app")
    shell.tufnotary("add", c, "prod/app", str(tmp_path / "app"), "--role", "targets/prod")
    shell.tufnotary("publish", c, "--role", "targets/prod")
    shell.tufnotary("add", c, "app", str(tmp_path / "app"))
    shell.tufnotary("publish", c)
    root_file = str(shell.trust / "collections" / c / "metadata" / "root.json")
    consumer = Shell(shell.stack, tmp_path / "consumer", shell.capsys, {})
    consumer.tufnotary("list", "--root", root_file, c)

    blocks = sh_blocks("key-compromise.md")
    delegation_plan, targets_plan, history = shell.run_block(blocks[0])
    assert "dry run: nothing published" in delegation_plan
    assert "would be dropped targets/prod prod/app" in delegation_plan  # the default, had it run
    assert "would be dropped targets app" in targets_plan
    assert "prod/app" in history
    consumer.tufnotary("verify", c, "prod/app", str(tmp_path / "app"))  # the dry run changed nothing
    delegation_out, targets_out, _ = shell.run_block(blocks[1])
    assert "prod/app  sha256:" in delegation_out and "(targets/prod version 2)" in delegation_out
    assert "kept (--keep-content) targets/prod prod/app" in delegation_out
    assert "  app  sha256:" in targets_out
    [root_out] = shell.run_block(blocks[2])
    assert "roles: root" in root_out

    consumer.tufnotary("verify", c, "prod/app", str(tmp_path / "app"))
    consumer.tufnotary("verify", c, "app", str(tmp_path / "app"))
    root = consumer_root(shell, tmp_path / "consumer")
    for leaked in ("ROOT_KEY", "TARGETS_KEY", "DELEGATION_KEY"):
        assert shell.vars[leaked] not in root.keys
    old_online = {role: root.roles[role].keyids for role in ("timestamp", "snapshot")}
    shell.run_block(blocks[3])
    consumer.tufnotary("verify", c, "app", str(tmp_path / "app"))  # walks to the root with the new keys
    rotated = consumer_root(shell, tmp_path / "consumer")
    for role in ("timestamp", "snapshot"):
        assert len(rotated.roles[role].keyids) == 1
        assert rotated.roles[role].keyids != old_online[role]
    assert "--server-managed" in shell.tufnotary("key", "rotate", c, "timestamp", status=1)


def test_lost_root_key_runbook(shell: Shell, tmp_path: Path) -> None:
    c = shell.vars["C"]
    init = shell.tufnotary("init", c)
    lost = init.split("root key ")[1].split(",")[0]
    shell.vars.update(
        LOST_KEY=lost,
        ROOT_KEY_2=shell.tufnotary("key", "generate").strip(),
        ROOT_KEY_3=shell.tufnotary("key", "generate").strip(),
    )
    consumer = Shell(shell.stack, tmp_path / "consumer", shell.capsys, {})
    setup, recover = sh_blocks("lost-root-key.md")
    shell.run_block(setup)
    consumer.tufnotary("list", "--root", str(shell.trust / "collections" / c / "metadata" / "root.json"), c)
    (shell.trust / "private" / f"{lost}.pem").unlink()
    shell.run_block(recover)
    consumer.tufnotary("list", c)
    root = consumer_root(shell, tmp_path / "consumer")
    assert lost not in root.roles["root"].keyids and root.roles["root"].threshold == 2
    # Only one of the two required keys left: refused, with the way out explained.
    (shell.trust / "private" / f"{shell.vars['ROOT_KEY_2']}.pem").unlink()
    new_root_key = next(k for k in root.roles["root"].keyids if k not in shell.vars.values())
    (shell.trust / "private" / f"{new_root_key}.pem").unlink()
    refusal = shell.tufnotary("key", "rotate", c, "root", "--old", shell.vars["ROOT_KEY_2"], status=1)
    assert "1 of 2 signature(s) required by root version" in refusal
    assert "cannot be rotated" in refusal


def test_algorithm_deprecation_runbook(shell: Shell, tmp_path: Path) -> None:
    c = shell.vars["C"]
    old = shell.tufnotary("key", "generate", "--type", "ecdsa").strip()
    shell.vars["OLD_KEY"] = old
    shell.tufnotary("init", c, "--targets-key", old)
    (tmp_path / "app").write_bytes(b"app")
    shell.tufnotary("add", c, "app", str(tmp_path / "app"))
    shell.tufnotary("publish", c)
    consumer_dir = tmp_path / "consumer"
    consumer_dir.mkdir()
    (consumer_dir / "config.toml").write_text('deny-algorithms = ["ecdsa-sha2-nistp256", "rsa<3072"]\n')
    consumer = Shell(shell.stack, consumer_dir, shell.capsys, {})
    root_file = str(shell.trust / "collections" / c / "metadata" / "root.json")
    denied = consumer.tufnotary("verify", "--root", root_file, c, "app", str(tmp_path / "app"), status=3)
    assert "denied by 'ecdsa-sha2-nistp256'" in denied

    grace, end = sh_blocks("algorithm-deprecation.md")
    shell.run_block(grace)
    consumer.tufnotary("verify", c, "app", str(tmp_path / "app"))
    shell.run_block(end)
    consumer.tufnotary("verify", c, "app", str(tmp_path / "app"))
    assert consumer_root(shell, consumer_dir).roles["targets"].keyids == [shell.vars["NEW_KEY"]]


def test_expiry_runbook(shell: Shell, tmp_path: Path) -> None:
    import time

    c = shell.vars["C"]
    shell.tufnotary("init", c, "--targets-expiry-days", str(4 / 86400))
    (tmp_path / "app").write_bytes(b"app")
    shell.tufnotary("add", c, "app", str(tmp_path / "app"))
    shell.tufnotary("publish", c)
    published = time.monotonic()
    status, renew, repair = sh_blocks("expiry.md")
    [status_out] = shell.run_block(status)
    assert "targets" in status_out and "warning: targets" in status_out and "bump-expiry" in status_out
    consumer = Shell(shell.stack, tmp_path / "consumer", shell.capsys, {})
    root_file = str(shell.trust / "collections" / c / "metadata" / "root.json")
    consumer.tufnotary("verify", "--root", root_file, c, "app", str(tmp_path / "app"))
    time.sleep(max(0.0, 4.5 - (time.monotonic() - published)))
    assert "expired" in consumer.tufnotary("verify", c, "app", str(tmp_path / "app"), status=3)

    listed, _ = shell.run_block(repair)
    assert "app  3 bytes" in listed and "EXPIRED" in listed
    consumer.tufnotary("verify", c, "app", str(tmp_path / "app"))
    shell.run_block(renew)
    assert "warning" not in shell.run_block(status)[0]
    consumer.tufnotary("verify", c, "app", str(tmp_path / "app"))

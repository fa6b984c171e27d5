"""`tufnotary-server migrate` upgrades a database created by the first schema without losing data, and
`migrate` on both services is idempotent: through the real commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tufnotary.server.storage import NewFile, open_store
from tufnotary.signer.certs import write_dev_certs

BIN = Path(sys.executable).parent
FIRST = "0001_initial"


def _run(command: list[str], env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
    done = subprocess.run(command, env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    return request.getfixturevalue("pg_cluster").new_database()


def test_migrate_upgrades_a_first_schema_database_and_keeps_its_data(database_url):
    old = open_store(database_url)
    every = old.migrations()
    assert every[0][0] == FIRST
    old.migrations = lambda: every[:1]  # type: ignore[method-assign]  # the schema as first released
    assert old.migrate() == [FIRST]
    # Rows as the first release wrote them (today's commit also writes columns that schema lacks).
    rows = [("root", 1, b'{"root": 1}'), ("targets", 1, b'{"targets": 1}'), ("snapshot", 1, b'{"snapshot": 1}'),
            ("timestamp", 1, b'{"timestamp": 1}'), ("timestamp", 2, b'{"timestamp": 2}')]

    def first_release_commit(cur) -> None:
        cur.execute(old._q("INSERT INTO collections (name, created_at) VALUES (?, ?)"),
                    ("acme/app", old._encode_time(datetime.now(timezone.utc))))
        cur.execute(old._q("SELECT id FROM collections WHERE name = ?"), ("acme/app",))
        collection_id = cur.fetchone()[0]
        for role, version, data in rows:
            cur.execute(old._q("INSERT INTO files (collection_id, role, version, data, sha256, length, created_at)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (collection_id, role, version, data, hashlib.sha256(data).hexdigest(), len(data),
                         old._encode_time(datetime.now(timezone.utc))))

    old._run(first_release_commit, write=True)
    old.close()

    env = {"TUFNOTARY_SERVER_DATABASE_URL": database_url, "TUFNOTARY_SERVER_AUTH": "none"}
    first = _run([str(BIN / "tufnotary-server"), "migrate"], env)
    later = [name for name, _ in every[1:]]
    assert first.strip() == ("applied: " + ", ".join(later) if later else "schema is up to date")
    assert _run([str(BIN / "tufnotary-server"), "migrate"], env).strip() == "schema is up to date"

    upgraded = open_store(database_url)
    try:
        assert upgraded.migrate() == []
        assert upgraded.collections() == ["acme/app"]
        current = upgraded.current("acme/app")
        assert {role: f.version for role, f in current.items()} == {
            "root": 1, "targets": 1, "snapshot": 1, "timestamp": 2}
        assert upgraded.get("acme/app", "timestamp", 1).data == b'{"timestamp": 1}'
        # The upgraded schema accepts new commits as before.
        upgraded.commit("acme/app", [NewFile("timestamp", 3, b'{"timestamp": 3}')], expected={"timestamp": 2})
    finally:
        upgraded.close()


def test_signer_migrate_is_idempotent(database_url, tmp_path):
    certs = write_dev_certs(tmp_path / "certs")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long enough random passphrase")
    passphrase.chmod(0o600)
    env = {"TUFNOTARY_SIGNER_DATABASE_URL": database_url, "TUFNOTARY_SIGNER_TLS_CERT": str(certs.signer_cert),
           "TUFNOTARY_SIGNER_TLS_KEY": str(certs.signer_key), "TUFNOTARY_SIGNER_TLS_CLIENT_CA": str(certs.ca_cert),
           "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(passphrase)}
    for _ in range(2):
        assert "up to date" in _run([str(BIN / "tufnotary-signer"), "migrate"], env)

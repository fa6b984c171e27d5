"""Debian's notary 0.7.0 stack for the comparison: notary-signer (gRPC, mutual TLS) and notary-server
over PostgreSQL databases of the same throwaway cluster as ours, and the `notary` CLI.

Everything is written here into a temp dir: certificates (our dev CA helper), the PostgreSQL schema
(the Debian package ships no SQL migrations and the Go code does not create SQL tables), configs.
notary-server serves plain HTTP on loopback, like ours, so neither side pays for TLS to the load
generator; server-to-signer is mutual TLS on both sides. No auth on either server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import psycopg2

from tests.bench.cli import fake_digest, run
from tests.bench.database import database_bytes
from tests.pgcluster import PgCluster, free_port
from tests.stack import stop_process
from tufnotary.signer.certs import write_dev_certs

TARGET_LENGTH = 1234
SIGNER_ALIAS = "benchalias"
_PASSPHRASES = {f"NOTARY_{r}_PASSPHRASE": f"bench-{r.lower()}-pass"
                for r in ("ROOT", "TARGETS", "SNAPSHOT", "DELEGATION")}

SERVER_SCHEMA = """
CREATE TABLE tuf_files (
  id serial PRIMARY KEY,
  created_at timestamp NULL, updated_at timestamp NULL, deleted_at timestamp NULL,
  gun varchar(255) NOT NULL, role varchar(255) NOT NULL, version integer NOT NULL,
  data bytea NOT NULL, sha256 char(64) DEFAULT NULL,
  UNIQUE (gun, role, version)
);
CREATE INDEX tuf_files_sha256 ON tuf_files (sha256);
CREATE TABLE change_category (category varchar(20) PRIMARY KEY);
INSERT INTO change_category VALUES ('update'), ('deletion');
CREATE TABLE changefeed (
  id serial PRIMARY KEY,
  created_at timestamp DEFAULT CURRENT_TIMESTAMP,
  gun varchar(255) NOT NULL, version integer NOT NULL, sha256 char(64) DEFAULT NULL,
  category varchar(20) NOT NULL DEFAULT 'update' REFERENCES change_category
);
CREATE INDEX changefeed_gun ON changefeed (gun);
"""
SIGNER_SCHEMA = """
CREATE TABLE private_keys (
  id serial PRIMARY KEY,
  created_at timestamp NULL, updated_at timestamp NULL, deleted_at timestamp NULL,
  key_id varchar(255) NOT NULL UNIQUE,
  encryption_alg varchar(255) NOT NULL, keywrap_alg varchar(255) NOT NULL,
  algorithm varchar(50) NOT NULL, passphrase_alias varchar(50) NOT NULL,
  public bytea NOT NULL, private bytea NOT NULL,
  gun varchar(255) NOT NULL, role varchar(255) NOT NULL,
  last_used timestamp NULL DEFAULT NULL,
  UNIQUE (key_id, algorithm)
);
"""


def ensure_installed() -> None:
    if shutil.which("notary-server") and shutil.which("notary-signer") and shutil.which("notary"):
        return
    if os.geteuid() != 0:
        raise RuntimeError("notary is not installed and we are not root: apt-get install notary")
    subprocess.run(["apt-get", "install", "-y", "-qq", "notary"], check=True, capture_output=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _execute(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _wait(what: str, proc: subprocess.Popen, ready, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


class NotarySystem:
    name = "notary"

    def __init__(self, cluster: PgCluster, workdir: Path) -> None:
        ensure_installed()
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.server_db, self.signer_db = cluster.new_database(), cluster.new_database()
        _execute(self.server_db, SERVER_SCHEMA)
        _execute(self.signer_db, SIGNER_SCHEMA)
        self.certs = write_dev_certs(workdir / "certs")
        self.trust_dir = workdir / "trust"
        try:
            self._start_signer()
            self._start_server()
        except Exception:
            self.stop()
            raise
        self.client_config = workdir / "client.json"
        self.client_config.write_text(json.dumps(
            {"trust_dir": str(self.trust_dir), "remote_server": {"url": self.url}}))
        self.env = {**os.environ, **_PASSPHRASES}

    # --- processes
    @staticmethod
    def _go_db_url(url: str) -> str:
        return url.replace("postgresql://", "postgres://", 1) + "?sslmode=disable"

    def _start_signer(self) -> None:
        self.signer_port = free_port()
        config = {
            "server": {"grpc_addr": f"127.0.0.1:{self.signer_port}", "tls_cert_file": str(self.certs.signer_cert),
                       "tls_key_file": str(self.certs.signer_key), "client_ca_file": str(self.certs.ca_cert)},
            "logging": {"level": "error"},
            "storage": {"backend": "postgres", "db_url": self._go_db_url(self.signer_db),
                        "default_alias": SIGNER_ALIAS},
        }
        path = self.workdir / "signer-config.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, f"NOTARY_SIGNER_{SIGNER_ALIAS.upper()}": "notary bench signer passphrase"}
        log = self.workdir / "notary-signer.log"
        proc = subprocess.Popen(["notary-signer", "-config", str(path), "-logf", "logfmt"], env=env,
                                stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs["signer"] = proc

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.signer_port), timeout=1):
                    return True
            except OSError:
                return False

        _wait("notary-signer", proc, listening, log)

    def _start_server(self, timestamp_expiry: str | None = None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "server": {"http_addr": f"127.0.0.1:{port}"},
            "trust_service": {"type": "remote", "hostname": "localhost", "port": str(self.signer_port),
                              "key_algorithm": "ecdsa", "tls_ca_file": str(self.certs.ca_cert),
                              "tls_client_cert": str(self.certs.client_cert),
                              "tls_client_key": str(self.certs.client_key)},
            "logging": {"level": "error"},
            "storage": {"backend": "postgres", "db_url": self._go_db_url(self.server_db)},
            "caching": {"max_age": {"current_metadata": 300, "consistent_metadata": 31536000}},
        }
        path = self.workdir / "server-config.json"
        path.write_text(json.dumps(config))
        log = self.workdir / "notary-server.log"
        proc = subprocess.Popen(["notary-server", "-config", str(path), "-logf", "logfmt"],
                                stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs["server"] = proc

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/_notary_server/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        _wait("notary-server", proc, healthy, log)

    def server_pids(self) -> list[int]:
        proc = self.procs.get("server")
        return [proc.pid] if proc and proc.poll() is None else []

    def signer_pids(self) -> list[int]:
        proc = self.procs.get("signer")
        return [proc.pid] if proc and proc.poll() is None else []

    def stop(self) -> None:
        for name in ("server", "signer"):
            if name in self.procs:
                stop_process(self.procs[name])

    # --- HTTP and database
    def metadata_url(self, collection: str, role: str) -> str:
        return f"{self.url}/v2/{collection}/_trust/tuf/{role}.json"

    def expire_timestamp(self, collection: str) -> None:
        """Rewrite the stored current timestamp's `expires` into the past: the next GET makes
        notary-server sign a new one (notary renews on the read path; it does not re-verify the stored
        timestamp's signature before replacing it)."""
        _execute(self.server_db, f"""
            UPDATE tuf_files SET data = convert_to(regexp_replace(convert_from(data, 'UTF8'),
                   '"expires":"[^"]*"', '"expires":"2001-01-01T00:00:00Z"'), 'UTF8')
            WHERE id = (SELECT id FROM tuf_files WHERE gun = '{collection}' AND role = 'timestamp'
                        ORDER BY version DESC LIMIT 1)""")

    # --- the CLI
    def cli(self, *args: str) -> float:
        return run(["notary", "-c", str(self.client_config), *args], self.env)

    def init(self, collection: str, bins: int | None = None) -> float:
        """Create and publish a collection (client-managed snapshot, notary's default; notary has no bins)."""
        return self.cli("init", "-p", collection)

    def server_managed_snapshot(self, collection: str) -> None:
        """Hand the snapshot key to the server, so that a publish is signed like ours (server snapshot)."""
        self.cli("key", "rotate", collection, "snapshot", "-r")

    def add_one(self, collection: str, path: str) -> float:
        return self.cli("addhash", collection, path, str(TARGET_LENGTH), "--sha256", fake_digest(path))

    def stage(self, collection: str, paths: Sequence[str]) -> None:
        """Stage many targets by writing changelist entries like the ones `notary addhash` writes
        (one JSON file per change, named by time and UUID, applied in name order)."""
        changelist = self.trust_dir / "tuf" / collection / "changelist"
        changelist.mkdir(parents=True, exist_ok=True)
        base = time.time_ns()
        for i, path in enumerate(paths):
            meta = {"length": TARGET_LENGTH, "hashes": {"sha256": base64.b64encode(
                bytes.fromhex(fake_digest(path))).decode()}}
            change = {"action": "create", "role": "targets", "type": "target", "path": path,
                      "data": base64.b64encode(json.dumps(meta).encode()).decode()}
            (changelist / f"{base + i:020d}_{uuid.uuid4()}.change").write_text(json.dumps(change))

    def publish(self, collection: str) -> float:
        return self.cli("publish", collection)

    def database_bytes(self) -> int:
        return database_bytes(self.server_db)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")

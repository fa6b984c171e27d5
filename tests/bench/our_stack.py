"""Our stack for the benchmark: `tests/stack.py`'s signer and gunicorn-served server over PostgreSQL
databases of the shared throwaway cluster, plain HTTP on loopback, and the `tufnotary` CLI."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.bench.cli import fake_digest, run
from tests.bench.database import database_bytes
from tests.pgcluster import PgCluster
from tests.stack import BIN, Stack, start_stack, stop_process
from tufnotary.client.trustdir import TrustDir

PASSPHRASE = "tufnotary bench passphrase"
TARGET_LENGTH = 1234
# Auth off for the comparison (notary-server runs without auth too); the server logs at warning so
# that neither server writes a log line per request.
BASE_SERVER_ENV = {"TUFNOTARY_SERVER_AUTH": "none", "TUFNOTARY_SERVER_LOG_LEVEL": "warning"}


class OurSystem:
    name = "ours"

    def __init__(self, cluster: PgCluster, workdir: Path, workers: int = 2) -> None:
        self.workdir = workdir
        self.workers = workers
        self.stack: Stack = start_stack(workdir / "stack", cluster.new_database(), cluster.new_database(),
                                        server_env=dict(BASE_SERVER_ENV))
        self.trust_dir = workdir / "trust"
        self.env = {**os.environ, "TUFNOTARY_SERVER": self.stack.url, "TUFNOTARY_TRUST_DIR": str(self.trust_dir),
                    "TUFNOTARY_PASSPHRASE": PASSPHRASE}
        # An installed CLI starts from cached bytecode; without this, a shell that sets
        # PYTHONDONTWRITEBYTECODE makes every run compile the client's imports from source.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    # --- processes
    def server_pids(self) -> list[int]:
        proc = self.stack.procs.get("server")
        return [proc.pid] if proc and proc.poll() is None else []

    def signer_pids(self) -> list[int]:
        proc = self.stack.procs.get("signer")
        return [proc.pid] if proc and proc.poll() is None else []

    def restart_server(self, extra_env: dict[str, str]) -> None:
        """Restart only the server with more settings (same databases, same signer)."""
        stop_process(self.stack.procs.pop("server"))
        self.stack.server_env = {**BASE_SERVER_ENV, **extra_env}
        self.stack.start_server(self.workers)
        self.env["TUFNOTARY_SERVER"] = self.stack.url

    def stop(self) -> None:
        self.stack.stop()

    # --- HTTP
    def metadata_url(self, collection: str, role: str) -> str:
        return f"{self.stack.url}/v2/{collection}/_trust/tuf/{role}.json"

    # --- the CLI
    def cli(self, *args: str) -> float:
        return run([str(BIN / "tufnotary"), *args], self.env)

    def init(self, collection: str, bins: int | None = None) -> float:
        return self.cli("init", collection, *(["--bins", str(bins)] if bins else []))

    def stage(self, collection: str, paths: Sequence[str]) -> None:
        """Stage targets known by digest, in one write of the staging file (as `add --digest` does one by one)."""
        trust = TrustDir(self.trust_dir)
        staged = trust.read_staged(collection)
        for path in paths:
            staged.changes[path] = {"length": TARGET_LENGTH, "hashes": {"sha256": fake_digest(path)}}
        trust.write_staged(collection, staged)

    def add_one(self, collection: str, path: str) -> float:
        return self.cli("add", collection, path, "--digest", "sha256:" + fake_digest(path),
                        "--length", str(TARGET_LENGTH))

    def publish(self, collection: str) -> float:
        return self.cli("publish", collection)

    def database_bytes(self) -> int:
        return database_bytes(self.stack.server_db)


def new_workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))

"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl in a temp dir, loopback only.

initdb refuses to run as root, so as root the cluster runs as the `postgres` OS user.
When TUFNOTARY_TEST_DATABASE_URL is set, that server is used instead and only databases are
created in it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2


def _pg_bindir() -> str:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not dirs:
        raise RuntimeError("PostgreSQL server binaries not found: run `make test` (it installs them)")
    return dirs[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One PostgreSQL server; `new_database()` hands out a fresh empty database URL."""

    def __init__(self, admin_url: str, stop=None, restart=None) -> None:
        self.admin_url = admin_url
        self._stop = stop
        self._restart = restart

    @classmethod
    def start(cls, durable: bool = False) -> "PgCluster":
        """`durable=False` trades crash safety for speed (fsync and synchronous commit off): a crash
        then loses acknowledged commits, as PostgreSQL documents. Crash tests need `durable=True`."""
        env_url = os.environ.get("TUFNOTARY_TEST_DATABASE_URL")
        if env_url:
            return cls(env_url)
        bindir = _pg_bindir()
        base = tempfile.mkdtemp(prefix="tufnotary-pg-")
        data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
        os.makedirs(sock)
        as_root = os.geteuid() == 0
        prefix: list[str] = []
        if as_root:
            shutil.chown(base, "postgres")
            shutil.chown(sock, "postgres")
            prefix = ["runuser", "-u", "postgres", "--"]
        port = free_port()
        subprocess.run(prefix + [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True)
        durability = ("-c fsync=on -c synchronous_commit=on -c full_page_writes=on" if durable else
                      "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} "
                f"{durability} -c max_connections=200")
        subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l",
                                 os.path.join(base, "log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True)

        def stop() -> None:
            subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True)
            shutil.rmtree(base, ignore_errors=True)

        def restart(down_seconds: float) -> None:
            subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                           check=True, capture_output=True)
            time.sleep(down_seconds)
            subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l",
                                     os.path.join(base, "log"), "-w", "-t", "60", "start"],
                           check=True, capture_output=True)

        cluster = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", stop, restart)
        cluster._wait()
        return cluster

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(self.admin_url).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    @property
    def can_restart(self) -> bool:
        return self._restart is not None

    def restart(self, down_seconds: float = 0.0) -> None:
        """Crash the server (immediate shutdown: no checkpoint, sessions cut), stay down, start it again."""
        if self._restart is None:
            raise RuntimeError("an external PostgreSQL (TUFNOTARY_TEST_DATABASE_URL) cannot be restarted here")
        self._restart(down_seconds)
        self._wait()

    def stop(self) -> None:
        if self._stop:
            self._stop()

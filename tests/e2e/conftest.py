"""The real stack (signer process + gunicorn server) over SQLite and over PostgreSQL."""

from __future__ import annotations

import itertools

import pytest

from tests.stack import start_stack

_names = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
    if request.param == "sqlite":
        server_db, signer_db = f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        server_db, signer_db = cluster.new_database(), cluster.new_database()
    running = start_stack(workdir, server_db, signer_db)
    yield running
    running.stop()


@pytest.fixture
def collection() -> str:
    """A fresh collection name per test (the stack is shared by a module's tests)."""
    return f"wabbit-networks/net-monitor-{next(_names)}"

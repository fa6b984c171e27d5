"""The real stack (signer process + gunicorn server) over SQLite and over PostgreSQL."""

from __future__ import annotations

import itertools

import pytest

from tests.stack import start_stack

_names = itertools.count()


def _start(request, tmp_path_factory, backend: str):
    workdir = tmp_path_factory.mktemp(f"stack-{backend}")
    if backend == "sqlite":
        server_db, signer_db = f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        server_db, signer_db = cluster.new_database(), cluster.new_database()
    return start_stack(workdir, server_db, signer_db)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory):
    """The real stack, once per backend: behaviour every deployment must have."""
    running = _start(request, tmp_path_factory, request.param)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sqlite_stack(request, tmp_path_factory):
    """The real stack on the embedded default only, for heavy runs whose backend-specific part the
    `stack` tests already cover on both."""
    running = _start(request, tmp_path_factory, "sqlite")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pg_stack(request, tmp_path_factory):
    """The real stack on PostgreSQL only (production), for heavy runs."""
    running = _start(request, tmp_path_factory, "postgres")
    yield running
    running.stop()


@pytest.fixture
def collection() -> str:
    """A fresh collection name per test (the stack is shared by a module's tests)."""
    return f"wabbit-networks/net-monitor-{next(_names)}"

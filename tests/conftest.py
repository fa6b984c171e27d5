"""Shared fixtures: a throwaway PostgreSQL cluster, and per-test databases."""

from __future__ import annotations

import pytest

from tests.pgcluster import PgCluster


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(pg_cluster) -> str:
    """URL of a fresh, empty PostgreSQL database on the throwaway cluster."""
    return pg_cluster.new_database()

"""Fixtures for the signer tests: development certificates from our own generator, and a foreign CA."""

from __future__ import annotations

import pytest

from tufnotary.signer.certs import DevCertPaths, write_dev_certs


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertPaths:
    return write_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertPaths:
    """Certificates from another, unrelated CA."""
    return write_dev_certs(tmp_path_factory.mktemp("foreign-certs"))

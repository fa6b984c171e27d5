"""Fixtures for the operations tests: the server tests' app over a real SQLite store and a real mTLS signer."""

from tests.server.conftest import app, http, running_signer, server_certs, store  # noqa: F401

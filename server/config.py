"""The metadata server's configuration: a frozen dataclass, and its reading from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from tufnotary.server.validation import ValidationPolicy

ENV_PREFIX = "TUFNOTARY_SERVER_"


@dataclass(frozen=True)
class ServerConfig:
    database_url: str = "sqlite:///tufnotary-server.db"
    signer_address: str = "127.0.0.1:7899"
    signer_ca: str | None = None  # CA that signed the signer's certificate
    signer_client_cert: str | None = None  # this server's client certificate for mutual TLS
    signer_client_key: str | None = None
    signer_timeout: float = 5.0  # seconds, the deadline of every signer call
    timestamp_expiry: timedelta = timedelta(days=1)
    snapshot_expiry: timedelta = timedelta(days=7)
    max_upload_bytes: int = 16 * 1024 * 1024  # one whole publish request
    # Per file, python-tuf ngclient's default limits: a larger file would be refused by clients.
    max_root_bytes: int = 512_000
    max_targets_bytes: int = 5_000_000  # targets and each delegated role
    max_snapshot_bytes: int = 2_000_000
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    renew_interval: float = 60.0  # seconds between checks for timestamps due for renewal; 0 disables


def _days(value: str) -> timedelta:
    return timedelta(days=float(value))


_FIELDS = {
    "DATABASE_URL": ("database_url", str),
    "SIGNER_ADDRESS": ("signer_address", str),
    "SIGNER_CA": ("signer_ca", str),
    "SIGNER_CLIENT_CERT": ("signer_client_cert", str),
    "SIGNER_CLIENT_KEY": ("signer_client_key", str),
    "SIGNER_TIMEOUT": ("signer_timeout", float),
    "TIMESTAMP_EXPIRY_DAYS": ("timestamp_expiry", _days),
    "SNAPSHOT_EXPIRY_DAYS": ("snapshot_expiry", _days),
    "MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "RENEW_INTERVAL": ("renew_interval", float),
    "MAX_ROOT_BYTES": ("max_root_bytes", int),
    "MAX_TARGETS_BYTES": ("max_targets_bytes", int),
    "MAX_SNAPSHOT_BYTES": ("max_snapshot_bytes", int),
}
_MAX_EXPIRY_ROLES = ("root", "targets", "snapshot")


def config_from_env(environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Build a ServerConfig from TUFNOTARY_SERVER_* variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    values = {}
    for suffix, (name, parse) in _FIELDS.items():
        raw = environ.get(ENV_PREFIX + suffix)
        if raw:
            try:
                values[name] = parse(raw)
            except ValueError as e:
                raise ValueError(f"{ENV_PREFIX + suffix}: cannot read {raw!r}: {e}") from e
    max_expiry = ValidationPolicy().max_expiry
    for role in _MAX_EXPIRY_ROLES:
        name = f"{ENV_PREFIX}MAX_{role.upper()}_EXPIRY_DAYS"
        if environ.get(name):
            try:
                max_expiry = {**max_expiry, role: _days(environ[name])}
            except ValueError as e:
                raise ValueError(f"{name}: cannot read {environ[name]!r}: {e}") from e
    return ServerConfig(**values, validation=ValidationPolicy(max_expiry=max_expiry))


def max_file_bytes(config: ServerConfig, role: str) -> int:
    """The size limit of one uploaded file of `role`."""
    return {"root": config.max_root_bytes, "snapshot": config.max_snapshot_bytes}.get(
        role, config.max_targets_bytes
    )

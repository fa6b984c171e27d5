"""The metadata server's configuration: a frozen dataclass, and its reading from a TOML file and the
environment (the environment wins). Every setting is documented once, in docs/configuration.md."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from tufnotary.server.auth_config import _FIELDS as _AUTH_FIELDS
from tufnotary.server.auth_config import AuthConfig, auth_config_from_env
from tufnotary.server.env import ENV_PREFIX, read_fields
from tufnotary.server.storage.base import DEFAULT_POOL_SIZE
from tufnotary.server.validation import ValidationPolicy

ENV_CONFIG_FILE = ENV_PREFIX + "CONFIG"  # a TOML file; `tufnotary-server --config FILE` sets it


@dataclass(frozen=True)
class ServerConfig:
    database_url: str = "sqlite:///tufnotary-server.db"
    database_pool_size: int = DEFAULT_POOL_SIZE  # PostgreSQL connections kept open per process
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
    renew_batch: int = 200  # collections claimed, signed (one SignBatch per role) and committed at once
    # Authentication, authorisation and rate limits (docs/auth.md). The default is auth on with
    # nothing trusted, which `create_app` refuses: configure an issuer, or say mode="none".
    auth: AuthConfig = field(default_factory=AuthConfig)
    log_format: str = "json"  # "json" (one object per line) or "text"
    log_level: str = "info"
    # Reads (docs/performance.md): memory per worker for current metadata (PostgreSQL only; 0: off),
    # and how long shared caches (a CDN) may serve current files such as timestamp.json (0: revalidate).
    read_cache_bytes: int = 64 * 1024 * 1024
    shared_max_age: int = 0


def _days(value: str) -> timedelta:
    return timedelta(days=float(value))


def _positive_int(value: str, most: int | None = None) -> int:
    number = int(value)
    if number < 1 or (most is not None and number > most):
        raise ValueError("must be at least 1" + (f" and at most {most}" if most else ""))
    return number


_FIELDS = {
    "DATABASE_URL": ("database_url", str),
    "DATABASE_POOL_SIZE": ("database_pool_size", _positive_int),
    "SIGNER_ADDRESS": ("signer_address", str),
    "SIGNER_CA": ("signer_ca", str),
    "SIGNER_CLIENT_CERT": ("signer_client_cert", str),
    "SIGNER_CLIENT_KEY": ("signer_client_key", str),
    "SIGNER_TIMEOUT": ("signer_timeout", float),
    "TIMESTAMP_EXPIRY_DAYS": ("timestamp_expiry", _days),
    "SNAPSHOT_EXPIRY_DAYS": ("snapshot_expiry", _days),
    "MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "RENEW_INTERVAL": ("renew_interval", float),
    "RENEW_BATCH": ("renew_batch", lambda v: _positive_int(v, most=5000)),
    "MAX_ROOT_BYTES": ("max_root_bytes", int),
    "MAX_TARGETS_BYTES": ("max_targets_bytes", int),
    "MAX_SNAPSHOT_BYTES": ("max_snapshot_bytes", int),
    "LOG_FORMAT": ("log_format", str),
    "LOG_LEVEL": ("log_level", str),
    "READ_CACHE_BYTES": ("read_cache_bytes", int),
    "SHARED_MAX_AGE": ("shared_max_age", int),
}
_MAX_EXPIRY_ROLES = ("root", "targets", "snapshot")


def config_from_env(environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Build a ServerConfig from TUFNOTARY_SERVER_* variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    values = read_fields(environ, _FIELDS)
    max_expiry = ValidationPolicy().max_expiry
    for role in _MAX_EXPIRY_ROLES:
        name = f"{ENV_PREFIX}MAX_{role.upper()}_EXPIRY_DAYS"
        if environ.get(name):
            try:
                max_expiry = {**max_expiry, role: _days(environ[name])}
            except ValueError as e:
                raise ValueError(f"{name}: cannot read {environ[name]!r}: {e}") from e
    return ServerConfig(**values, validation=ValidationPolicy(max_expiry=max_expiry),
                        auth=auth_config_from_env(environ))


def _file_settings(path: str) -> dict[str, str]:
    """A TOML file's settings as the TUFNOTARY_SERVER_* variables they stand for (key = suffix, lower case)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read the configuration file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"the configuration file {path} is not valid TOML: {e}") from None
    table = table.get("server", table)  # a file may hold a [server] table or bare keys
    known = ({suffix.lower() for suffix in (*_FIELDS, *_AUTH_FIELDS)}
             | {f"max_{r}_expiry_days" for r in _MAX_EXPIRY_ROLES})
    values: dict[str, str] = {}
    for key, value in table.items():
        if key not in known:
            raise ValueError(f"{path}: unknown setting {key!r} (see docs/configuration.md)")
        if isinstance(value, (dict, list)):
            raise ValueError(f"{path}: {key} must be a string or a number")
        values[ENV_PREFIX + key.upper()] = str(value)
    return values


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """The configuration from the TOML file `path` (or $TUFNOTARY_SERVER_CONFIG), overridden by the
    TUFNOTARY_SERVER_* variables of `environ`."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_CONFIG_FILE) or None
    merged = {**(_file_settings(path) if path else {}), **{k: v for k, v in environ.items() if v}}
    config = config_from_env(merged)
    if config.log_format not in ("json", "text"):
        raise ValueError(f"{ENV_PREFIX}LOG_FORMAT: choose json or text, not {config.log_format!r}")
    for name, value in (("READ_CACHE_BYTES", config.read_cache_bytes), ("SHARED_MAX_AGE", config.shared_max_age)):
        if value < 0:
            raise ValueError(f"{ENV_PREFIX}{name} must be 0 (off) or more, not {value}")
    return config


def check_safe(config: ServerConfig) -> None:
    """Refuse, saying what to fix, a configuration that must not serve: the signer reached without
    mutual TLS, or this server's TLS key for it readable by every user of the host."""
    problems: list[str] = []
    missing = [ENV_PREFIX + name for name, value in (
        ("SIGNER_CA", config.signer_ca), ("SIGNER_CLIENT_CERT", config.signer_client_cert),
        ("SIGNER_CLIENT_KEY", config.signer_client_key)) if not value]
    if missing:
        problems.append("the server reaches the signer only over mutual TLS: set " + ", ".join(missing))
    if config.signer_client_key:
        try:
            mode = os.stat(config.signer_client_key).st_mode
        except OSError as e:
            problems.append(f"cannot read {ENV_PREFIX}SIGNER_CLIENT_KEY={config.signer_client_key}: {e.strerror}")
        else:
            if mode & stat.S_IROTH:
                problems.append(f"{config.signer_client_key} ({ENV_PREFIX}SIGNER_CLIENT_KEY) is world-readable: "
                                f"chmod 600 it (or 640 with a group only the server runs as)")
    if problems:
        raise ValueError("unsafe configuration: " + "; ".join(problems))


def max_file_bytes(config: ServerConfig, role: str) -> int:
    """The size limit of one uploaded file of `role`."""
    return {"root": config.max_root_bytes, "snapshot": config.max_snapshot_bytes}.get(
        role, config.max_targets_bytes
    )

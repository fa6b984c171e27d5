"""Signer configuration: a frozen dataclass with safe defaults, and the one function that reads it from
the environment. Nothing else in the signer reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tufnotary.signer.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:7899"
DEFAULT_DATABASE_URL = "sqlite:///tufnotary-signer.db"
DEFAULT_PASSPHRASE_ALIAS = "default"

ENV_LISTEN = "TUFNOTARY_SIGNER_LISTEN"
ENV_DATABASE_URL = "TUFNOTARY_SIGNER_DATABASE_URL"
ENV_TLS_CERT = "TUFNOTARY_SIGNER_TLS_CERT"
ENV_TLS_KEY = "TUFNOTARY_SIGNER_TLS_KEY"
ENV_TLS_CLIENT_CA = "TUFNOTARY_SIGNER_TLS_CLIENT_CA"
ENV_PASSPHRASE = "TUFNOTARY_SIGNER_PASSPHRASE"
ENV_PASSPHRASE_FILE = "TUFNOTARY_SIGNER_PASSPHRASE_FILE"
ENV_PASSPHRASE_ALIAS = "TUFNOTARY_SIGNER_PASSPHRASE_ALIAS"


@dataclass(frozen=True)
class SignerConfig:
    """Everything the signer needs to run.

    `passphrases` maps an alias to the passphrase that wraps keys stored under that alias; new keys
    are wrapped under `default_alias`. It is kept out of `repr()` so that logging a config is safe.
    """

    tls_cert_file: str
    tls_key_file: str
    tls_client_ca_file: str
    passphrases: Mapping[str, str] = field(repr=False)
    default_alias: str = DEFAULT_PASSPHRASE_ALIAS
    listen: str = DEFAULT_LISTEN
    database_url: str = DEFAULT_DATABASE_URL
    max_workers: int = 16

    def __post_init__(self) -> None:
        if not self.passphrases or not all(self.passphrases.values()):
            raise ConfigError("the signer needs a non-empty key-wrapping passphrase")
        if self.default_alias not in self.passphrases:
            raise ConfigError(f"no passphrase is configured for the default alias {self.default_alias!r}")
        if not (self.tls_cert_file and self.tls_key_file and self.tls_client_ca_file):
            raise ConfigError("the signer needs a TLS certificate, its key and a client CA")


def config_from_env(environ: Mapping[str, str]) -> SignerConfig:
    """Build a `SignerConfig` from `TUFNOTARY_SIGNER_*` variables; raise `ConfigError` saying what to set."""
    tls = {name: environ.get(name, "") for name in (ENV_TLS_CERT, ENV_TLS_KEY, ENV_TLS_CLIENT_CA)}
    missing = [name for name, value in tls.items() if not value]
    if missing:
        raise ConfigError(
            "the signer only serves mutual TLS: set "
            + ", ".join(missing)
            + " (development certificates: `tufnotary-signer gen-certs --out DIR`)"
        )
    alias = environ.get(ENV_PASSPHRASE_ALIAS) or DEFAULT_PASSPHRASE_ALIAS
    return SignerConfig(
        tls_cert_file=tls[ENV_TLS_CERT],
        tls_key_file=tls[ENV_TLS_KEY],
        tls_client_ca_file=tls[ENV_TLS_CLIENT_CA],
        passphrases={alias: _passphrase_from_env(environ)},
        default_alias=alias,
        listen=environ.get(ENV_LISTEN) or DEFAULT_LISTEN,
        database_url=environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL,
    )


def _passphrase_from_env(environ: Mapping[str, str]) -> str:
    direct, path = environ.get(ENV_PASSPHRASE, ""), environ.get(ENV_PASSPHRASE_FILE, "")
    if direct and path:
        raise ConfigError(f"set only one of {ENV_PASSPHRASE} and {ENV_PASSPHRASE_FILE}")
    if path:
        try:
            passphrase = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read {ENV_PASSPHRASE_FILE}={path}: {e.strerror}") from None
        if not passphrase:
            raise ConfigError(f"the passphrase file {path} ({ENV_PASSPHRASE_FILE}) is empty")
        return passphrase
    if direct:
        return direct
    raise ConfigError(
        f"the signer needs a key-wrapping passphrase: set {ENV_PASSPHRASE_FILE} to a file holding it "
        f"(or {ENV_PASSPHRASE})"
    )

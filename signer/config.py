"""Signer configuration: a frozen dataclass with safe defaults, and the one function that reads it from
the environment. Nothing else in the signer reads the environment. Every variable is listed in
docs/signer.md."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tufnotary.signer.errors import ConfigError
from tufnotary.signer.policy import DEFAULT_EXPIRY_LEEWAY, DEFAULT_MAX_EXPIRY, SigningPolicy

DEFAULT_LISTEN = "127.0.0.1:7899"
DEFAULT_DATABASE_URL = "sqlite:///tufnotary-signer.db"
DEFAULT_PASSPHRASE_ALIAS = "default"
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
KEYSTORES = ("sql", "pkcs11")

ENV_LISTEN = "TUFNOTARY_SIGNER_LISTEN"
ENV_DATABASE_URL = "TUFNOTARY_SIGNER_DATABASE_URL"
ENV_TLS_CERT = "TUFNOTARY_SIGNER_TLS_CERT"
ENV_TLS_KEY = "TUFNOTARY_SIGNER_TLS_KEY"
ENV_TLS_CLIENT_CA = "TUFNOTARY_SIGNER_TLS_CLIENT_CA"
ENV_ALLOWED_CLIENTS = "TUFNOTARY_SIGNER_ALLOWED_CLIENT_SUBJECTS"
ENV_PASSPHRASE = "TUFNOTARY_SIGNER_PASSPHRASE"
ENV_PASSPHRASE_FILE = "TUFNOTARY_SIGNER_PASSPHRASE_FILE"
ENV_PASSPHRASES_FILE = "TUFNOTARY_SIGNER_PASSPHRASES_FILE"
ENV_PASSPHRASE_ALIAS = "TUFNOTARY_SIGNER_PASSPHRASE_ALIAS"
ENV_KEYSTORE = "TUFNOTARY_SIGNER_KEYSTORE"
ENV_PKCS11_MODULE = "TUFNOTARY_SIGNER_PKCS11_MODULE"
ENV_PKCS11_TOKEN_LABEL = "TUFNOTARY_SIGNER_PKCS11_TOKEN_LABEL"
ENV_PKCS11_PIN = "TUFNOTARY_SIGNER_PKCS11_PIN"
ENV_PKCS11_PIN_FILE = "TUFNOTARY_SIGNER_PKCS11_PIN_FILE"
ENV_MAX_TIMESTAMP_DAYS = "TUFNOTARY_SIGNER_MAX_TIMESTAMP_EXPIRY_DAYS"
ENV_MAX_SNAPSHOT_DAYS = "TUFNOTARY_SIGNER_MAX_SNAPSHOT_EXPIRY_DAYS"
ENV_EXPIRY_LEEWAY = "TUFNOTARY_SIGNER_EXPIRY_LEEWAY_SECONDS"
ENV_HEALTH_INTERVAL = "TUFNOTARY_SIGNER_HEALTH_INTERVAL_SECONDS"
ENV_STOP_GRACE = "TUFNOTARY_SIGNER_STOP_GRACE_SECONDS"
ENV_METRICS_LISTEN = "TUFNOTARY_SIGNER_METRICS_LISTEN"
ENV_LOG_FORMAT = "TUFNOTARY_SIGNER_LOG_FORMAT"
ENV_DEV_MODE = "TUFNOTARY_SIGNER_DEV_MODE"
ENV_CONFIG_FILE = "TUFNOTARY_SIGNER_CONFIG"
ENV_PREFIX = "TUFNOTARY_SIGNER_"
# Secrets never sit in the configuration file: it names the files that hold them.
_SECRET_SETTINGS = (ENV_PASSPHRASE, ENV_PKCS11_PIN)
_SECRET_FILE_SETTINGS = (ENV_TLS_KEY, ENV_PASSPHRASE_FILE, ENV_PASSPHRASES_FILE, ENV_PKCS11_PIN_FILE)
# Passphrases from examples and habits: refused outside dev mode, like anything shorter than 12 characters.
KNOWN_DEFAULT_PASSPHRASES = frozenset({
    "changeme", "change-me", "change me", "password", "passphrase", "secret", "default", "tufnotary",
    "notary", "signer", "replace-me", "replace with a long random passphrase",
})
MIN_PASSPHRASE_LENGTH = 12


@dataclass(frozen=True)
class Pkcs11Config:
    """Which PKCS#11 token holds the keys. The PIN is kept out of `repr()`."""

    token_label: str
    pin: str = field(repr=False)
    module: str = DEFAULT_PKCS11_MODULE

    def __post_init__(self) -> None:
        if not self.token_label or not self.pin:
            raise ConfigError("the PKCS#11 key store needs a token label and a user PIN")


@dataclass(frozen=True)
class SignerConfig:
    """Everything the signer needs to run.

    `passphrases` maps an alias to the passphrase that wraps keys stored under that alias (SQL key
    store); new keys are wrapped under `default_alias`. Secrets are kept out of `repr()`.
    `allowed_client_subjects` empty means: any client certificate issued by the client CA.
    """

    tls_cert_file: str
    tls_key_file: str
    tls_client_ca_file: str
    passphrases: Mapping[str, str] = field(default_factory=dict, repr=False)
    default_alias: str = DEFAULT_PASSPHRASE_ALIAS
    listen: str = DEFAULT_LISTEN
    database_url: str = DEFAULT_DATABASE_URL
    max_workers: int = 16
    keystore: str = "sql"
    pkcs11: Pkcs11Config | None = None
    allowed_client_subjects: tuple[str, ...] = ()
    policy: SigningPolicy = field(default_factory=SigningPolicy)
    health_interval: float = 2.0
    stop_grace: float = 10.0
    metrics_listen: str = ""  # "host:port" of the plain-HTTP Prometheus endpoint; "" serves none
    log_format: str = "json"  # "json" or "text"
    dev_mode: bool = False  # embedded development only: allows short or example passphrases

    def __post_init__(self) -> None:
        if self.keystore not in KEYSTORES:
            raise ConfigError(f"unknown key store {self.keystore!r}: choose one of {', '.join(KEYSTORES)}")
        if self.keystore == "sql":
            if not self.passphrases or not all(self.passphrases.values()):
                raise ConfigError("the signer needs a non-empty key-wrapping passphrase")
            if self.default_alias not in self.passphrases:
                raise ConfigError(f"no passphrase is configured for the default alias {self.default_alias!r}")
        if self.keystore == "pkcs11" and self.pkcs11 is None:
            raise ConfigError("the PKCS#11 key store needs its token configuration")
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
    keystore = environ.get(ENV_KEYSTORE) or "sql"
    alias = environ.get(ENV_PASSPHRASE_ALIAS) or DEFAULT_PASSPHRASE_ALIAS
    passphrases = _passphrases_from_env(environ, alias) if keystore == "sql" else {}
    return SignerConfig(
        tls_cert_file=tls[ENV_TLS_CERT],
        tls_key_file=tls[ENV_TLS_KEY],
        tls_client_ca_file=tls[ENV_TLS_CLIENT_CA],
        passphrases=passphrases,
        default_alias=alias,
        listen=environ.get(ENV_LISTEN) or DEFAULT_LISTEN,
        database_url=environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL,
        keystore=keystore,
        pkcs11=_pkcs11_from_env(environ) if keystore == "pkcs11" else None,
        allowed_client_subjects=_subjects(environ.get(ENV_ALLOWED_CLIENTS, "")),
        policy=_policy_from_env(environ),
        health_interval=_number(environ, ENV_HEALTH_INTERVAL, 2.0),
        stop_grace=_number(environ, ENV_STOP_GRACE, 10.0),
        metrics_listen=environ.get(ENV_METRICS_LISTEN, ""),
        log_format=_choice(environ, ENV_LOG_FORMAT, ("json", "text")),
        dev_mode=_choice(environ, ENV_DEV_MODE, ("false", "true", "0", "1")) in ("true", "1"),
    )


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (environ.get(name) or choices[0]).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value


def file_settings(path: str) -> dict[str, str]:
    """A TOML file's settings as the TUFNOTARY_SIGNER_* variables they stand for (key = the variable's
    suffix in lower case, e.g. `database_url`), from bare keys or a `[signer]` table."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read the configuration file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the configuration file {path} is not valid TOML: {e}") from None
    table = table.get("signer", table)
    known = {name for name in globals().values() if isinstance(name, str) and name.startswith(ENV_PREFIX)}
    known -= {ENV_CONFIG_FILE, ENV_PREFIX}
    values: dict[str, str] = {}
    for key, value in table.items():
        name = ENV_PREFIX + key.upper()
        if name in _SECRET_SETTINGS:
            raise ConfigError(f"{path}: {key} is a secret; put it in a file and set {key}_file instead")
        if name not in known:
            raise ConfigError(f"{path}: unknown setting {key!r} (see docs/configuration.md)")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: {key} must be a string or a number")
        values[name] = str(value)
    return values


def merged_settings(path: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The file's settings (`path`, else $TUFNOTARY_SIGNER_CONFIG) overridden by the environment's."""
    path = path or environ.get(ENV_CONFIG_FILE) or None
    return {**(file_settings(path) if path else {}), **{k: v for k, v in environ.items() if v}}


def load_config(path: str | None, environ: Mapping[str, str]) -> SignerConfig:
    return config_from_env(merged_settings(path, environ))


def check_safe(config: SignerConfig, settings: Mapping[str, str]) -> None:
    """Refuse, saying what to fix, what must not serve: key or secret files readable by every user of
    the host, and example or short passphrases outside dev mode. (Serving without mutual TLS is
    impossible: `SignerConfig` requires the certificate, key and client CA.)"""
    problems: list[str] = []
    for name in _SECRET_FILE_SETTINGS:
        path = settings.get(name)
        if not path:
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            problems.append(f"cannot read {name}={path}: {e.strerror}")
            continue
        if mode & stat.S_IROTH:
            problems.append(f"{path} ({name}) is world-readable: chmod 600 it (or 640 with the signer's group)")
    if not config.dev_mode:
        for alias, passphrase in config.passphrases.items():
            if passphrase.strip().lower() in KNOWN_DEFAULT_PASSPHRASES:
                problems.append(f"the passphrase of alias {alias!r} is an example or default one: generate a "
                                "long random one (e.g. `openssl rand -base64 32`)")
            elif len(passphrase) < MIN_PASSPHRASE_LENGTH:
                problems.append(f"the passphrase of alias {alias!r} is shorter than {MIN_PASSPHRASE_LENGTH} "
                                "characters: generate a long random one")
    if problems:
        raise ConfigError("unsafe configuration: " + "; ".join(problems)
                          + (f" ({ENV_DEV_MODE}=true relaxes the passphrase rules for local development only)"
                             if not config.dev_mode and any("passphrase" in p for p in problems) else ""))


def parse_passphrases(text: str, source: str) -> dict[str, str]:
    """`alias=passphrase` lines (blank lines and `#` comments ignored) into a mapping."""
    passphrases: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        alias, sep, passphrase = line.partition("=")
        alias = alias.strip()
        if not sep or not alias or not passphrase:
            raise ConfigError(f"{source} line {number}: expected alias=passphrase")
        if alias in passphrases:
            raise ConfigError(f"{source} line {number}: alias {alias!r} is listed twice")
        passphrases[alias] = passphrase
    if not passphrases:
        raise ConfigError(f"{source} lists no passphrase")
    return passphrases


def _passphrases_from_env(environ: Mapping[str, str], alias: str) -> dict[str, str]:
    many = environ.get(ENV_PASSPHRASES_FILE, "")
    single = [name for name in (ENV_PASSPHRASE, ENV_PASSPHRASE_FILE) if environ.get(name)]
    if many and single:
        raise ConfigError(f"set either {ENV_PASSPHRASES_FILE} or {' / '.join(single)}, not both")
    if many:
        passphrases = parse_passphrases(_read_secret(many, ENV_PASSPHRASES_FILE), f"{ENV_PASSPHRASES_FILE}={many}")
        if alias not in passphrases:
            raise ConfigError(
                f"{ENV_PASSPHRASES_FILE}={many} has no passphrase for the default alias {alias!r} "
                f"(set {ENV_PASSPHRASE_ALIAS} to one of its aliases)"
            )
        return passphrases
    return {alias: _one_secret(environ, ENV_PASSPHRASE, ENV_PASSPHRASE_FILE, "a key-wrapping passphrase")}


def _pkcs11_from_env(environ: Mapping[str, str]) -> Pkcs11Config:
    label = environ.get(ENV_PKCS11_TOKEN_LABEL, "")
    if not label:
        raise ConfigError(f"the PKCS#11 key store needs {ENV_PKCS11_TOKEN_LABEL}")
    pin = _one_secret(environ, ENV_PKCS11_PIN, ENV_PKCS11_PIN_FILE, "the token's user PIN")
    return Pkcs11Config(token_label=label, pin=pin, module=environ.get(ENV_PKCS11_MODULE) or DEFAULT_PKCS11_MODULE)


def _one_secret(environ: Mapping[str, str], direct_name: str, file_name: str, what: str) -> str:
    direct, path = environ.get(direct_name, ""), environ.get(file_name, "")
    if direct and path:
        raise ConfigError(f"set only one of {direct_name} and {file_name}")
    if path:
        return _read_secret(path, file_name)
    if direct:
        return direct
    raise ConfigError(f"the signer needs {what}: set {file_name} to a file holding it (or {direct_name})")


def _read_secret(path: str, variable: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"cannot read {variable}={path}: {e.strerror}") from None
    if not value:
        raise ConfigError(f"the file {path} ({variable}) is empty")
    return value


def _subjects(value: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(";") if s.strip())


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name} cannot be negative")
    return value


def _policy_from_env(environ: Mapping[str, str]) -> SigningPolicy:
    max_expiry = {
        "timestamp": timedelta(days=_number(environ, ENV_MAX_TIMESTAMP_DAYS, DEFAULT_MAX_EXPIRY["timestamp"].days)),
        "snapshot": timedelta(days=_number(environ, ENV_MAX_SNAPSHOT_DAYS, DEFAULT_MAX_EXPIRY["snapshot"].days)),
    }
    leeway = timedelta(seconds=_number(environ, ENV_EXPIRY_LEEWAY, DEFAULT_EXPIRY_LEEWAY.total_seconds()))
    try:
        return SigningPolicy(max_expiry=max_expiry, leeway=leeway)
    except ValueError as e:
        raise ConfigError(str(e)) from None

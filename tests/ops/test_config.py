"""Configuration by TOML file and environment (the environment wins), and refusing unsafe configurations
with a message saying what to fix, in the functions and through the real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tufnotary.server.config import check_safe as server_check_safe
from tufnotary.server.config import load_config as server_load_config
from tufnotary.signer.certs import write_dev_certs
from tufnotary.signer.config import check_safe as signer_check_safe
from tufnotary.signer.config import load_config as signer_load_config
from tufnotary.signer.config import merged_settings
from tufnotary.signer.errors import ConfigError

BIN = Path(sys.executable).parent
LONG_PASSPHRASE = "a long enough random passphrase"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return write_dev_certs(tmp_path_factory.mktemp("certs"))


def test_server_file_then_environment(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text('[server]\ndatabase_url = "sqlite:////srv/a.db"\nsigner_timeout = 2.5\n'
                    'max_root_expiry_days = 100\nlog_format = "text"\n')
    config = server_load_config(str(path), {})
    assert (config.database_url, config.signer_timeout, config.log_format) == ("sqlite:////srv/a.db", 2.5, "text")
    assert config.validation.max_expiry["root"].days == 100
    overridden = server_load_config(None, {"TUFNOTARY_SERVER_CONFIG": str(path),
                                           "TUFNOTARY_SERVER_SIGNER_TIMEOUT": "9"})
    assert (overridden.database_url, overridden.signer_timeout) == ("sqlite:////srv/a.db", 9.0)


@pytest.mark.parametrize("text, message", [
    ("databse_url = 'x'\n", "unknown setting 'databse_url'"),
    ("signer_timeout = 'soon'\n", "TUFNOTARY_SERVER_SIGNER_TIMEOUT"),
    ("log_format = 'xml'\n", "choose json or text"),
    ("read_cache_bytes = -1\n", "READ_CACHE_BYTES must be 0"),
    ("shared_max_age = -5\n", "SHARED_MAX_AGE must be 0"),
    ("= broken", "not valid TOML"),
])
def test_server_file_errors_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        server_load_config(str(path), {})


def test_server_refuses_a_signer_without_mutual_tls_or_a_world_readable_key(certs):
    with pytest.raises(ValueError, match="only over mutual TLS: set TUFNOTARY_SERVER_SIGNER_CA"):
        server_check_safe(server_load_config(None, {}))
    env = {"TUFNOTARY_SERVER_SIGNER_CA": str(certs.ca_cert), "TUFNOTARY_SERVER_SIGNER_CLIENT_CERT":
           str(certs.client_cert), "TUFNOTARY_SERVER_SIGNER_CLIENT_KEY": str(certs.client_key)}
    server_check_safe(server_load_config(None, env))
    certs.client_key.chmod(0o644)
    try:
        with pytest.raises(ValueError, match="world-readable: chmod 600"):
            server_check_safe(server_load_config(None, env))
    finally:
        certs.client_key.chmod(0o600)


def _signer_env(certs, passphrase_file: Path) -> dict[str, str]:
    return {"TUFNOTARY_SIGNER_TLS_CERT": str(certs.signer_cert), "TUFNOTARY_SIGNER_TLS_KEY": str(certs.signer_key),
            "TUFNOTARY_SIGNER_TLS_CLIENT_CA": str(certs.ca_cert),
            "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(passphrase_file)}


def _secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_signer_file_then_environment(tmp_path, certs):
    secret = _secret(tmp_path / "passphrase", LONG_PASSPHRASE)
    path = tmp_path / "signer.toml"
    path.write_text(f'[signer]\nlisten = "0.0.0.0:7899"\nmetrics_listen = "0.0.0.0:9100"\n'
                    f'tls_cert = "{certs.signer_cert}"\ntls_key = "{certs.signer_key}"\n'
                    f'tls_client_ca = "{certs.ca_cert}"\npassphrase_file = "{secret}"\n'
                    'max_timestamp_expiry_days = 3\ndev_mode = false\n')
    config = signer_load_config(str(path), {"TUFNOTARY_SIGNER_LISTEN": "127.0.0.1:1"})
    assert (config.listen, config.metrics_listen, config.dev_mode) == ("127.0.0.1:1", "0.0.0.0:9100", False)
    assert config.passphrases == {"default": LONG_PASSPHRASE}
    assert config.policy.max_expiry["timestamp"].days == 3


@pytest.mark.parametrize("line, message", [
    ("passphrase = 'in the file'", "is a secret; put it in a file"),
    ("pkcs11_pin = '1234'", "is a secret"),
    ("lissen = ':1'", "unknown setting 'lissen'"),
])
def test_signer_file_refuses_secrets_and_typos(tmp_path, line, message):
    path = tmp_path / "signer.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        signer_load_config(str(path), {})


@pytest.mark.parametrize("passphrase, mode, message", [
    (LONG_PASSPHRASE, 0o644, "world-readable: chmod 600"),
    ("changeme", 0o600, "example or default one"),
    ("short", 0o600, "shorter than 12 characters"),
])
def test_signer_refuses_unsafe_secrets(tmp_path, certs, passphrase, mode, message):
    env = _signer_env(certs, _secret(tmp_path / "passphrase", passphrase, mode))
    with pytest.raises(ConfigError, match=message):
        signer_check_safe(signer_load_config(None, env), merged_settings(None, env))


def test_signer_dev_mode_allows_a_short_passphrase_but_never_a_world_readable_file(tmp_path, certs):
    env = {**_signer_env(certs, _secret(tmp_path / "passphrase", "short")), "TUFNOTARY_SIGNER_DEV_MODE": "true"}
    signer_check_safe(signer_load_config(None, env), merged_settings(None, env))
    (tmp_path / "passphrase").chmod(0o644)
    with pytest.raises(ConfigError, match="world-readable"):
        signer_check_safe(signer_load_config(None, env), merged_settings(None, env))


def test_the_commands_refuse_to_start_and_say_what_to_fix(tmp_path, certs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
    signer = subprocess.run(
        [str(BIN / "tufnotary-signer"), "serve"], capture_output=True, text=True, timeout=60,
        env={**env, **_signer_env(certs, _secret(tmp_path / "p", LONG_PASSPHRASE, 0o644)),
             "TUFNOTARY_SIGNER_LISTEN": "127.0.0.1:0"})
    assert signer.returncode == 2 and "world-readable: chmod 600" in signer.stderr
    assert LONG_PASSPHRASE not in signer.stderr + signer.stdout
    server = subprocess.run([str(BIN / "tufnotary-server"), "serve", "--bind", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60, env={**env, "TUFNOTARY_SERVER_AUTH": "none"})
    assert server.returncode == 2 and "only over mutual TLS" in server.stderr


def test_server_database_pool_size_from_file_and_environment(tmp_path):
    assert server_load_config(environ={}).database_pool_size == 8
    path = tmp_path / "server.toml"
    path.write_text("database_pool_size = 5\n")
    assert server_load_config(str(path), environ={}).database_pool_size == 5
    assert server_load_config(str(path), environ={"TUFNOTARY_SERVER_DATABASE_POOL_SIZE": "12"}).database_pool_size == 12
    for bad in ("0", "-2", "four"):
        with pytest.raises(ValueError, match="TUFNOTARY_SERVER_DATABASE_POOL_SIZE"):
            server_load_config(environ={"TUFNOTARY_SERVER_DATABASE_POOL_SIZE": bad})


def test_server_renew_batch_must_be_positive():
    assert server_load_config(environ={}).renew_batch == 200
    assert server_load_config(environ={"TUFNOTARY_SERVER_RENEW_BATCH": "50"}).renew_batch == 50
    for bad in ("0", "5001"):  # a chunk's SignBatch must stay within the signer's limit
        with pytest.raises(ValueError, match="TUFNOTARY_SERVER_RENEW_BATCH"):
            server_load_config(environ={"TUFNOTARY_SERVER_RENEW_BATCH": bad})

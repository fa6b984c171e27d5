"""`config_from_env`: TLS and a passphrase are required, from the environment or a file, never argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from tufnotary.signer.config import DEFAULT_DATABASE_URL, DEFAULT_LISTEN, SignerConfig, config_from_env
from tufnotary.signer.errors import ConfigError

TLS = {
    "TUFNOTARY_SIGNER_TLS_CERT": "/etc/signer.crt",
    "TUFNOTARY_SIGNER_TLS_KEY": "/etc/signer.key",
    "TUFNOTARY_SIGNER_TLS_CLIENT_CA": "/etc/ca.crt",
}


def test_defaults_are_loopback_and_sqlite() -> None:
    config = config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE": "pw"})
    assert config.listen == DEFAULT_LISTEN == "127.0.0.1:7899"
    assert config.database_url == DEFAULT_DATABASE_URL
    assert config.database_url.startswith("sqlite:///")
    assert config.passphrases == {"default": "pw"}
    assert config.tls_client_ca_file == "/etc/ca.crt"


def test_all_variables_are_read() -> None:
    config = config_from_env(
        {
            **TLS,
            "TUFNOTARY_SIGNER_LISTEN": "0.0.0.0:9000",
            "TUFNOTARY_SIGNER_DATABASE_URL": "postgresql://signer@db/signer",
            "TUFNOTARY_SIGNER_PASSPHRASE": "pw",
            "TUFNOTARY_SIGNER_PASSPHRASE_ALIAS": "2025-q1",
        }
    )
    assert config.listen == "0.0.0.0:9000"
    assert config.database_url == "postgresql://signer@db/signer"
    assert config.default_alias == "2025-q1"
    assert config.passphrases == {"2025-q1": "pw"}


@pytest.mark.parametrize("missing", sorted(TLS))
def test_refuses_to_start_without_tls(missing: str) -> None:
    env = {k: v for k, v in TLS.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        config_from_env({**env, "TUFNOTARY_SIGNER_PASSPHRASE": "pw"})


def test_refuses_to_start_without_passphrase() -> None:
    with pytest.raises(ConfigError, match="TUFNOTARY_SIGNER_PASSPHRASE_FILE"):
        config_from_env(TLS)


def test_passphrase_from_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_text("from a file\n")
    config = config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(path)})
    assert config.passphrases == {"default": "from a file"}


def test_unreadable_or_empty_passphrase_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(tmp_path / "absent")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(tmp_path / "empty")})


def test_both_passphrase_sources_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("a")
    with pytest.raises(ConfigError, match="only one"):
        config_from_env(
            {**TLS, "TUFNOTARY_SIGNER_PASSPHRASE": "b", "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(tmp_path / "p")}
        )


def test_repr_does_not_show_the_passphrase() -> None:
    config = config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE": "hunter2-secret"})
    assert "hunter2-secret" not in repr(config)


def test_config_is_frozen() -> None:
    config = config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE": "pw"})
    with pytest.raises(AttributeError):
        config.listen = "0.0.0.0:1"  # type: ignore[misc]


def test_default_alias_needs_a_passphrase() -> None:
    with pytest.raises(ConfigError, match="default alias"):
        SignerConfig("c", "k", "ca", passphrases={"other": "pw"})


def test_several_passphrase_aliases_from_one_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrases"
    path.write_text("# rotation in progress\nold=first secret\n\nnew=second=secret\n")
    config = config_from_env(
        {**TLS, "TUFNOTARY_SIGNER_PASSPHRASES_FILE": str(path), "TUFNOTARY_SIGNER_PASSPHRASE_ALIAS": "new"}
    )
    assert config.passphrases == {"old": "first secret", "new": "second=secret"}
    assert config.default_alias == "new"
    assert "first secret" not in repr(config) and "second=secret" not in repr(config)
    with pytest.raises(ConfigError, match="no passphrase for the default alias 'default'"):
        config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASES_FILE": str(path)})
    (tmp_path / "bad").write_text("just a secret\n")
    with pytest.raises(ConfigError, match="line 1: expected alias=passphrase") as caught:
        config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASES_FILE": str(tmp_path / "bad")})
    assert "just a secret" not in str(caught.value)


def test_pkcs11_policy_allow_list_and_timings_from_env(tmp_path: Path) -> None:
    from datetime import timedelta

    (tmp_path / "pin").write_text("1234-secret-pin\n")
    config = config_from_env(
        {
            **TLS,
            "TUFNOTARY_SIGNER_KEYSTORE": "pkcs11",
            "TUFNOTARY_SIGNER_PKCS11_TOKEN_LABEL": "signer",
            "TUFNOTARY_SIGNER_PKCS11_PIN_FILE": str(tmp_path / "pin"),
            "TUFNOTARY_SIGNER_ALLOWED_CLIENT_SUBJECTS": "CN=tufnotary-server; CN=server-2,O=Example",
            "TUFNOTARY_SIGNER_MAX_TIMESTAMP_EXPIRY_DAYS": "0.5",
            "TUFNOTARY_SIGNER_MAX_SNAPSHOT_EXPIRY_DAYS": "3",
            "TUFNOTARY_SIGNER_EXPIRY_LEEWAY_SECONDS": "60",
            "TUFNOTARY_SIGNER_STOP_GRACE_SECONDS": "30",
        }
    )
    assert config.pkcs11 is not None and config.pkcs11.pin == "1234-secret-pin" and config.passphrases == {}
    assert config.pkcs11.module == "/usr/lib/softhsm/libsofthsm2.so"
    assert "1234-secret-pin" not in repr(config)
    assert config.allowed_client_subjects == ("CN=tufnotary-server", "CN=server-2,O=Example")
    assert config.policy.max_expiry == {"timestamp": timedelta(hours=12), "snapshot": timedelta(days=3)}
    assert config.policy.leeway == timedelta(seconds=60) and config.stop_grace == 30
    with pytest.raises(ConfigError, match="TUFNOTARY_SIGNER_PKCS11_PIN_FILE"):
        config_from_env({**TLS, "TUFNOTARY_SIGNER_KEYSTORE": "pkcs11", "TUFNOTARY_SIGNER_PKCS11_TOKEN_LABEL": "s"})
    with pytest.raises(ConfigError, match="must be positive"):
        config_from_env({**TLS, "TUFNOTARY_SIGNER_PASSPHRASE": "pw", "TUFNOTARY_SIGNER_MAX_TIMESTAMP_EXPIRY_DAYS": "0"})


def test_pkcs11_without_python_pkcs11_says_which_extra_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    from tufnotary.signer.app import open_keystore

    (tmp_path / "pin").write_text("1234\n")
    config = config_from_env({**TLS, "TUFNOTARY_SIGNER_KEYSTORE": "pkcs11", "TUFNOTARY_SIGNER_PKCS11_TOKEN_LABEL": "s",
                              "TUFNOTARY_SIGNER_PKCS11_PIN_FILE": str(tmp_path / "pin")})
    monkeypatch.setitem(sys.modules, "tufnotary.signer.pkcs11_keystore", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'tufnotary\[hsm\]'"):
        open_keystore(config)

"""Metadata-server credentials (`auth.credentials_for`): the environment first, then the Docker
config file and its credential helpers, read by the same code as registry credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.registry import write_credential_helper
from tufnotary.client.auth import credentials_for
from tufnotary.client.errors import CredentialHelperError, UsageError

SERVER = "http://127.0.0.1:4443"
HOST = "127.0.0.1:4443"


def _env(tmp_path: Path, config: dict[str, Any] | str, **extra: str) -> dict[str, str]:
    folder = tmp_path / "docker"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return {"DOCKER_CONFIG": str(folder), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **extra}


def test_server_credentials_from_a_credential_helper_by_host_and_port(tmp_path: Path) -> None:
    write_credential_helper(tmp_path / "bin", "store", {HOST: ("reader", "reader secret")})
    write_credential_helper(tmp_path / "bin", "special", {"other:1": ("x", "y")})
    env = _env(tmp_path, {"credsStore": "store", "credHelpers": {"other:1": "special"},
                          "auths": {HOST: {"auth": base64.b64encode(b"file:file-pw").decode()}}})
    creds = credentials_for(SERVER, env)
    assert creds is not None and (creds.username, creds.password) == ("reader", "reader secret")
    assert "reader secret" not in repr(creds)
    assert (tmp_path / "bin" / "store.calls").read_text().splitlines() == [f"get {HOST}"]
    # The helper holds nothing for another port: the auths entry is not for it either.
    assert credentials_for("http://127.0.0.1:9", env) is None


def test_environment_beats_the_docker_config_and_runs_no_helper(tmp_path: Path) -> None:
    write_credential_helper(tmp_path / "bin", "store", {HOST: ("reader", "reader secret")})
    env = _env(tmp_path, {"credsStore": "store"}, TUFNOTARY_USERNAME="alice", TUFNOTARY_PASSWORD="pw")
    creds = credentials_for(SERVER, env)
    assert creds is not None and (creds.username, creds.password) == ("alice", "pw")
    assert not (tmp_path / "bin" / "store.calls").exists()
    # The registry's variables are not the server's.
    registry_only = _env(tmp_path, {}, TUFNOTARY_REGISTRY_USERNAME="ci", TUFNOTARY_REGISTRY_PASSWORD="x")
    assert credentials_for(SERVER, registry_only) is None


def test_auths_entry_when_no_helper_is_configured(tmp_path: Path) -> None:
    env = _env(tmp_path, {"auths": {f"https://{HOST}/v1/": {"auth": base64.b64encode(b"file:pw:x").decode()}}})
    creds = credentials_for(SERVER, env)
    assert creds is not None and (creds.username, creds.password) == ("file", "pw:x")


def test_identity_token_for_the_server_is_refused_without_showing_it(tmp_path: Path) -> None:
    write_credential_helper(tmp_path / "bin", "store", {HOST: ("<token>", "refresh-secret")})
    with pytest.raises(UsageError, match="identity token for 127.0.0.1:4443.*TUFNOTARY_USERNAME") as e:
        credentials_for(SERVER, _env(tmp_path, {"credsStore": "store"}))
    assert "refresh-secret" not in e.value.message


def test_missing_helper_or_broken_file_is_a_clear_error_naming_the_servers_variables(tmp_path: Path) -> None:
    with pytest.raises(CredentialHelperError, match="docker-credential-nosuch .* not on PATH.*TUFNOTARY_USERNAME"):
        credentials_for(SERVER, _env(tmp_path, {"credHelpers": {HOST: "nosuch"}}))
    with pytest.raises(UsageError, match="cannot read the Docker credentials file .*config.json"):
        credentials_for(SERVER, _env(tmp_path, "{not json"))
    assert credentials_for(SERVER, {"DOCKER_CONFIG": str(tmp_path / "absent")}) is None


def test_ngclient_refusals_name_the_ways_to_log_in_and_keep_our_own_errors() -> None:
    from tuf.api import exceptions as tuf_exc

    from tufnotary.client.consumer import tuf_errors
    from tufnotary.client.errors import ServerError

    with pytest.raises(ServerError, match="HTTP 401.*TUFNOTARY_USERNAME.*credential helper") as e:
        with tuf_errors("acme/web", SERVER):
            raise tuf_exc.DownloadHTTPError("refused", 401)
    assert (e.value.server_code, e.value.status) == ("UNAUTHORIZED", 401)
    # The fetcher's own refusal (here: a token server's), wrapped by ngclient, comes out as it was.
    ours = ServerError("the token server 127.0.0.1 refused the credentials", "UNAUTHORIZED", 401)
    with pytest.raises(ServerError) as e:
        with tuf_errors("acme/web", SERVER):
            try:
                raise ours
            except ServerError as cause:
                raise tuf_exc.DownloadError("Failed to download x") from cause
    assert e.value is ours

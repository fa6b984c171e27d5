"""compose/docker-compose.yml: the services, images, networks, secrets and healthchecks a production
deployment needs. No Docker engine runs here, so the file is loaded and checked; `docker compose config`
validates it too where a compose binary exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tufnotary.server.config import load_config as server_load_config
from tufnotary.signer.config import file_settings as signer_file_settings

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
SECRET_WORDS = re.compile(r"PASSWORD|PASSPHRASE|SECRET|TOKEN|PIN|KEY", re.IGNORECASE)
PATHLIKE = re.compile(r"^/[\w./-]+$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def test_the_services_of_a_production_deployment(compose):
    services = compose["services"]
    assert {"server-postgres", "signer-postgres", "signer", "server-1", "server-2", "proxy", "migrate",
            "registry", "init-secrets"} <= set(services)
    assert services["registry"]["profiles"] == ["registry"]  # optional
    assert services["migrate"]["restart"] == "no" and "migrate" in services["migrate"]["command"]
    for replica in ("server-1", "server-2"):
        assert services[replica]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["proxy"]["ports"] == ["443:443"]


def test_images_are_pinned_or_built_here(compose):
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if image.startswith("tufnotary:"):
            assert service["build"]["dockerfile"] == "compose/Dockerfile", name
            assert (COMPOSE / "Dockerfile").exists()
        else:
            assert re.fullmatch(r"[a-z0-9./-]+:[0-9][\w.-]*", image), f"{name}: pin a version, not {image!r}"


def _networks(service: dict) -> set[str]:
    networks = service.get("networks", [])
    return set(networks if isinstance(networks, list) else networks)


def test_the_signer_cannot_be_reached_from_the_client_side(compose):
    services, networks = compose["services"], compose["networks"]
    for private in ("signer-net", "signer-db", "server-db", "app"):
        assert networks[private].get("internal") is True, private
    exposed = {name for name, s in services.items() if s.get("ports")}
    assert exposed == {"proxy", "registry"}
    for name in exposed:
        assert not _networks(services[name]) & {"signer-net", "signer-db", "server-db"}, name
    on_signer_net = {name for name, s in services.items() if "signer-net" in _networks(s)}
    assert on_signer_net == {"signer", "server-1", "server-2"}
    assert {name for name, s in services.items() if "signer-db" in _networks(s)} == {"signer", "signer-postgres"}
    assert {name for name, s in services.items() if "server-db" in _networks(s)} == {
        "server-postgres", "migrate", "server-1", "server-2"}


def _volume_names(service: dict) -> set[str]:
    return {v.split(":")[0] for v in service.get("volumes", []) if not v.startswith((".", "/"))}


def test_no_secret_in_an_environment_value_and_each_secret_only_where_needed(compose):
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use a mapping for environment"
        for key, value in environment.items():
            if SECRET_WORDS.search(key) or key == "PGPASSFILE":
                assert key.endswith(("_FILE", "PASSFILE", "_KEY")) and PATHLIKE.match(str(value)), \
                    f"{name}: {key} must name a file, not hold a secret"
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), f"{name}: {key} has a password in a URL"
    services = compose["services"]
    assert "signer-secrets" not in set().union(*(_volume_names(s) for n, s in services.items()
                                                 if n not in ("signer", "init-secrets")))
    assert "ca" not in set().union(*(_volume_names(s) for n, s in services.items() if n != "init-secrets"))
    assert services["init-secrets"]["network_mode"] == "none"


def test_long_running_services_have_healthchecks(compose):
    for name, service in compose["services"].items():
        if service.get("restart") == "unless-stopped":
            check = service.get("healthcheck", {})
            assert check.get("test") and check.get("interval"), f"{name} has no healthcheck"
    # Replicas stay in rotation while the signer is down: reads do not need it.
    assert "checks=database" in " ".join(compose["services"]["server-1"]["healthcheck"]["test"])


def test_example_configuration_files_load(compose, tmp_path):
    server = server_load_config(str(COMPOSE / "server.toml"), {})
    assert server.database_url.startswith("postgresql://tufnotary@server-postgres")
    assert server.signer_address == "signer:7899" and server.signer_client_key
    assert server.auth.users_file == "/run/tufnotary/users.toml" and server.auth.proxy_hops == 1
    settings = signer_file_settings(str(COMPOSE / "signer.toml"))
    assert settings["TUFNOTARY_SIGNER_PASSPHRASE_FILE"] == "/run/tufnotary/passphrase"
    assert settings["TUFNOTARY_SIGNER_METRICS_LISTEN"] == "0.0.0.0:9100"
    for text in ((COMPOSE / "server.toml").read_text(), (COMPOSE / "signer.toml").read_text()):
        tomllib.loads(text)
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", text)


def test_init_secrets_script_is_valid_shell_and_keeps_secrets_private():
    script = COMPOSE / "init-secrets.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    assert "umask 077" in text and "chmod -R go-rwx /secrets" in text
    for produced in ("signer.crt", "client.crt", "passphrase", "pgpass", "tls.crt", "token.key", "users.toml"):
        assert produced.split(".")[0] in text


@pytest.mark.skipif(not shutil.which("docker-compose") and subprocess.run(
    ["docker", "compose", "version"], capture_output=True).returncode != 0 if shutil.which("docker") else True,
    reason="no compose binary on this machine")
def test_docker_compose_config_validates():
    command = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    subprocess.run([*command, "-f", str(COMPOSE / "docker-compose.yml"), "config", "-q"], check=True)

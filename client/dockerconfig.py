"""Credentials for a host from the Docker config file and Docker credential helpers.

One reader for both hosts the client logs in to: registries (`registryauth.CredentialStore`) and
the metadata server (`auth.credentials_for`), so a `docker login` to either, stored in the file or
in a helper, works the same way. Each caller chooses the file and where its own environment
variables rank; this module owns Docker's order within the file: the host's credential helper
(`credHelpers`), else the default one (`credsStore`), else the `auths` entry `docker login` wrote.

A helper is the program `docker-credential-<name>`, run as `docker-credential-<name> get` with
the host on stdin, answering `{"Username", "Secret"}` (Docker's credential helper protocol); the
username `<token>` means the secret is an identity (refresh) token. A helper's output can hold a
secret, so it never enters a message, and `Credentials` keeps its secret out of `repr`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tufnotary.client.errors import CredentialHelperError, UsageError

IDENTITY_TOKEN_USERNAME = "<token>"  # Docker: the secret is an identity token, not a password
HELPER_TIMEOUT = 30.0  # seconds; a helper may ask the desktop keyring, never forever
# What helpers print when they hold nothing for the host (docker-credential-helpers).
_NOT_FOUND = ("credentials not found", "not found in native keychain")
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    @property
    def identity_token(self) -> str | None:
        """The identity (refresh) token, when these credentials are one (Docker's `<token>`)."""
        return self.password if self.username == IDENTITY_TOKEN_USERNAME else None

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def host_of(server: str) -> str:
    """The key Docker files credentials under: host[:port], lowercase, Docker Hub's aliases as
    `docker.io`; from a bare host, a URL, or an `auths` key such as `https://host/v1/`."""
    server = re.sub(r"^[a-z]+://", "", server.strip(), flags=re.IGNORECASE).split("/", 1)[0].lower()
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io") else server


def default_config_path(env: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, as the docker CLI reads it."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]).expanduser() / "config.json"
    return Path("~/.docker/config.json").expanduser()


def _helper_server(host: str) -> str:
    """The server name Docker hands helpers: Docker Hub's legacy URL, else the host."""
    return "https://index.docker.io/v1/" if host == "docker.io" else host


@dataclass
class DockerConfig:
    """What one Docker config file says about credentials (no helper is run to read it)."""

    path: Path
    auths: dict[str, Credentials] = field(default_factory=dict)
    helpers: dict[str, str] = field(default_factory=dict)  # host -> helper name
    store: str | None = None  # credsStore: the helper for every other host

    @classmethod
    def load(cls, path: Path) -> DockerConfig:
        """The file at `path`; empty when there is none. A file that cannot be read or parsed is
        a usage error naming it (credentials silently ignored would look like a server refusal)."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the Docker credentials file {path}: {e}") from e
        config = cls(path)
        data = data if isinstance(data, dict) else {}
        auths = data.get("auths", {})
        for server, entry in (auths if isinstance(auths, dict) else {}).items():
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
                config.auths[host_of(server)] = Credentials(IDENTITY_TOKEN_USERNAME, entry["identitytoken"])
            elif isinstance(entry.get("auth"), str) and entry["auth"]:
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except ValueError as e:
                    raise UsageError(f"{path}: the auth entry of {server} is not base64 user:password") from e
                config.auths[host_of(server)] = Credentials(user, password)
            elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
                config.auths[host_of(server)] = Credentials(entry["username"], entry["password"])
        helpers = data.get("credHelpers", {})
        for server, name in (helpers if isinstance(helpers, dict) else {}).items():
            config.helpers[host_of(server)] = _helper_name(path, f"credHelpers.{server}", name)
        if data.get("credsStore") not in (None, ""):
            config.store = _helper_name(path, "credsStore", data["credsStore"])
        return config

    def credentials(self, host: str, env: Mapping[str, str], otherwise: str) -> Credentials | None:
        """`host`'s credentials in Docker's order: its helper, else the default helper, else
        `auths`; None when none holds any. `otherwise` completes a missing helper's refusal with
        the caller's other ways to log in (its environment variables)."""
        host = host_of(host)
        helper = self.helpers.get(host) or self.store
        if helper is not None:
            found = run_helper(helper, host, env, self.path, otherwise)
            if found is not None:
                return found
        return self.auths.get(host)


def _helper_name(path: Path, key: str, name: object) -> str:
    # The name becomes part of a program name: refuse anything but a plain word.
    if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
        raise UsageError(f"{path}: {key} must name a credential helper (docker-credential-<name>), "
                         f"e.g. \"pass\" or \"secretservice\"")
    return name


def run_helper(name: str, host: str, env: Mapping[str, str], config: Path, otherwise: str) -> Credentials | None:
    """Ask `docker-credential-<name>` for `host`'s credentials; None when it holds none.

    The helper's output can hold the secret, so it never enters a message; only its exit status
    and, on failure, the first line it wrote to stderr.
    """
    program = f"docker-credential-{name}"
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise CredentialHelperError(
            f"the credential helper {program} that {config} names for {host} is not on PATH: "
            f"install it, or remove it from credsStore/credHelpers and use 'docker login' or {otherwise}")
    try:
        done = subprocess.run([found, "get"], input=_helper_server(host).encode(), env=dict(env),
                              capture_output=True, timeout=HELPER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        reason = "timed out" if isinstance(e, subprocess.TimeoutExpired) else f"could not run ({e.strerror})"
        raise CredentialHelperError(f"the credential helper {program} {reason} for {host}") from None
    if done.returncode != 0:
        said = done.stdout.decode(errors="replace").strip().lower()
        if any(phrase in said for phrase in _NOT_FOUND):
            return None
        first = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[0][:200]
        raise CredentialHelperError(
            f"the credential helper {program} failed for {host} (exit status {done.returncode})"
            + (f": {first}" if first else "")
            + f"; check it with 'echo {_helper_server(host)} | {program} get'")
    try:
        reply = json.loads(done.stdout)
        username, secret = reply["Username"], reply["Secret"]
        if not isinstance(username, str) or not isinstance(secret, str) or not secret:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise CredentialHelperError(
            f"the credential helper {program} answered {host} without a JSON "
            "{\"Username\", \"Secret\"}") from None
    return Credentials(username, secret)

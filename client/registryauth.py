"""Registry credentials and the registry authentication flows: anonymous, basic, bearer token.

Credentials come from the Docker config file (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`, or the file named by `TUFNOTARY_REGISTRY_AUTH_FILE`), in Docker's
order: the registry's credential helper (`credHelpers`), else the default one (`credsStore`),
else the `auths` entries written by `docker login`; else `TUFNOTARY_REGISTRY_USERNAME` and
`TUFNOTARY_REGISTRY_PASSWORD`; never from the command line. A helper is the program
`docker-credential-<name>`, run as `docker-credential-<name> get` with the registry on stdin,
answering `{"Username", "Secret"}` (Docker's credential helper protocol); the username
`<token>` means the secret is an identity (refresh) token for the OAuth2 token flow. Nothing
here logs or returns credentials, or a helper's output, in messages. Bearer tokens (the Docker
registry token flow) are cached per realm, service and set of scopes until they expire.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tufnotary.client.errors import CredentialHelperError, UsageError

AUTH_FILE_ENV = "TUFNOTARY_REGISTRY_AUTH_FILE"
USERNAME_ENV = "TUFNOTARY_REGISTRY_USERNAME"
PASSWORD_ENV = "TUFNOTARY_REGISTRY_PASSWORD"
IDENTITY_TOKEN_USERNAME = "<token>"  # Docker: the secret is an identity token, not a password
HELPER_TIMEOUT = 30.0  # seconds; a helper may ask the desktop keyring, never forever
# What helpers print when they hold nothing for the registry (docker-credential-helpers).
_NOT_FOUND = ("credentials not found", "not found in native keychain")
_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


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


def _normalise(server: str) -> str:
    server = re.sub(r"^[a-z]+://", "", server.strip()).split("/", 1)[0].lower()
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io") else server


def docker_config_path(env: Mapping[str, str]) -> Path:
    if env.get(AUTH_FILE_ENV):
        return Path(env[AUTH_FILE_ENV]).expanduser()
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]).expanduser() / "config.json"
    return Path("~/.docker/config.json").expanduser()


def _helper_server(registry: str) -> str:
    """The server name Docker hands helpers: Docker Hub's legacy URL, else the host."""
    return "https://index.docker.io/v1/" if registry == "docker.io" else registry


class CredentialStore:
    """Credentials per registry host: credential helpers, the Docker config file, the environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self._config: _DockerConfig | None = None
        self._found: dict[str, Credentials | None] = {}

    def _load(self) -> _DockerConfig:
        path = docker_config_path(self._env)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return _DockerConfig(path)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read registry credentials file {path}: {e}") from e
        config = _DockerConfig(path)
        data = data if isinstance(data, dict) else {}
        auths = data.get("auths", {})
        for server, entry in (auths if isinstance(auths, dict) else {}).items():
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
                config.auths[_normalise(server)] = Credentials(IDENTITY_TOKEN_USERNAME, entry["identitytoken"])
            elif isinstance(entry.get("auth"), str) and entry["auth"]:
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except ValueError as e:
                    raise UsageError(f"{path}: the auth entry of {server} is not base64 user:password") from e
                config.auths[_normalise(server)] = Credentials(user, password)
            elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
                config.auths[_normalise(server)] = Credentials(entry["username"], entry["password"])
        helpers = data.get("credHelpers", {})
        for server, name in (helpers if isinstance(helpers, dict) else {}).items():
            config.helpers[_normalise(server)] = _helper_name(path, f"credHelpers.{server}", name)
        if data.get("credsStore") not in (None, ""):
            config.store = _helper_name(path, "credsStore", data["credsStore"])
        return config

    def get(self, registry: str) -> Credentials | None:
        registry = _normalise(registry)
        if registry not in self._found:
            self._found[registry] = self._lookup(registry)
        return self._found[registry]

    def _lookup(self, registry: str) -> Credentials | None:
        if self._config is None:
            self._config = self._load()
        config = self._config
        helper = config.helpers.get(registry) or config.store
        if helper is not None:
            found = run_helper(helper, registry, self._env, config.path)
            if found is not None:
                return found
        found = config.auths.get(registry)
        if found is not None:
            return found
        user, password = self._env.get(USERNAME_ENV), self._env.get(PASSWORD_ENV)
        if user and password is not None:
            return Credentials(user, password)
        return None


@dataclass
class _DockerConfig:
    path: Path
    auths: dict[str, Credentials] = field(default_factory=dict)
    helpers: dict[str, str] = field(default_factory=dict)  # registry -> helper name
    store: str | None = None  # credsStore: the helper for every other registry


def _helper_name(path: Path, key: str, name: object) -> str:
    # The name becomes part of a program name: refuse anything but a plain word.
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UsageError(f"{path}: {key} must name a credential helper (docker-credential-<name>), "
                         f"e.g. \"pass\" or \"secretservice\"")
    return name


def run_helper(name: str, registry: str, env: Mapping[str, str], config: Path) -> Credentials | None:
    """Ask `docker-credential-<name>` for `registry`'s credentials; None when it holds none.

    The helper's output can hold the secret, so it never enters a message; only its exit status
    and, on failure, the first line it wrote to stderr.
    """
    program = f"docker-credential-{name}"
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise CredentialHelperError(
            f"the credential helper {program} that {config} names for {registry} is not on PATH: "
            f"install it, or remove it from credsStore/credHelpers and use 'docker login' or "
            f"{USERNAME_ENV}/{PASSWORD_ENV}")
    try:
        done = subprocess.run([found, "get"], input=_helper_server(registry).encode(), env=dict(env),
                              capture_output=True, timeout=HELPER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        reason = "timed out" if isinstance(e, subprocess.TimeoutExpired) else f"could not run ({e.strerror})"
        raise CredentialHelperError(f"the credential helper {program} {reason} for {registry}") from None
    if done.returncode != 0:
        said = done.stdout.decode(errors="replace").strip().lower()
        if any(phrase in said for phrase in _NOT_FOUND):
            return None
        first = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[0][:200]
        raise CredentialHelperError(
            f"the credential helper {program} failed for {registry} (exit status {done.returncode})"
            + (f": {first}" if first else "")
            + f"; check it with 'echo {_helper_server(registry)} | {program} get'")
    try:
        reply = json.loads(done.stdout)
        username, secret = reply["Username"], reply["Secret"]
        if not isinstance(username, str) or not isinstance(secret, str) or not secret:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise CredentialHelperError(
            f"the credential helper {program} answered {registry} without a JSON "
            "{\"Username\", \"Secret\"}") from None
    return Credentials(username, secret)


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: scheme (`basic`/`bearer`) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]).replace('\\"', '"')
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float


class TokenCache:
    """Bearer tokens by (realm, service, scopes), dropped a little before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, frozenset[str]], _Token] = {}

    def get(self, realm: str, service: str, scopes: frozenset[str]) -> str | None:
        token = self._tokens.get((realm, service, scopes))
        if token is None or token.expires_at <= time.monotonic():
            return None
        return token.value

    def put(self, realm: str, service: str, scopes: frozenset[str], value: str, expires_in: float) -> None:
        # Registries default to 60 s; renew 10 s early so a token never expires mid-request.
        lifetime = expires_in - 10 if expires_in > 20 else expires_in / 2
        self._tokens[(realm, service, scopes)] = _Token(value, time.monotonic() + lifetime)

    def forget(self, realm: str, service: str, scopes: frozenset[str]) -> None:
        self._tokens.pop((realm, service, scopes), None)

"""Registry credentials and the registry authentication flows: anonymous, basic, bearer token.

Credentials come from the Docker config file (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`, or the file named by `TUFNOTARY_REGISTRY_AUTH_FILE`: the `auths`
entries written by `docker login`), else from `TUFNOTARY_REGISTRY_USERNAME` and
`TUFNOTARY_REGISTRY_PASSWORD`; never from the command line. Nothing here logs or returns them
in messages. Bearer tokens (the Docker registry token flow) are cached per realm, service and
set of scopes until they expire.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tufnotary.client.errors import UsageError

AUTH_FILE_ENV = "TUFNOTARY_REGISTRY_AUTH_FILE"
USERNAME_ENV = "TUFNOTARY_REGISTRY_USERNAME"
PASSWORD_ENV = "TUFNOTARY_REGISTRY_PASSWORD"
_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

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


class CredentialStore:
    """Credentials per registry host from the Docker config file, else from the environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self._auths: dict[str, Credentials] | None = None

    def _load(self) -> dict[str, Credentials]:
        path = docker_config_path(self._env)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read registry credentials file {path}: {e}") from e
        out: dict[str, Credentials] = {}
        auths = data.get("auths", {}) if isinstance(data, dict) else {}
        for server, entry in (auths if isinstance(auths, dict) else {}).items():
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("auth"), str) and entry["auth"]:
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except ValueError as e:
                    raise UsageError(f"{path}: the auth entry of {server} is not base64 user:password") from e
                out[_normalise(server)] = Credentials(user, password)
            elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
                out[_normalise(server)] = Credentials(entry["username"], entry["password"])
        return out

    def get(self, registry: str) -> Credentials | None:
        if self._auths is None:
            self._auths = self._load()
        found = self._auths.get(_normalise(registry))
        if found is not None:
            return found
        user, password = self._env.get(USERNAME_ENV), self._env.get(PASSWORD_ENV)
        if user and password is not None:
            return Credentials(user, password)
        return None


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

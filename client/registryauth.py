"""Registry credentials and the registry authentication flows: anonymous, basic, bearer token.

Credentials come from the Docker config file (the one named by `TUFNOTARY_REGISTRY_AUTH_FILE`,
else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) in Docker's order, read by
`dockerconfig.py` (credential helpers, then `auths`); else `TUFNOTARY_REGISTRY_USERNAME` and
`TUFNOTARY_REGISTRY_PASSWORD`; never from the command line. The username `<token>` means the
secret is an identity (refresh) token for the OAuth2 token flow. Nothing here logs or returns
credentials in messages. Bearer tokens (the Docker registry token flow) are cached per realm,
service and set of scopes until they expire.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tufnotary.client.dockerconfig import Credentials, DockerConfig, default_config_path, host_of

AUTH_FILE_ENV = "TUFNOTARY_REGISTRY_AUTH_FILE"
USERNAME_ENV = "TUFNOTARY_REGISTRY_USERNAME"
PASSWORD_ENV = "TUFNOTARY_REGISTRY_PASSWORD"


def docker_config_path(env: Mapping[str, str]) -> Path:
    if env.get(AUTH_FILE_ENV):
        return Path(env[AUTH_FILE_ENV]).expanduser()
    return default_config_path(env)


class CredentialStore:
    """Credentials per registry host: credential helpers, the Docker config file, the environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self._config: DockerConfig | None = None
        self._found: dict[str, Credentials | None] = {}

    def get(self, registry: str) -> Credentials | None:
        registry = host_of(registry)
        if registry not in self._found:
            self._found[registry] = self._lookup(registry)
        return self._found[registry]

    def _lookup(self, registry: str) -> Credentials | None:
        if self._config is None:
            self._config = DockerConfig.load(docker_config_path(self._env))
        found = self._config.credentials(registry, self._env, f"{USERNAME_ENV}/{PASSWORD_ENV}")
        if found is not None:
            return found
        user, password = self._env.get(USERNAME_ENV), self._env.get(PASSWORD_ENV)
        if user and password is not None:
            return Credentials(user, password)
        return None


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

"""Settings of authentication, authorisation and per-client rate limits, read from
`TUFNOTARY_SERVER_AUTH*` and `TUFNOTARY_SERVER_RATE_*` (docs/auth.md has every one).

`AuthConfig()` is "auth on, nothing trusted": every request is refused until an issuer, a users
file or anonymous pull is configured, and `create_app` refuses to start so. Only
`mode="none"`, set explicitly, turns authentication off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tufnotary.server.tokens import SUPPORTED_ALGORITHMS
from tufnotary.server.env import read_fields

MODES = ("token", "none")


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "token"  # "none": no authentication at all (tests, or a trusted loopback)
    service: str = "tufnotary"  # the token audience and the challenge's service
    realm: str | None = None  # token endpoint URL in challenges; default: this server's own
    issuer: str | None = None  # an external token issuer (iss) ...
    jwks_file: str | None = None  # ... and its public keys (JWKS, one kid per key)
    algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS
    leeway: int = 30  # seconds of clock skew tolerated on exp and nbf
    anonymous_pull: bool = False  # read metadata without a token
    users_file: str | None = None  # the server's own issuer: users and their access
    token_key: str | None = None  # PEM private key (EC P-256 or RSA) the own issuer signs with
    token_issuer: str = "tufnotary-server"
    token_ttl: int = 300  # seconds
    rate_limit: float = 100.0  # requests per second per client address and worker; 0 disables
    rate_burst: int = 1000
    proxy_hops: int = 0  # trusted reverse proxies in front: take the client address from X-Forwarded-For

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"auth mode {self.mode!r}: use one of {', '.join(MODES)}")
        unsafe = set(self.algorithms) - set(SUPPORTED_ALGORITHMS)
        if unsafe:
            raise ValueError(f"token algorithms {sorted(unsafe)} are not allowed; choose among "
                             + ", ".join(SUPPORTED_ALGORITHMS))
        if bool(self.issuer) != bool(self.jwks_file):
            raise ValueError("an external token issuer needs both the issuer name and its JWKS file")
        if bool(self.users_file) != bool(self.token_key):
            raise ValueError("the server's own token issuer needs both a users file and a token signing key")

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def issues_tokens(self) -> bool:
        return bool(self.users_file)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


_FIELDS = {
    "AUTH": ("mode", str),
    "AUTH_SERVICE": ("service", str),
    "AUTH_REALM": ("realm", str),
    "AUTH_ISSUER": ("issuer", str),
    "AUTH_JWKS_FILE": ("jwks_file", str),
    "AUTH_ALGORITHMS": ("algorithms", _list),
    "AUTH_LEEWAY": ("leeway", int),
    "AUTH_ANONYMOUS_PULL": ("anonymous_pull", _bool),
    "AUTH_USERS_FILE": ("users_file", str),
    "AUTH_TOKEN_KEY": ("token_key", str),
    "AUTH_TOKEN_ISSUER": ("token_issuer", str),
    "AUTH_TOKEN_TTL": ("token_ttl", int),
    "RATE_LIMIT": ("rate_limit", float),
    "RATE_BURST": ("rate_burst", int),
    "PROXY_HOPS": ("proxy_hops", int),
}


def auth_config_from_env(environ: Mapping[str, str]) -> AuthConfig:
    values = read_fields(environ, _FIELDS)
    return AuthConfig(**values)

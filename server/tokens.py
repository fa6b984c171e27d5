"""Bearer tokens as the Docker registry token specification has them: scopes, grants, JWT
verification against trusted issuers' public keys, and the server's own issuer.

Pure: no Flask, no storage. Verification raises `UnauthorizedError`; nothing here logs a token.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from tufnotary.server.errors import UnauthorizedError

ACTIONS = ("pull", "push", "*")
REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"
# Asymmetric algorithms only: never "none", never HMAC (whose secret would be a public key).
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
_KTY_OF_ALG = {"RS": "RSA", "ES": "EC"}
_EC_CURVE_OF_ALG = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_GRANT_NAME = re.compile(r"[a-z0-9*]+(?:[._/\-*][a-z0-9*]*)*")


@dataclass(frozen=True)
class Grant:
    """Actions on a resource: `repository:<collection glob>:pull,push`, `registry:catalog:*`.

    A `*` in the name matches any run of characters, '/' included: `wabbit-networks/*` grants
    every collection under wabbit-networks. The action `*` includes pull and push.
    """

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, scope: str) -> Grant:
        """Read a scope string `type:name:action[,action...]`; ValueError if malformed."""
        parts = scope.split(":")
        if len(parts) != 3:
            raise ValueError(f"scope {scope!r} is not type:name:actions")
        return cls.of(parts[0], parts[1], [a for a in parts[2].split(",") if a])

    @classmethod
    def of(cls, type: str, name: str, actions: Iterable[str]) -> Grant:
        actions = frozenset(actions)
        if type not in (REPOSITORY, REGISTRY):
            raise ValueError(f"unknown resource type {type!r}: use repository or registry")
        if type == REGISTRY and name != CATALOG:
            raise ValueError(f"unknown registry resource {name!r}: only catalog")
        if not name or len(name) > 255 or not _GRANT_NAME.fullmatch(name):
            raise ValueError(f"invalid resource name {name!r}")
        if not actions or not actions <= set(ACTIONS):
            raise ValueError(f"actions {sorted(actions)} must be among {', '.join(ACTIONS)}")
        return cls(type, name, actions)

    def matches(self, type: str, name: str) -> bool:
        if type != self.type:
            return False
        if "*" not in self.name:
            return name == self.name
        pattern = ".*".join(re.escape(part) for part in self.name.split("*"))
        return re.fullmatch(pattern, name) is not None

    def allows(self, type: str, name: str, action: str) -> bool:
        return self.matches(type, name) and ("*" in self.actions or action in self.actions)

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


@dataclass(frozen=True)
class Principal:
    """Who is asking, and what they may do."""

    subject: str
    grants: tuple[Grant, ...] = ()
    anonymous: bool = False
    issuer: str | None = None

    def allows(self, type: str, name: str, action: str) -> bool:
        return any(g.allows(type, name, action) for g in self.grants)


ANONYMOUS = Principal("anonymous", anonymous=True)


def grants_from_claim(access: Any) -> tuple[Grant, ...]:
    """The `access` claim of a registry token; entries that do not parse grant nothing."""
    if not isinstance(access, list):
        return ()
    grants = []
    for entry in access:
        try:
            grants.append(Grant.of(entry["type"], entry["name"], entry["actions"]))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(grants)


@dataclass(frozen=True)
class TrustedKey:
    """A public key that may sign tokens, with the one issuer it signs for."""

    kid: str
    issuer: str
    jwk: Mapping[str, Any]

    @property
    def kty(self) -> str:
        return str(self.jwk.get("kty"))

    def fits(self, alg: str) -> bool:
        """True if `alg` is a signature algorithm for this kind of key (no cross-type use)."""
        if _KTY_OF_ALG.get(alg[:2]) != self.kty:
            return False
        if self.kty == "EC" and self.jwk.get("crv") != _EC_CURVE_OF_ALG.get(alg):
            return False
        return self.jwk.get("alg") in (None, alg)


def key_id(public_key: Any) -> str:
    """A stable key id: the first 32 hex digits of the SHA-256 of the DER public key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:32]


def load_jwks(path: Path, issuer: str) -> list[TrustedKey]:
    """Public keys of an external issuer from a JWKS file (`{"keys": [{"kid", "kty", ...}]}`)."""
    try:
        document = json.loads(Path(path).read_text())
        entries = document["keys"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read the JWKS file {path}: {e}") from e
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("kid"):
            raise ValueError(f"{path}: every key needs a kid")
        if entry.get("kty") not in ("RSA", "EC") or "d" in entry:
            raise ValueError(f"{path}: key {entry.get('kid')} must be an RSA or EC public key")
        keys.append(TrustedKey(str(entry["kid"]), issuer, dict(entry)))
    return keys


class TokenVerifier:
    """Verifies registry bearer tokens signed by trusted keys, for one audience (the service)."""

    def __init__(
        self,
        keys: Sequence[TrustedKey],
        audience: str,
        algorithms: Sequence[str] = SUPPORTED_ALGORITHMS,
        leeway: int = 30,
    ) -> None:
        unsafe = set(algorithms) - set(SUPPORTED_ALGORITHMS)
        if unsafe:
            raise ValueError(f"algorithms {sorted(unsafe)} are not allowed for tokens; use {SUPPORTED_ALGORITHMS}")
        self._keys = {k.kid: k for k in keys}
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def _key_for(self, header: Mapping[str, Any]) -> TrustedKey:
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if not isinstance(kid, str) or kid not in self._keys:
            raise UnauthorizedError("the token is signed by a key this server does not trust")
        return self._keys[kid]

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as e:
            raise UnauthorizedError("the bearer token is not a JWT") from e
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise UnauthorizedError(f"token algorithm {str(alg)[:16]!r} is not allowed",
                                    {"allowed": list(self.algorithms)})
        key = self._key_for(header)
        if not key.fits(alg):
            raise UnauthorizedError(f"token algorithm {alg} does not fit the {key.kty} key {key.kid}")
        try:
            claims = jwt.decode(
                token, dict(key.jwk), algorithms=[alg], audience=self.audience, issuer=key.issuer,
                options={"leeway": self.leeway, "require_exp": True, "require_aud": True,
                         "require_iss": True, "require_sub": True, "verify_at_hash": False},
            )
        except ExpiredSignatureError as e:
            raise UnauthorizedError("the token has expired: get a new one") from e
        except JWTClaimsError as e:
            raise UnauthorizedError(f"the token's claims are not valid here: {e}") from e
        except JOSEError as e:
            raise UnauthorizedError("the token's signature does not verify") from e
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise UnauthorizedError("the token names no subject")
        return Principal(subject, grants_from_claim(claims.get("access")), issuer=key.issuer)


def _public_jwk(private_key: Any, alg: str, kid: str) -> dict[str, Any]:
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    d = jwk.construct(pem.decode(), alg).to_dict()
    return {**{k: (v.decode() if isinstance(v, bytes) else v) for k, v in d.items()}, "kid": kid, "alg": alg}


@dataclass
class TokenIssuer:
    """The server's own token issuer: signs registry tokens with a private key (ES256 or RS256)."""

    private_pem: bytes = field(repr=False)
    issuer: str
    audience: str
    ttl: int = 300

    def __post_init__(self) -> None:
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            self.alg = "ES256"
        elif isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
            self.alg = "RS256"
        else:
            raise ValueError("the token signing key must be an EC P-256 or an RSA (>= 2048 bits) private key")
        self.kid = key_id(key.public_key())
        self._public = TrustedKey(self.kid, self.issuer, _public_jwk(key, self.alg, self.kid))

    @property
    def trusted_key(self) -> TrustedKey:
        return self._public

    def issue(self, subject: str, grants: Iterable[Grant], now: float | None = None) -> tuple[str, int]:
        """A token for `subject` granting `grants`; returns (token, lifetime in seconds)."""
        now = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer, "sub": subject, "aud": self.audience,
            "iat": now, "nbf": now, "exp": now + self.ttl, "jti": secrets.token_urlsafe(16),
            "access": [g.to_claim() for g in grants],
        }
        token = jwt.encode(claims, self.private_pem.decode(), algorithm=self.alg, headers={"kid": self.kid})
        return token, self.ttl


def generate_token_key() -> bytes:
    """A new EC P-256 private key (PKCS#8 PEM, unencrypted) for the server's own issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())

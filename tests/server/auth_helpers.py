"""Test token issuers: an external issuer's RSA keys and JWKS, forged tokens of every bad kind,
and the Flask app with token auth on over the real store and signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from tufnotary.server.tokens import generate_token_key
from tufnotary.server.users import write_user

EXTERNAL_ISSUER = "https://auth.example.test"
SERVICE = "tufnotary-test"
EXTERNAL_KID = "ext-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@lru_cache(maxsize=None)
def foreign_pem() -> bytes:
    """An RSA key nobody trusts (made once: loading and making RSA keys is slow)."""
    return rsa_pem()


@lru_cache(maxsize=None)
def _signing_key(pem: bytes):
    return jwk.construct(pem.decode(), "RS256")


def public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class ExternalIssuer:
    """An external token server's keys: `kid` -> private PEM; writes the JWKS the server trusts."""

    keys: dict[str, bytes]
    issuer: str = EXTERNAL_ISSUER
    audience: str = SERVICE

    @classmethod
    def create(cls, *kids: str) -> ExternalIssuer:
        return cls({kid: rsa_pem() for kid in (kids or (EXTERNAL_KID,))})

    def write_jwks(self, path: Path, kids: list[str] | None = None) -> Path:
        entries = []
        for kid in kids or list(self.keys):
            d = jwk.construct(public_pem(self.keys[kid]).decode(), "RS256").to_dict()
            entries.append({k: (v.decode() if isinstance(v, bytes) else v) for k, v in d.items()} | {"kid": kid})
        path.write_text(json.dumps({"keys": entries}))
        return path

    def claims(self, subject: str, access: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.issuer, "sub": subject, "aud": self.audience, "iat": now, "nbf": now,
                "exp": now + 300, "access": access, **overrides}

    def token(self, subject: str = "ci-bot", access: list[dict[str, Any]] | None = None,
              kid: str = EXTERNAL_KID, key: bytes | None = None, **overrides: Any) -> str:
        return jwt.encode(self.claims(subject, access or [], **overrides), _signing_key(key or self.keys[kid]),
                          algorithm="RS256", headers={"kid": kid})

    def unsigned_token(self, access: list[dict[str, Any]], kid: str = EXTERNAL_KID) -> str:
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        return f"{header}.{_b64(json.dumps(self.claims('mallory', access)).encode())}."

    def hs256_with_public_key(self, access: list[dict[str, Any]], kid: str = EXTERNAL_KID) -> str:
        """The algorithm-confusion forgery: HMAC keyed with the issuer's (public) key."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        body = _b64(json.dumps(self.claims("mallory", access)).encode())
        mac = hmac.new(public_pem(self.keys[kid]), f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(mac)}"


def repo_access(name: str, *actions: str) -> list[dict[str, Any]]:
    return [{"type": "repository", "name": name, "actions": list(actions)}]


CATALOG = [{"type": "registry", "name": "catalog", "actions": ["*"]}]


def own_issuer_files(folder: Path, users: dict[str, tuple[str, list[str]]]) -> tuple[Path, Path]:
    """A users file (bcrypt cost 4: fast tests) and a token key for the server's own issuer."""
    key = folder / "token-key.pem"
    key.write_bytes(generate_token_key())
    users_file = folder / "users.toml"
    for name, (password, access) in users.items():
        write_user(users_file, name, password, access, rounds=4)
    return users_file, key


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

"""The local key store: private keys encrypted at rest (PKCS#8 PEM), public keys beside them.

Passphrases come from a caller-supplied `PassphraseProvider`; this module never reads the
environment or a terminal, and never writes a private key unencrypted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, SSlibKey

from tufnotary.client.errors import ClientError, KeyNotFoundError, PassphraseError, UsageError
from tufnotary.client.trustdir import TrustDir, write_file_atomic

KEY_TYPES = ("ed25519", "ecdsa", "rsa")


class PassphraseProvider(Protocol):
    def __call__(self, keyid: str, new: bool) -> str:
        """Return the passphrase for `keyid`; `new` is True when a key is being created."""
        ...


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    keytype: str
    scheme: str


def _generate(keytype: str) -> tuple[PrivateKeyTypes, SSlibKey]:
    private: PrivateKeyTypes
    if keytype == "ed25519":
        private, scheme = ed25519.Ed25519PrivateKey.generate(), "ed25519"
    elif keytype == "ecdsa":
        private, scheme = ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"
    elif keytype == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        scheme = "rsassa-pss-sha256"
    else:
        raise UsageError(f"unknown key type {keytype!r}: choose one of {', '.join(KEY_TYPES)}")
    return private, SSlibKey.from_crypto(private.public_key(), scheme=scheme)


class KeyStore:
    """Private signing keys of one trust directory."""

    def __init__(self, trust: TrustDir, passphrases: PassphraseProvider) -> None:
        self._trust = trust
        self._passphrases = passphrases

    def generate(self, keytype: str = "ed25519") -> SSlibKey:
        """Create a key pair, store it encrypted, and return its public key."""
        private, public = _generate(keytype)
        passphrase = self._passphrases(public.keyid, True)
        if not passphrase:
            raise PassphraseError("an empty passphrase is not allowed for a new key")
        pem = private.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase.encode())
        )
        for d in (self._trust.root, self._trust.private_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._trust.private_dir, 0o700)
        write_file_atomic(self._trust.private_dir / f"{public.keyid}.pem", pem, mode=0o600)
        write_file_atomic(
            self._trust.public_dir / f"{public.keyid}.json",
            json.dumps(public.to_dict(), indent=2).encode() + b"\n",
        )
        return public

    def public_key(self, keyid: str) -> SSlibKey:
        path = self._trust.public_dir / f"{keyid}.json"
        if not path.exists() or not (self._trust.private_dir / f"{keyid}.pem").exists():
            raise KeyNotFoundError(
                f"no local key {keyid} in {self._trust.root}: see 'tufnotary key list'"
            )
        try:
            return SSlibKey.from_dict(keyid, json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError) as e:
            raise ClientError(f"cannot read public key {path}: {e}") from e

    def list(self) -> list[KeyInfo]:
        if not self._trust.private_dir.is_dir():
            return []
        infos = []
        for pem in sorted(self._trust.private_dir.glob("*.pem")):
            key = self.public_key(pem.stem)
            infos.append(KeyInfo(key.keyid, key.keytype, key.scheme))
        return infos

    def signer(self, keyid: str) -> CryptoSigner:
        """Decrypt the private key `keyid` and return a signer for it."""
        public = self.public_key(keyid)
        pem = (self._trust.private_dir / f"{keyid}.pem").read_bytes()
        passphrase = self._passphrases(keyid, False)
        try:
            private = load_pem_private_key(pem, passphrase.encode())
        except (ValueError, TypeError) as e:
            raise PassphraseError(
                f"cannot decrypt key {keyid}: wrong passphrase (or a corrupt key file)"
            ) from e
        try:
            return CryptoSigner(private, public)  # type: ignore[arg-type]
        except ValueError as e:
            raise ClientError(f"key {keyid}: private and public key files do not match") from e

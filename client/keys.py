"""The local key store: private keys encrypted at rest (PKCS#8 PEM), public keys beside them.

Passphrases come from a caller-supplied `PassphraseProvider`; this module never reads the
environment or a terminal, and never writes a private key unencrypted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_public_key,
)
from securesystemslib.signer import CryptoSigner, SSlibKey

from tufnotary.client import keyfiles
from tufnotary.client.errors import ClientError, KeyNotFoundError, PassphraseError, UsageError
from tufnotary.client.trustdir import TrustDir, write_file_atomic

# --type values: ed25519, ECDSA on P-256 ("ecdsa" is an alias) or P-384, RSA-PSS (>= 3072 bits).
KEY_TYPES = ("ed25519", "ecdsa", "ecdsa-p256", "ecdsa-p384", "rsa")
MIN_RSA_BITS = 3072


class PassphraseProvider(Protocol):
    def __call__(self, keyid: str, new: bool) -> str:
        """Return the passphrase for `keyid`; `new` is True when a key is being created."""
        ...


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    keytype: str
    scheme: str


def _generate(keytype: str, rsa_bits: int = MIN_RSA_BITS) -> tuple[PrivateKeyTypes, SSlibKey]:
    private: PrivateKeyTypes
    if keytype == "ed25519":
        private, scheme = ed25519.Ed25519PrivateKey.generate(), "ed25519"
    elif keytype in ("ecdsa", "ecdsa-p256"):
        private, scheme = ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"
    elif keytype == "ecdsa-p384":
        private, scheme = ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384"
    elif keytype == "rsa":
        if rsa_bits < MIN_RSA_BITS:
            raise UsageError(
                f"RSA keys must have at least {MIN_RSA_BITS} bits (asked for {rsa_bits}): "
                "shorter keys are no longer considered safe"
            )
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        scheme = "rsassa-pss-sha256"
    else:
        raise UsageError(f"unknown key type {keytype!r}: choose one of {', '.join(KEY_TYPES)}")
    return private, SSlibKey.from_crypto(private.public_key(), scheme=scheme)


class KeyStore:
    """Private signing keys of one trust directory."""

    def __init__(self, trust: TrustDir, passphrases: PassphraseProvider) -> None:
        self._trust = trust
        self._passphrases = passphrases

    def generate(self, keytype: str = "ed25519", rsa_bits: int = MIN_RSA_BITS) -> SSlibKey:
        """Create a key pair, store it encrypted, and return its public key."""
        private, public = _generate(keytype, rsa_bits)
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
        if not keyfiles.has_private(self._trust.root, keyid):
            raise KeyNotFoundError(
                f"no local key {keyid} in {self._trust.root}: see 'tufnotary key list'"
            )
        try:
            return SSlibKey.from_dict(keyid, json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError) as e:
            raise ClientError(f"cannot read public key {path}: {e}") from e

    def has_private(self, keyid: str) -> bool:
        return keyfiles.has_private(self._trust.root, keyid)

    def resolve(self, ref: str) -> SSlibKey:
        """A public key from a local key id, a TUF key JSON file, or a PEM public key file."""
        if self.has_private(ref):
            return self.public_key(ref)
        return load_public_key_file(Path(ref))

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
        private = keyfiles.decrypt(self._trust.root, keyid, self._passphrases)
        try:
            return CryptoSigner(private, public)  # type: ignore[arg-type]
        except ValueError as e:
            raise ClientError(f"key {keyid}: private and public key files do not match") from e


def _scheme_for(public: object) -> str:
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {256: "ecdsa-sha2-nistp256", 384: "ecdsa-sha2-nistp384"}.get(
            public.curve.key_size, ""
        )
    if isinstance(public, rsa.RSAPublicKey):
        return "rsassa-pss-sha256"
    return ""


def load_public_key_file(path: Path) -> SSlibKey:
    """A public key from a file: a TUF key dict (JSON, optionally with "keyid") or a PEM key."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyNotFoundError(
            f"{path} is neither a local key id nor a readable public key file: {e.strerror}"
        ) from e
    if data.lstrip().startswith(b"{"):
        try:
            d = json.loads(data)
            d.pop("keyid", None)
            key = SSlibKey.from_dict("", d)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UsageError(f"{path} is not a TUF public key: {e}") from e
        from tufnotary.client.http import tuf_keyid

        return SSlibKey.from_dict(tuf_keyid(key), key.to_dict())
    try:
        public = load_pem_public_key(data)
    except ValueError as e:
        raise UsageError(f"{path} is neither a TUF key JSON file nor a PEM public key: {e}") from e
    scheme = _scheme_for(public)
    if not scheme:
        raise UsageError(
            f"{path}: unsupported key; use ed25519, ECDSA P-256/P-384 or RSA >= {MIN_RSA_BITS} bits"
        )
    return SSlibKey.from_crypto(public, scheme=scheme)  # type: ignore[arg-type]

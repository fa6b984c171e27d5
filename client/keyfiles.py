"""Private key files of the trust directory, and signing with them, on `cryptography` alone.

`KeyStore` (keys.py) wraps these in securesystemslib signers; the express publish
(`quickpublish.py`) signs with them directly, so that it imports neither securesystemslib's
signer package nor python-tuf. Both read and decrypt a key the same way, with the same refusals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from tufnotary.client.errors import KeyNotFoundError, PassphraseError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

try:
    # `cryptography.hazmat.primitives.serialization.load_pem_private_key` is this very function
    # (tests/client/test_quickpublish.py checks it is); importing it from there loads the whole
    # serialization package (SSH, PKCS#12, every cipher), ~35 ms of every publish.
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    _load_pem_private_key: Callable[..., Any] = _rust_openssl.keys.load_pem_private_key
except (ImportError, AttributeError):  # another cryptography: its public name
    from cryptography.hazmat.primitives.serialization import load_pem_private_key as _load_pem_private_key

# Passphrase of a key id (`new` is False here: keys are only read).
Passphrases = Callable[[str, bool], str]
SCHEMES = ("ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "rsassa-pss-sha256")


def private_path(trust_root: Path, keyid: str) -> Path:
    return trust_root / "private" / f"{keyid}.pem"


def public_path(trust_root: Path, keyid: str) -> Path:
    return trust_root / "public" / f"{keyid}.json"


def has_private(trust_root: Path, keyid: str) -> bool:
    """Whether the key pair `keyid` is stored here (its encrypted private key and public key)."""
    return private_path(trust_root, keyid).exists() and public_path(trust_root, keyid).exists()


def decrypt(trust_root: Path, keyid: str, passphrases: Passphrases) -> PrivateKeyTypes:
    """The private key `keyid`, decrypted with its passphrase."""
    try:
        pem = private_path(trust_root, keyid).read_bytes()
    except OSError as e:
        raise KeyNotFoundError(f"no local key {keyid} in {trust_root}: see 'tufnotary key list'") from e
    passphrase = passphrases(keyid, False)
    try:
        return _load_pem_private_key(pem, passphrase.encode())
    except (ValueError, TypeError) as e:
        raise PassphraseError(f"cannot decrypt key {keyid}: wrong passphrase (or a corrupt key file)") from e


def signs(private: PrivateKeyTypes, scheme: str) -> bool:
    """Whether `sign` can sign with `private` under the TUF signature `scheme`."""
    if scheme == "ed25519":
        return isinstance(private, ed25519.Ed25519PrivateKey)
    if scheme in ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384"):
        from cryptography.hazmat.primitives.asymmetric import ec

        size = 256 if scheme.endswith("256") else 384
        return isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.key_size == size
    if scheme == "rsassa-pss-sha256":
        from cryptography.hazmat.primitives.asymmetric import rsa

        return isinstance(private, rsa.RSAPrivateKey)
    return False


def sign(private: PrivateKeyTypes, scheme: str, data: bytes) -> str:
    """The hex signature of `data` under `scheme`, as securesystemslib's CryptoSigner makes it
    (ECDSA signatures DER-encoded, RSA-PSS with a digest-length salt). `signs` must hold."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(data).hex()
    # Other key types import their modules when used (an ed25519 signer never loads them).
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.hashes import SHA256, SHA384

    if isinstance(private, ec.EllipticCurvePrivateKey):
        return private.sign(data, ec.ECDSA(SHA256() if scheme.endswith("256") else SHA384())).hex()
    if isinstance(private, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return private.sign(data, pss, SHA256()).hex()
    raise ValueError(f"cannot sign with a {type(private).__name__}")

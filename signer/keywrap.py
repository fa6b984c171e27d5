"""Wrapping of private keys before they touch the database: JWE (dir + A256GCM) under a key-encryption
key derived from a passphrase with scrypt and a per-key random salt.

The TUF key id goes into the JWE protected header, which AES-GCM authenticates, so a wrapped key
moved to another row does not unwrap there.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from jose import jwe
from jose.exceptions import JOSEError

from tufnotary.signer.errors import KeyUnwrapError

SALT_BYTES = 16
# scrypt cost: ~32 MiB and well under a second per derivation; derived keys are cached by the store.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_kek(passphrase: str, salt: bytes) -> bytes:
    """The 256-bit key-encryption key for one passphrase and salt."""
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def wrap(private_pem: bytes, kek: bytes, key_id: str) -> str:
    """The compact JWE of `private_pem`, bound to `key_id`."""
    token = jwe.encrypt(private_pem, kek, algorithm="dir", encryption="A256GCM", kid=key_id)
    return token.decode("ascii")


def unwrap(token: str, kek: bytes, key_id: str) -> bytes:
    """The private PEM inside `token`; `KeyUnwrapError` naming `key_id` if it cannot be recovered."""
    failure = KeyUnwrapError(
        f"cannot unwrap the private key of {key_id}: the passphrase is wrong or the stored key was altered"
    )
    try:
        plaintext = jwe.decrypt(token, kek)
        header = jwe.get_unverified_header(token)
    except (JOSEError, ValueError, TypeError, KeyError):
        raise failure from None
    if plaintext is None or header.get("kid") != key_id:
        raise failure
    return plaintext

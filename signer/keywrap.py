"""Wrapping of private keys before they touch the database: JWE (A256KW + A256GCM) under a key-encryption
key (KEK) derived from a passphrase with scrypt and a random salt.

Each wrap draws its own content key and IV, so keys wrapped under one KEK share no AES-GCM key; that is
what lets a store derive one KEK per (alias, salt) and reuse it for every key it creates, instead of
paying scrypt per key (see docs/signer.md, "Key wrapping"). Keys wrapped before that (JWE `dir`: the KEK
itself as content key, one salt per key) still unwrap.

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
WRAP_ALGORITHM = "A256KW"  # a fresh random content key per wrapped key, itself wrapped by the KEK
_UNWRAP_ALGORITHMS = ("A256KW", "dir")  # "dir": keys wrapped before per-key content keys


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_kek(passphrase: str, salt: bytes) -> bytes:
    """The 256-bit key-encryption key for one passphrase and salt."""
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def wrap(private_pem: bytes, kek: bytes, key_id: str) -> str:
    """The compact JWE of `private_pem`, bound to `key_id`."""
    token = jwe.encrypt(private_pem, kek, algorithm=WRAP_ALGORITHM, encryption="A256GCM", kid=key_id)
    return token.decode("ascii")


def unwrap(token: str, kek: bytes, key_id: str) -> bytes:
    """The private PEM inside `token`; `KeyUnwrapError` naming `key_id` if it cannot be recovered."""
    failure = KeyUnwrapError(
        f"cannot unwrap the private key of {key_id}: the passphrase is wrong or the stored key was altered"
    )
    try:
        header = jwe.get_unverified_header(token)
        if header.get("alg") not in _UNWRAP_ALGORITHMS or header.get("enc") != "A256GCM":
            raise failure
        plaintext = jwe.decrypt(token, kek)  # authenticates the header too
    except (JOSEError, ValueError, TypeError, KeyError):
        raise failure from None
    if plaintext is None or header.get("kid") != key_id:
        raise failure
    return plaintext

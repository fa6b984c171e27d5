"""`SqlKeyStore`: the signer's keys in SQLite (`sqlite:///path`) or PostgreSQL (`postgresql://...`).

Private keys are wrapped (see `keywrap`) under the passphrase of an alias before they are written;
each row records its alias, so several passphrases can be configured at once and `rewrap` moves every
key to a new one in one transaction. The catalog, high-water marks and audit are `CatalogKeyStore`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import astuple
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signature, Signer, SSlibKey

from tufnotary.signer import keywrap
from tufnotary.signer.catalog import MIGRATIONS, CatalogKeyStore, Material
from tufnotary.signer.errors import ConfigError, KeyStoreUnavailableError, KeyUnwrapError
from tufnotary.signer.keystore import KeyRecord

__all__ = ["MIGRATIONS", "SqlKeyStore"]

REWRAP_ATTEMPTS = 5
_PLAIN_PAYLOAD_KEYTYPES = frozenset({"ed25519", "ecdsa", "rsa"})  # CryptoSigner signs their payload as given


class SqlKeyStore(CatalogKeyStore):
    """Keys in a SQL database, new ones wrapped under the passphrase of `default_alias` (see `KeyStore`)."""

    custody = "jwe"

    def __init__(
        self,
        database_url: str,
        passphrases: Mapping[str, str],
        default_alias: str,
        *,
        max_connections: int = 16,
    ) -> None:
        if default_alias not in passphrases:
            raise ConfigError(f"no passphrase is configured for the default alias {default_alias!r}")
        super().__init__(database_url, max_connections=max_connections)
        self._passphrases = dict(passphrases)
        self._default_alias = default_alias
        self._keks: dict[tuple[str, str], bytes] = {}
        self._salts: dict[str, bytes] = {}  # alias -> the salt this process wraps new keys with
        self._keks_lock = threading.Lock()

    def _generate(self, algorithm: str) -> tuple[SSlibKey, Material]:
        signer = _generate(algorithm)
        key = signer.public_key
        salt = self._salt(self._default_alias)
        wrapped = keywrap.wrap(signer.private_bytes, self._kek(self._default_alias, salt), key.keyid)
        return key, Material(wrapped, salt.hex(), self._default_alias)

    def _load_signer(self, record: KeyRecord, material: Material) -> Signer:
        pem = self._unwrap(record.key_id, material)
        try:
            private_key = load_pem_private_key(pem, None)
            return PreparedCryptoSigner(private_key, record.to_sslib_key())  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise KeyUnwrapError(
                f"the private key of {record.key_id} does not match its stored public key: the row was altered"
            ) from None

    def rewrap(self, to_alias: str) -> int:
        """Re-encrypt every stored key not yet under `to_alias` with that alias' passphrase; all or nothing.

        The unwrapping (scrypt per key) happens outside the transaction; the transaction only swaps
        each row's ciphertext if the row did not change meanwhile, and fails if a key it did not
        rewrap appeared under another alias — then the whole attempt is retried. Signing continues
        throughout: until the commit, replicas read the old ciphertext, which their old passphrase opens.
        Returns how many keys were rewrapped. `KeyUnwrapError` (naming the key) if one cannot be opened.
        """
        if to_alias not in self._passphrases:
            raise ConfigError(f"no passphrase is configured for the alias {to_alias!r}: add it before rewrapping")
        salt = self._salt(to_alias)  # one scrypt derivation for any number of keys
        kek = self._kek(to_alias, salt)
        for _ in range(REWRAP_ATTEMPTS):
            rows = self._db.select(
                "SELECT key_id, wrapped_private, kdf_salt, passphrase_alias FROM signer_keys"
                " WHERE custody = 'jwe' AND state <> 'retired' AND passphrase_alias <> ? ORDER BY key_id",
                (to_alias,),
            )
            rewrapped = {
                key_id: (wrapped, keywrap.wrap(self._unwrap(key_id, Material(wrapped, salt_hex, alias)), kek, key_id))
                for key_id, wrapped, salt_hex, alias in rows
            }
            try:
                with self._db.transaction() as cur:
                    self._db.execute(
                        cur,
                        "SELECT key_id FROM signer_keys WHERE custody = 'jwe' AND state <> 'retired'"
                        f" AND passphrase_alias <> ?{self._db.for_update}",
                        (to_alias,),
                    )
                    if {row[0] for row in cur.fetchall()} != set(rewrapped):
                        raise _Retry()  # keys were added, retired or rewrapped meanwhile: start over
                    for key_id, (old, new) in rewrapped.items():
                        self._db.execute(
                            cur,
                            "UPDATE signer_keys SET wrapped_private = ?, kdf_salt = ?, passphrase_alias = ?"
                            " WHERE key_id = ? AND wrapped_private = ?",
                            (new, salt.hex(), to_alias, key_id, old),
                        )
                        if cur.rowcount != 1:
                            raise _Retry()
            except _Retry:
                continue
            return len(rewrapped)
        raise KeyStoreUnavailableError(f"keys kept changing while rewrapping to {to_alias!r}; retry")

    def _unwrap(self, key_id: str, material: Material) -> bytes:
        alias = material.passphrase_alias
        if alias not in self._passphrases:
            raise KeyUnwrapError(
                f"key {key_id} is wrapped under passphrase alias {alias!r}, which this signer has no passphrase for"
            )
        try:
            salt = bytes.fromhex(material.kdf_salt)
        except ValueError:
            raise KeyUnwrapError(f"cannot unwrap the private key of {key_id}: its stored salt was altered") from None
        return keywrap.unwrap(material.wrapped_private, self._kek(alias, salt), key_id)

    def _salt(self, alias: str) -> bytes:
        """The salt of the keys this process wraps under `alias`: random, drawn once per process, so that
        scrypt runs once per alias rather than once per key (each wrap still has its own content key)."""
        with self._keks_lock:
            return self._salts.setdefault(alias, keywrap.new_salt())

    def _kek(self, alias: str, salt: bytes) -> bytes:
        """The KEK of (alias, salt), derived at most once per process (scrypt is the point: it is slow)."""
        cache_key = (alias, salt.hex())
        with self._keks_lock:
            kek = self._keks.get(cache_key)
        if kek is None:
            kek = keywrap.derive_kek(self._passphrases[alias], salt)
            with self._keks_lock:
                self._keks[cache_key] = kek
        return kek


class _Retry(Exception):
    pass


class PreparedCryptoSigner(CryptoSigner):
    """`CryptoSigner` with its signing arguments (padding, hash) prepared once: `CryptoSigner.sign` rebuilds them
    with `dataclasses.astuple` per signature, which cost ~10% of an ed25519 signature. Same signatures."""

    def __init__(self, private_key: Any, public_key: SSlibKey) -> None:
        super().__init__(private_key, public_key)
        self._args = astuple(self._sign_args)
        self._prefixes_payload = public_key.keytype not in _PLAIN_PAYLOAD_KEYTYPES
        self._keyid = public_key.keyid  # read per signature: not through the `public_key` property
        self._sign = self._private_key.sign

    def sign(self, payload: bytes) -> Signature:
        if self._prefixes_payload:  # e.g. ML-DSA prefixes the payload: CryptoSigner knows how
            return super().sign(payload)
        return Signature(self._keyid, self._sign(payload, *self._args).hex())


def _generate(algorithm: str) -> CryptoSigner:
    if algorithm == "ed25519":
        return CryptoSigner.generate_ed25519()
    if algorithm.startswith("ecdsa-"):
        return CryptoSigner.generate_ecdsa(scheme=algorithm)
    return CryptoSigner.generate_rsa(scheme=algorithm, size=3072)

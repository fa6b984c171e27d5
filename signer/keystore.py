"""The key store contract: where the signer keeps the online keys of every collection.

Implementations (`SqlKeyStore`, later `Pkcs11KeyStore`) generate keys inside the signer and never
return private bytes; callers get public key records and `Signer` objects.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass

from securesystemslib.signer import Signer, SSlibKey

from tufnotary.signer.errors import InvalidRequestError

ROLES = ("timestamp", "snapshot")
DEFAULT_ALGORITHM = "ed25519"
ALGORITHMS = ("ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "rsassa-pss-sha256")

_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")


@dataclass(frozen=True)
class KeyRecord:
    """The public half of a stored key, and what it is for."""

    key_id: str
    collection: str
    role: str
    keytype: str
    scheme: str
    public: str

    def to_sslib_key(self) -> SSlibKey:
        return SSlibKey(self.key_id, self.keytype, self.scheme, {"public": self.public})


def check_collection(collection: str) -> str:
    if not _COLLECTION.match(collection or ""):
        raise InvalidRequestError(
            f"invalid collection name {collection!r}: use letters, digits and . _ / - (at most 255)"
        )
    return collection


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequestError(f"invalid role {role!r}: the signer holds only {' and '.join(ROLES)} keys")
    return role


def check_algorithm(algorithm: str) -> str:
    algorithm = algorithm or DEFAULT_ALGORITHM
    if algorithm not in ALGORITHMS:
        raise InvalidRequestError(f"unsupported algorithm {algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
    return algorithm


class KeyStore(abc.ABC):
    """Storage of online private keys, keyed by the TUF key id.

    Every method either completes or changes nothing. Arguments are checked first (`InvalidRequestError`);
    a database that cannot be reached raises `KeyStoreUnavailableError`.
    """

    @abc.abstractmethod
    def migrate(self) -> None:
        """Bring the storage schema up to date. Idempotent and safe to run from several replicas at once."""

    @abc.abstractmethod
    def create_key(self, collection: str, role: str, algorithm: str = DEFAULT_ALGORITHM) -> KeyRecord:
        """Generate a key for (collection, role), or return the active one if there already is one.

        Concurrent calls for the same pair all return the same key: exactly one of them is stored,
        the others' freshly generated keys are discarded. `algorithm` is ignored when a key exists.
        """

    @abc.abstractmethod
    def get_active(self, collection: str, role: str) -> KeyRecord | None:
        """The active key of (collection, role), or None."""

    @abc.abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with this TUF key id, or None."""

    @abc.abstractmethod
    def list_keys(self, collection: str) -> list[KeyRecord]:
        """Every key held for the collection, oldest first."""

    @abc.abstractmethod
    def signer_for(self, key_id: str) -> Signer:
        """A `Signer` over the unwrapped private key.

        Raises `KeyNotFoundError` for an unknown id and `KeyUnwrapError` (naming the key id, never the
        secret) when the key cannot be unwrapped: wrong passphrase, unknown alias or altered row.
        """

    @abc.abstractmethod
    def claim_version(self, key_id: str, version: int) -> None:
        """Record that the key is about to sign metadata `version`, atomically across replicas.

        Raises `RollbackRefusedError` (recording nothing) if the key already claimed a higher version;
        the same version may be claimed again. `KeyNotFoundError` for an unknown id.
        """

    @abc.abstractmethod
    def delete_key(self, key_id: str) -> bool:
        """Delete the key; True if it existed. A later `create_key` for its pair makes a new key."""

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""

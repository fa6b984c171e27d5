"""The key store contract: where the signer keeps the online keys of every collection.

Implementations (`SqlKeyStore`: keys wrapped in a SQL database; `Pkcs11KeyStore`: keys inside a PKCS#11
token) generate keys inside the signer and never return private bytes; callers get public key records and
`Signer` objects. Both keep the key catalog, the version high-water marks and the audit in SQL
(`catalog.CatalogKeyStore`), so that replicas share them.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from securesystemslib.signer import Signer, SSlibKey

from tufnotary.signer.claims import Claim
from tufnotary.signer.errors import InvalidRequestError, SignerError

ROLES = ("timestamp", "snapshot")
STATES = ("active", "pending", "retired")
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
    state: str = field(default="active", compare=False)
    max_signed_version: int = field(default=0, compare=False)

    def to_sslib_key(self) -> SSlibKey:
        return SSlibKey(self.key_id, self.keytype, self.scheme, {"public": self.public})


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only signature audit: who had which key sign which version of what."""

    signed_at: str
    key_id: str
    collection: str
    role: str
    version: int
    payload_sha256: str
    client_subject: str


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

    def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with this TUF key id, or None."""
        return self.get_keys([key_id]).get(key_id)

    @abc.abstractmethod
    def get_keys(self, key_ids: Iterable[str]) -> dict[str, KeyRecord]:
        """The keys with these ids that exist, by id, read in one go."""

    @abc.abstractmethod
    def list_keys(self, collection: str) -> list[KeyRecord]:
        """Every key held for the collection, oldest first."""

    @abc.abstractmethod
    def signer_for(self, key_id: str) -> Signer:
        """A `Signer` over the unwrapped private key.

        Raises `KeyNotFoundError` for an unknown id and `KeyUnwrapError` (naming the key id, never the
        secret) when the key cannot be unwrapped: wrong passphrase, unknown alias or altered row.
        The signer may come from a per-process cache, dropped when this store retires, deletes or
        rotates the key out; a key retired by *another* replica may still be handed out here, and
        `record_signature` — which must precede every signature — refuses it.
        """

    def signers_for(self, key_ids: Iterable[str]) -> dict[str, Signer | Exception]:
        """`signer_for` of each distinct key, by id: its signer, or the exception `signer_for` raised for it.
        One call for a whole batch (a timed or remote store counts one operation, not one per item)."""
        found: dict[str, Signer | Exception] = {}
        for key_id in key_ids:
            if key_id not in found:
                try:
                    found[key_id] = self.signer_for(key_id)
                except Exception as e:  # noqa: BLE001 - reported for this key's items only
                    found[key_id] = e
        return found

    @abc.abstractmethod
    def rotate_key(self, collection: str, role: str, algorithm: str = DEFAULT_ALGORITHM) -> KeyRecord:
        """Start a rotation: a new *pending* key for (collection, role), or the pending one if there is one.

        The pending key's high-water mark starts at the active key's. Its first accepted signature
        (`record_signature`) promotes it to active and retires the previous active key, atomically.
        With no active key this is `create_key`.
        """

    @abc.abstractmethod
    def retire_key(self, key_id: str) -> bool:
        """Retire an active or pending key: it never signs again and its private half is destroyed;
        the public record stays listed. True if the key existed and was not already retired."""

    def record_signature(self, key_id: str, version: int, payload_sha256: str, client_subject: str) -> None:
        """Claim `version` for the key and append the audit row, atomically across replicas; call it
        before signing, so that every signature handed out has its audit row.

        Raises `VersionAlreadySignedError` / `RollbackRefusedError` (recording nothing) unless `version`
        is above every version the key signed (for a pending key: also above the active key's), `KeyRetiredError`
        for a retired key and `KeyNotFoundError` for an unknown one. Promotes a pending key (see `rotate_key`).
        """
        error = self.record_signatures([Claim(key_id, version, payload_sha256)], client_subject)[0]
        if error is not None:
            raise error

    @abc.abstractmethod
    def record_signatures(self, claims: Sequence[Claim], client_subject: str) -> list[SignerError | None]:
        """`record_signature` for many claims in one transaction: each claim's outcome, in order (None:
        recorded; else the error `record_signature` would raise). A claim naming a collection and role that are
        not its key's is `InvalidRequestError` (checked after `KeyNotFoundError`, before anything else). Claims
        are decided one after another (`claims.decide`): a refused one records nothing and does not affect the
        others. The accepted ones commit together; if the transaction fails (`KeyStoreUnavailableError`, raised)
        none is recorded.
        """

    @abc.abstractmethod
    def audit_entries(self, key_id: str | None = None, collection: str | None = None) -> list[AuditEntry]:
        """Audit rows, oldest first, optionally only for one key or one collection."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise `KeyStoreUnavailableError` unless the store (database, token) answers now."""

    @abc.abstractmethod
    def delete_key(self, key_id: str) -> bool:
        """Delete the key; True if it existed. A later `create_key` for its pair makes a new key."""

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""

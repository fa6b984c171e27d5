"""The signer's error tree: every refusal has a stable `code` and a message an operator can act on.

Errors know nothing of gRPC; `service.py` maps them to status codes in one table.
"""

from __future__ import annotations


class SignerError(Exception):
    """Base of every error the signer reports."""

    code = "SIGNER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SignerError):
    """The signer's configuration is missing or unusable."""

    code = "CONFIG_INVALID"


class InvalidRequestError(SignerError):
    """A request argument is malformed (empty collection, unknown role or algorithm...)."""

    code = "INVALID_REQUEST"


class KeyNotFoundError(SignerError):
    """No key with that id (or no active key for that collection and role)."""

    code = "KEY_NOT_FOUND"


class KeyUnwrapError(SignerError):
    """A stored private key could not be unwrapped: wrong passphrase, or the row was altered."""

    code = "KEY_UNWRAP_FAILED"


class PolicyRefusedError(SignerError):
    """The payload is well-formed TUF metadata, but the signing policy forbids signing it."""

    code = "POLICY_REFUSED"


class ExpiryTooLongError(PolicyRefusedError):
    """The payload expires later than the configured maximum window for its role allows."""

    code = "EXPIRY_TOO_LONG"


class KeyRetiredError(PolicyRefusedError):
    """The key was retired (or destroyed): it never signs again."""

    code = "KEY_RETIRED"


class VersionRefusedError(SignerError):
    """The key already signed this version or a higher one; `highest` is its high-water mark."""

    code = "VERSION_REFUSED"

    def __init__(self, message: str, highest: int) -> None:
        super().__init__(message)
        self.highest = highest


class RollbackRefusedError(VersionRefusedError):
    """The key already signed a higher version of its role's metadata."""

    code = "ROLLBACK_REFUSED"


class VersionAlreadySignedError(VersionRefusedError):
    """The key already signed exactly this version (usually: another publish won the race for it)."""

    code = "VERSION_ALREADY_SIGNED"


class ClientNotAllowedError(SignerError):
    """The client certificate is from the trusted CA, but its subject is not on the allow-list."""

    code = "CLIENT_NOT_ALLOWED"


class KeyStoreUnavailableError(SignerError):
    """The key database could not be reached or failed."""

    code = "KEYSTORE_UNAVAILABLE"

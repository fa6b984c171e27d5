"""The client's error tree: every failure a user can act on, with a stable code and exit status.

Only `cli.py` turns these into output; the library raises them and never prints.
Exit statuses: 1 usage/local problems, 3 verification failures (the artifact or metadata
must not be trusted), 4 server or network problems, 5 registry unreachable, 6 registry refusal.
The OCI commands refine verification failures (`DETAILED_EXIT_STATUS`): 10 tag not signed,
11 tag moved to other content, 12 metadata expired, 13 rollback detected.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the client reports to a user."""

    code = "CLIENT_ERROR"
    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ClientError):
    """A bad argument: a malformed collection or target name, digest, JSON..."""

    code = "USAGE"


class NotInitializedError(ClientError):
    code = "NOT_INITIALIZED"


class AlreadyInitializedError(ClientError):
    code = "ALREADY_INITIALIZED"


class KeyNotFoundError(ClientError):
    code = "KEY_NOT_FOUND"


class PassphraseError(ClientError):
    code = "PASSPHRASE"


class RootMismatchError(ClientError):
    """A root given with --root does not match the one already pinned."""

    code = "ROOT_MISMATCH"
    exit_status = 3


class VerificationError(ClientError):
    """Metadata or an artifact failed TUF verification: do not trust it."""

    code = "VERIFICATION_FAILED"
    exit_status = 3


class TargetNotFoundError(VerificationError):
    code = "TARGET_NOT_SIGNED"


class ContentMismatchError(VerificationError):
    code = "CONTENT_DIFFERS"


class MetadataExpiredError(VerificationError):
    code = "METADATA_EXPIRED"


class RollbackError(VerificationError):
    code = "ROLLBACK_DETECTED"


class ServerUnreachableError(ClientError):
    code = "SERVER_UNREACHABLE"
    exit_status = 4


class ServerError(ClientError):
    """The server refused a request; `server_code` is the code from its error body."""

    code = "SERVER_ERROR"
    exit_status = 4

    def __init__(
        self, message: str, server_code: str = "UNKNOWN", status: int = 0, detail: Any = None
    ) -> None:
        super().__init__(message)
        self.server_code = server_code
        self.status = status
        self.detail = detail


class TagMovedError(ContentMismatchError):
    """A registry tag now names other content than the digest signed for it."""

    code = "TAG_MOVED"


class RegistryUnreachableError(ClientError):
    """An OCI registry could not be reached (connection refused, DNS, timeout)."""

    code = "REGISTRY_UNREACHABLE"
    exit_status = 5


class RegistryError(ClientError):
    """An OCI registry refused a request (authentication, unknown manifest, protocol error)."""

    code = "REGISTRY_ERROR"
    exit_status = 6

    def __init__(self, message: str, status: int = 0, registry_code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.registry_code = registry_code


class CredentialHelperError(ClientError):
    """A Docker credential helper named in the Docker config file is missing or failed."""

    code = "CREDENTIAL_HELPER"


class RegistryIntegrityError(VerificationError):
    """A registry served bytes that do not match the digest they were asked for or announced."""

    code = "REGISTRY_DIGEST_MISMATCH"


# The OCI commands (`verify REF`, `verify REF --bundle`, `audit`) tell *why* verification failed
# in their exit status; `verify COLLECTION TARGET FILE` keeps 3 for every verification failure.
DETAILED_EXIT_STATUS: dict[type[ClientError], int] = {
    TargetNotFoundError: 10,  # the tag is not signed (by the required roles)
    TagMovedError: 11,  # the tag names other content than the signed digest
    MetadataExpiredError: 12,
    RollbackError: 13,
}


def detailed_exit_status(error: ClientError) -> int:
    """The exit status of `error` for the OCI commands (see DETAILED_EXIT_STATUS)."""
    for cls in type(error).__mro__:
        if cls in DETAILED_EXIT_STATUS:
            return DETAILED_EXIT_STATUS[cls]
    return error.exit_status

"""The client's error tree: every failure a user can act on, with a stable code and exit status.

Only `cli.py` turns these into output; the library raises them and never prints.
Exit statuses: 1 usage/local problems, 3 verification failures (the artifact or metadata
must not be trusted), 4 server or network problems.
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

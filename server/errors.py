"""The server's error tree: every refusal has a stable code, a message and an HTTP status.

Domain errors know nothing of Flask; `api.py` (and `fastread.py`) answer any `ServerError` with
its `body()`, `{"errors": [{"code", "message", "detail"}]}`, its `http_status` and `headers`.
"""

from __future__ import annotations

import json
from typing import Any


class ServerError(Exception):
    """Base of every error the server reports to a client."""

    code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers: dict[str, str] = {}
        """HTTP headers the answer carries (a bearer challenge, Retry-After)."""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def body(self) -> bytes:
        """The JSON answer: `{"errors": [{"code", "message", "detail"}]}`."""
        return json.dumps({"errors": [self.to_dict()]}, separators=(",", ":"), default=str).encode() + b"\n"


class ValidationError(ServerError):
    """Uploaded metadata breaks a TUF rule; the subclasses say which kind."""

    code = "METADATA_INVALID"
    http_status = 400


class MalformedMetadataError(ValidationError):
    code = "METADATA_MALFORMED"


class BadSignatureError(ValidationError):
    code = "SIGNATURE_INVALID"


class BadVersionError(ValidationError):
    code = "VERSION_INVALID"


class ExpiredMetadataError(ValidationError):
    code = "METADATA_EXPIRED"


class BadRoleError(ValidationError):
    code = "ROLE_INVALID"


class MissingRoleError(ValidationError):
    code = "ROLE_MISSING"


class OnlineKeyError(ValidationError):
    """The root does not let the server sign a role it is expected to sign."""

    code = "ONLINE_KEY_MISMATCH"


class InvalidCollectionError(ServerError):
    code = "NAME_INVALID"
    http_status = 400


class UploadTooLargeError(ServerError):
    code = "UPLOAD_TOO_LARGE"
    http_status = 413


class NotFoundError(ServerError):
    code = "METADATA_NOT_FOUND"
    http_status = 404


class VersionConflictError(ServerError):
    """Another publish to the same collection won; nothing of this one was stored."""

    code = "VERSION_CONFLICT"
    http_status = 409


class SignerUnavailableError(ServerError):
    """The signer could not be reached or did not answer in time."""

    code = "SIGNER_UNAVAILABLE"
    http_status = 503


class SignerRefusedError(ServerError):
    """The signer answered but refused or failed the request."""

    code = "SIGNER_REFUSED"
    http_status = 502


class StorageError(ServerError):
    code = "STORAGE_UNAVAILABLE"
    http_status = 503


class CommitInDoubtError(StorageError):
    """The database connection broke while a COMMIT was in flight: the change may or may not be stored."""


class UnauthorizedError(ServerError):
    """No token, or a token that does not verify (signature, issuer, audience, time, algorithm)."""

    code = "UNAUTHORIZED"
    http_status = 401


class DeniedError(ServerError):
    """A valid token that does not grant the action on the resource."""

    code = "DENIED"
    http_status = 403


class TooManyRequestsError(ServerError):
    """The client sent more requests than its rate limit allows; retry after `Retry-After` seconds."""

    code = "TOO_MANY_REQUESTS"
    http_status = 429


class BadRequestError(ServerError):
    """A query parameter or a token request that does not parse."""

    code = "REQUEST_INVALID"
    http_status = 400

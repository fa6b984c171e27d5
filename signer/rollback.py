"""What the signer checks in a payload before signing it: that it is the `signed` part of TUF metadata
of the key's own role, and which version it is (the key store refuses versions lower than one signed)."""

from __future__ import annotations

import json

from tufnotary.signer.errors import InvalidRequestError


def metadata_version(payload: bytes, role: str) -> int:
    """The `version` of the TUF `signed` object in `payload`, which must be of type `role`."""
    try:
        signed = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(f"the payload is not JSON: the signer only signs TUF {role} metadata") from None
    if not isinstance(signed, dict) or signed.get("_type") != role:
        found = signed.get("_type") if isinstance(signed, dict) else type(signed).__name__
        raise InvalidRequestError(f"a {role} key only signs {role} metadata, not {found!r}")
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidRequestError(f"the {role} metadata has no valid version (a positive integer)")
    return version

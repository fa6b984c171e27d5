"""`RemoteSigner`: the metadata server's handle on the signer's online keys, over gRPC with mutual TLS.

It holds no private bytes. Every call carries a deadline; failures map to `SignerUnavailableError`
(unreachable, deadline, TLS) or `SignerRefusedError` (the signer answered with an error, or with
something that does not check out: a key whose id is not its TUF key id, a signature that does not verify).
The channel is opened on first use and reopened after a fork, so it is safe to build before gunicorn forks.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any
from pathlib import Path

import grpc
from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, SSlibKey

from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server.errors import SignerRefusedError, SignerUnavailableError

_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def tuf_key_id(keytype: str, scheme: str, public: str) -> str:
    """The TUF key id: SHA-256 of the canonical JSON of the key."""
    canonical = encode_canonical({"keytype": keytype, "scheme": scheme, "keyval": {"public": public}})
    assert isinstance(canonical, str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RemoteSigner:
    """Keys and signatures from the signer at `address` ("host:port")."""

    def __init__(
        self,
        address: str,
        ca_cert_path: str | Path,
        client_cert_path: str | Path,
        client_key_path: str | Path,
        timeout: float = 5.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._tls_paths = (Path(ca_cert_path), Path(client_cert_path), Path(client_key_path))
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: signer_pb2_grpc.SignerStub | None = None
        self._pid = 0

    def create_key(self, collection: str, role: str, algorithm: str = "") -> SSlibKey:
        """The active key of (collection, role), created if there is none (empty algorithm: ed25519)."""
        request = signer_pb2.CreateKeyRequest(collection=collection, role=role, algorithm=algorithm)
        return self._checked_key(self._call("CreateKey", request))

    def get_public_key(self, collection: str, role: str) -> SSlibKey | None:
        """The active key of (collection, role), or None if the signer has none."""
        request = signer_pb2.GetPublicKeyRequest(collection=collection, role=role)
        try:
            return self._checked_key(self._call("GetPublicKey", request))
        except _NotFound:
            return None

    def list_keys(self, collection: str) -> list[SSlibKey]:
        response = self._call("ListKeys", signer_pb2.ListKeysRequest(collection=collection))
        return [self._checked_key(k) for k in response.keys]

    def sign(self, key: Key, payload: bytes) -> Signature:
        """A signature over `payload` by `key`, verified here before it is returned."""
        response = self._call("Sign", signer_pb2.SignRequest(key_id=key.keyid, payload=payload))
        if response.key_id != key.keyid:
            raise SignerRefusedError(
                "the signer signed with another key than requested",
                {"requested": key.keyid, "returned": response.key_id},
            )
        signature = Signature(key.keyid, response.signature)
        try:
            key.verify_signature(signature, payload)
        except (UnverifiedSignatureError, VerificationError, ValueError):
            raise SignerRefusedError(
                "the signer returned a signature that does not verify", {"key_id": key.keyid}
            ) from None
        return signature

    def delete_key(self, key_id: str) -> bool:
        """Delete a key on the signer; False if it held no such key."""
        try:
            self._call("DeleteKey", signer_pb2.DeleteKeyRequest(key_id=key_id))
        except _NotFound:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None

    def __enter__(self) -> "RemoteSigner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_stub(self) -> signer_pb2_grpc.SignerStub:
        with self._lock:
            if self._stub is None or self._pid != os.getpid():
                # A channel inherited across fork is unusable in the child; open our own.
                self._channel = grpc.secure_channel(self.address, self._credentials())
                self._stub = signer_pb2_grpc.SignerStub(self._channel)
                self._pid = os.getpid()
            return self._stub

    def _credentials(self) -> grpc.ChannelCredentials:
        try:
            ca, cert, key = (p.read_bytes() for p in self._tls_paths)
        except OSError as e:
            raise SignerUnavailableError(
                f"cannot read the signer TLS files: {e.strerror}", {"path": e.filename}
            ) from None
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def _call(self, method: str, request: object) -> Any:
        stub = self._get_stub()
        try:
            return getattr(stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()  # type: ignore[attr-defined]
            details: str = e.details() or ""  # type: ignore[attr-defined]
            if code == grpc.StatusCode.NOT_FOUND:
                raise _NotFound(method, details) from None
            if code in _UNAVAILABLE:
                raise SignerUnavailableError(
                    f"the signer at {self.address} is unavailable",
                    {"method": method, "status": code.name, "detail": details},
                ) from None
            raise SignerRefusedError(
                f"the signer refused {method}: {details}", {"method": method, "status": code.name}
            ) from None

    def _checked_key(self, message: signer_pb2.PublicKey) -> SSlibKey:
        expected = tuf_key_id(message.keytype, message.scheme, message.public)
        if message.key_id != expected:
            raise SignerRefusedError(
                "the signer returned a key whose id is not its TUF key id",
                {"returned": message.key_id, "computed": expected},
            )
        try:
            return SSlibKey(message.key_id, message.keytype, message.scheme, {"public": message.public})
        except ValueError:
            raise SignerRefusedError("the signer returned a malformed key", {"key_id": message.key_id}) from None


class _NotFound(SignerRefusedError):
    """NOT_FOUND from the signer; callers that expect it turn it into None/False."""

    def __init__(self, method: str, details: str) -> None:
        super().__init__(f"the signer refused {method}: {details}", {"method": method, "status": "NOT_FOUND"})

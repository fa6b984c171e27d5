"""`SignerServicer`: the gRPC face of a `KeyStore` (tufnotary.signer.v1.Signer), and the health service.

Each error class maps to one gRPC status in `_STATUS`; messages are meant for the operator of the
metadata server. A key signs only metadata of its own role, never a lower version than it already signed. Signatures are logged with key id, collection, role and payload SHA-256 only.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.signer.errors import (
    ConfigError,
    InvalidRequestError,
    KeyNotFoundError,
    KeyStoreUnavailableError,
    KeyUnwrapError,
    RollbackRefusedError,
    SignerError,
)
from tufnotary.signer.keystore import KeyRecord, KeyStore
from tufnotary.signer.rollback import metadata_version

log = logging.getLogger(__name__)

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["Signer"].full_name

_STATUS: dict[type[SignerError], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    KeyNotFoundError: grpc.StatusCode.NOT_FOUND,
    KeyUnwrapError: grpc.StatusCode.FAILED_PRECONDITION,
    RollbackRefusedError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    KeyStoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
}

T = TypeVar("T")


def _status_for(error: SignerError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return grpc.StatusCode.INTERNAL


def _public_key(record: KeyRecord) -> signer_pb2.PublicKey:
    return signer_pb2.PublicKey(
        key_id=record.key_id,
        collection=record.collection,
        role=record.role,
        keytype=record.keytype,
        scheme=record.scheme,
        public=record.public,
    )


class SignerServicer(signer_pb2_grpc.SignerServicer):
    """Serves one `KeyStore`."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore

    def _run(self, context: grpc.ServicerContext, method: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except SignerError as e:
            log.warning("%s refused: %s: %s", method, e.code, e.message)
            context.abort(_status_for(e), f"{e.code}: {e.message}")
        except Exception:
            log.exception("%s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, "internal signer error; see the signer's log")
        raise AssertionError("context.abort returned")  # abort always raises

    def CreateKey(self, request: signer_pb2.CreateKeyRequest, context: grpc.ServicerContext) -> signer_pb2.PublicKey:
        def call() -> signer_pb2.PublicKey:
            record = self._keystore.create_key(request.collection, request.role, request.algorithm)
            log.info("key key_id=%s collection=%s role=%s", record.key_id, record.collection, record.role)
            return _public_key(record)

        return self._run(context, "CreateKey", call)

    def GetPublicKey(
        self, request: signer_pb2.GetPublicKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.PublicKey:
        def call() -> signer_pb2.PublicKey:
            record = self._keystore.get_active(request.collection, request.role)
            if record is None:
                raise KeyNotFoundError(f"no {request.role} key for collection {request.collection}")
            return _public_key(record)

        return self._run(context, "GetPublicKey", call)

    def ListKeys(
        self, request: signer_pb2.ListKeysRequest, context: grpc.ServicerContext
    ) -> signer_pb2.ListKeysResponse:
        def call() -> signer_pb2.ListKeysResponse:
            records = self._keystore.list_keys(request.collection)
            return signer_pb2.ListKeysResponse(keys=[_public_key(r) for r in records])

        return self._run(context, "ListKeys", call)

    def Sign(self, request: signer_pb2.SignRequest, context: grpc.ServicerContext) -> signer_pb2.SignResponse:
        def call() -> signer_pb2.SignResponse:
            record = self._keystore.get_key(request.key_id)
            if record is None:
                raise KeyNotFoundError(f"the signer holds no key {request.key_id}")
            version = metadata_version(request.payload, record.role)
            signer = self._keystore.signer_for(request.key_id)
            self._keystore.claim_version(request.key_id, version)
            signature = signer.sign(request.payload)
            log.info(
                "signed key_id=%s collection=%s role=%s version=%d payload_sha256=%s",
                record.key_id, record.collection, record.role, version, hashlib.sha256(request.payload).hexdigest(),
            )
            return signer_pb2.SignResponse(key_id=signature.keyid, signature=signature.signature)

        return self._run(context, "Sign", call)

    def DeleteKey(
        self, request: signer_pb2.DeleteKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.DeleteKeyResponse:
        def call() -> signer_pb2.DeleteKeyResponse:
            if not self._keystore.delete_key(request.key_id):
                raise KeyNotFoundError(f"the signer holds no key {request.key_id}")
            log.info("deleted key_id=%s", request.key_id)
            return signer_pb2.DeleteKeyResponse()

        return self._run(context, "DeleteKey", call)


def add_health(server: grpc.Server) -> health.HealthServicer:
    """Register the standard health service, reporting SERVING overall and for the Signer service."""
    servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer

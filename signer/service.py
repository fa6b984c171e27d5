"""`SignerServicer`: the gRPC face of a `KeyStore` (tufnotary.signer.v1.Signer).

Every call first checks the client certificate's subject against the allow-list. A signature is
made only after the signing policy (`policy.check_metadata`) accepted the payload and the key store
checked, under the key's row lock, that the request names the key's collection and role and recorded the
version and the audit row (`KeyStore.record_signatures`: a batch claims a slice of items in one
transaction). Each error class maps to one gRPC status in `_STATUS`. Logs carry key ids, versions and
payload digests, never payloads or secrets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TypeVar

import grpc
from securesystemslib.signer import Signature, Signer

from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.signer import metrics
from tufnotary.signer.claims import Claim, binding_error
from tufnotary.signer.errors import (
    ClientNotAllowedError,
    ConfigError,
    InvalidRequestError,
    KeyNotFoundError,
    KeyStoreUnavailableError,
    KeyUnwrapError,
    PolicyRefusedError,
    SignerError,
    VersionRefusedError,
)
from tufnotary.signer.health import Readiness
from tufnotary.signer.keystore import KeyRecord, KeyStore
from tufnotary.signer.logs import bind_request_id
from tufnotary.signer.policy import CheckedPayload, SigningPolicy, check_metadata

log = logging.getLogger(__name__)

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["Signer"].full_name
HIGHEST_SIGNED_METADATA = "tufnotary-highest-signed-version"
MAX_BATCH = 10_000
# Batch items claimed per transaction: row locks stay short and a cancelled call stops claiming soon.
CLAIMS_PER_TRANSACTION = 200

_STATUS: dict[type[SignerError], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    KeyNotFoundError: grpc.StatusCode.NOT_FOUND,
    KeyUnwrapError: grpc.StatusCode.FAILED_PRECONDITION,
    PolicyRefusedError: grpc.StatusCode.FAILED_PRECONDITION,
    VersionRefusedError: grpc.StatusCode.ABORTED,
    ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    ClientNotAllowedError: grpc.StatusCode.PERMISSION_DENIED,
    KeyStoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
}

T = TypeVar("T")


def status_for(error: SignerError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return grpc.StatusCode.INTERNAL


def client_subject(context: grpc.ServicerContext) -> str:
    """The subject of the client certificate (RFC 2253, as gRPC reports it), or '' if there is none."""
    auth = context.auth_context()
    for name in ("x509_subject", "x509_common_name"):
        values = auth.get(name)
        if values:
            value = values[0]
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            return text if name == "x509_subject" else f"CN={text}"
    return ""


def _public_key(record: KeyRecord) -> signer_pb2.PublicKey:
    return signer_pb2.PublicKey(
        key_id=record.key_id,
        collection=record.collection,
        role=record.role,
        keytype=record.keytype,
        scheme=record.scheme,
        public=record.public,
        state=record.state,
        max_signed_version=record.max_signed_version,
    )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SignerServicer(signer_pb2_grpc.SignerServicer):
    """Serves one `KeyStore` under one `SigningPolicy`."""

    def __init__(
        self,
        keystore: KeyStore,
        policy: SigningPolicy | None = None,
        allowed_subjects: tuple[str, ...] = (),
        readiness: Readiness | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._keystore = keystore
        self._policy = policy or SigningPolicy()
        self._allowed = frozenset(allowed_subjects)
        self._readiness = readiness
        self._clock = clock

    # -- plumbing --------------------------------------------------------------------------------

    def _authorize(self, context: grpc.ServicerContext) -> str:
        subject = client_subject(context)
        if self._allowed and subject not in self._allowed:
            raise ClientNotAllowedError(f"client certificate subject {subject!r} is not allowed to use this signer")
        return subject

    def _refused(self, method: str, error: SignerError) -> None:
        metrics.refusals.labels(method, error.code).inc()
        log.warning("%s refused: %s: %s", method, error.code, error.message)
        if isinstance(error, KeyStoreUnavailableError) and self._readiness is not None:
            self._readiness.mark_unavailable(error.message)

    def _run(self, context: grpc.ServicerContext, method: str, call: Callable[[str], T], timed: bool = True) -> T:
        bind_request_id(context.invocation_metadata())
        started = time.perf_counter()
        try:
            return call(self._authorize(context))
        except SignerError as e:
            self._refused(method, e)
            if isinstance(e, VersionRefusedError):
                context.set_trailing_metadata(((HIGHEST_SIGNED_METADATA, str(e.highest)),))
            context.abort(status_for(e), f"{e.code}: {e.message}")
        except Exception:
            log.exception("%s failed", method)
            metrics.refusals.labels(method, "INTERNAL").inc()
            context.abort(grpc.StatusCode.INTERNAL, "internal signer error; see the signer's log")
        finally:
            if timed:
                metrics.rpc_timer(method).observe(time.perf_counter() - started)
        raise AssertionError("context.abort returned")  # abort always raises

    # -- key lifecycle -----------------------------------------------------------------------------

    def CreateKey(self, request: signer_pb2.CreateKeyRequest, context: grpc.ServicerContext) -> signer_pb2.PublicKey:
        def call(subject: str) -> signer_pb2.PublicKey:
            record = self._keystore.create_key(request.collection, request.role, request.algorithm)
            log.info("key key_id=%s collection=%s role=%s", record.key_id, record.collection, record.role)
            return _public_key(record)

        return self._run(context, "CreateKey", call)

    def RotateKey(self, request: signer_pb2.RotateKeyRequest, context: grpc.ServicerContext) -> signer_pb2.PublicKey:
        def call(subject: str) -> signer_pb2.PublicKey:
            record = self._keystore.rotate_key(request.collection, request.role, request.algorithm)
            log.info(
                "rotate key_id=%s collection=%s role=%s state=%s client=%s",
                record.key_id, record.collection, record.role, record.state, subject,
            )
            return _public_key(record)

        return self._run(context, "RotateKey", call)

    def GetPublicKey(
        self, request: signer_pb2.GetPublicKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.PublicKey:
        def call(subject: str) -> signer_pb2.PublicKey:
            record = self._keystore.get_active(request.collection, request.role)
            if record is None:
                raise KeyNotFoundError(f"no {request.role} key for collection {request.collection}")
            return _public_key(record)

        return self._run(context, "GetPublicKey", call)

    def ListKeys(
        self, request: signer_pb2.ListKeysRequest, context: grpc.ServicerContext
    ) -> signer_pb2.ListKeysResponse:
        def call(subject: str) -> signer_pb2.ListKeysResponse:
            records = self._keystore.list_keys(request.collection)
            return signer_pb2.ListKeysResponse(keys=[_public_key(r) for r in records])

        return self._run(context, "ListKeys", call)

    def RetireKey(
        self, request: signer_pb2.RetireKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.RetireKeyResponse:
        def call(subject: str) -> signer_pb2.RetireKeyResponse:
            if not self._keystore.retire_key(request.key_id):
                if self._keystore.get_key(request.key_id) is None:
                    raise KeyNotFoundError(f"the signer holds no key {request.key_id}")
            log.info("retired key_id=%s client=%s", request.key_id, subject)
            return signer_pb2.RetireKeyResponse()

        return self._run(context, "RetireKey", call)

    def DeleteKey(
        self, request: signer_pb2.DeleteKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.DeleteKeyResponse:
        def call(subject: str) -> signer_pb2.DeleteKeyResponse:
            if not self._keystore.delete_key(request.key_id):
                raise KeyNotFoundError(f"the signer holds no key {request.key_id}")
            log.info("deleted key_id=%s client=%s", request.key_id, subject)
            return signer_pb2.DeleteKeyResponse()

        return self._run(context, "DeleteKey", call)

    # -- signing -------------------------------------------------------------------------------------

    def _sign_items(
        self, items: Sequence[signer_pb2.SignRequest], subject: str, signed_level: int = logging.INFO
    ) -> list[Signature | Exception]:
        """Each item's signature, or the exception that refused it, in order: the policy per payload, the signers
        of the accepted payloads' keys, then one transaction claiming every accepted version (`record_signatures`:
        it reads the keys under lock, checks that each request names its key's collection and role, and decides
        as one claim after another would), and only then the signatures. An item refused before its claim
        reports what Sign would have checked first (`_refusals`). Each signature is logged at `signed_level`."""
        results: list[Signature | Exception | None] = [None] * len(items)
        now, policy = self._clock(), self._policy
        early: dict[int, Exception] = {}  # refused before the claim: by the policy or when unwrapping
        # Each accepted item's fields, read from the message once (every read of a field makes a new object).
        accepted: list[tuple[int, str, str, str, bytes, CheckedPayload]] = []
        for index, item in enumerate(items):
            role, payload = item.role, item.payload
            try:
                checked = check_metadata(policy, role, payload, now)
            except Exception as e:  # noqa: BLE001 - reported for this item only
                early[index] = e
                continue
            accepted.append((index, item.key_id, item.collection, role, payload, checked))
        # Unwrap before claiming, so that a failure changes nothing.
        try:
            signers = self._keystore.signers_for([entry[1] for entry in accepted]) if accepted else {}
        except Exception as e:  # noqa: BLE001 - every accepted item reports it
            signers = {entry[1]: e for entry in accepted}
        ready: list[tuple[tuple[int, str, str, str, bytes, CheckedPayload], Signer]] = []
        claims: list[Claim] = []
        for entry in accepted:
            index, key_id, collection, role, _, checked = entry
            signer = signers[key_id]
            if isinstance(signer, Exception):
                early[index] = signer
            else:
                ready.append((entry, signer))
                claims.append(Claim(key_id, checked.version, checked.sha256, collection, role))
        try:
            outcomes: Sequence[Exception | None] = (
                self._keystore.record_signatures(claims, subject) if claims else []
            )
        except Exception as e:  # noqa: BLE001 - nothing was recorded: every claimed item reports it
            outcomes = [e] * len(claims)
        if early:
            for index, error in self._refusals(items, early).items():
                results[index] = error
        signed: dict[tuple[str, str], int] = {}  # signatures by (role, scheme): one metric update per slice
        log_each = log.isEnabledFor(signed_level)
        for ((index, key_id, collection, role, payload, checked), signer), outcome in zip(ready, outcomes):
            if outcome is not None:
                results[index] = outcome
                continue
            try:
                results[index] = signer.sign(payload)
            except Exception as e:  # noqa: BLE001 - reported for this item only
                results[index] = e
                continue
            label = (role, signer.public_key.scheme)
            signed[label] = signed.get(label, 0) + 1
            if log_each:
                log.log(
                    signed_level,
                    "signed key_id=%s collection=%s role=%s version=%d payload_sha256=%s",
                    key_id, collection, role, checked.version, checked.sha256,
                )
        for (role, scheme), count in signed.items():
            metrics.signature_counter(role, scheme).inc(count)
        return results  # type: ignore[return-value]  # every index was filled

    def _refusals(self, items: Sequence[signer_pb2.SignRequest], early: dict[int, Exception]) -> dict[int, Exception]:
        """What each item refused before its claim reports, checked in Sign's order: an unknown key, then a
        request naming another collection or role than the key's, then the refusal it got (one read of their keys)."""
        try:
            records = self._keystore.get_keys(items[index].key_id for index in early)
        except Exception as e:  # noqa: BLE001 - every such item reports it
            return dict.fromkeys(early, e)
        refusals: dict[int, Exception] = {}
        for index, error in early.items():
            item = items[index]
            record = records.get(item.key_id)
            if record is None:
                refusals[index] = KeyNotFoundError(f"the signer holds no key {item.key_id}")
            else:
                refusals[index] = binding_error(
                    record.key_id, record.collection, record.role, item.collection, item.role
                ) or error
        return refusals

    def Sign(self, request: signer_pb2.SignRequest, context: grpc.ServicerContext) -> signer_pb2.SignResponse:
        def call(subject: str) -> signer_pb2.SignResponse:
            result = self._sign_items([request], subject)[0]
            if isinstance(result, Exception):
                raise result
            return signer_pb2.SignResponse(key_id=result.keyid, signature=result.signature)

        return self._run(context, "Sign", call)

    def SignBatch(
        self, request: signer_pb2.SignBatchRequest, context: grpc.ServicerContext
    ) -> Iterator[signer_pb2.SignBatchResult]:
        for start, results in self._sign_batch(request, context, "SignBatch"):
            for offset, result in enumerate(results):
                message = signer_pb2.SignBatchResult()
                self._fill_result(message, start + offset, result)
                yield message

    def SignBatchGrouped(
        self, request: signer_pb2.SignBatchRequest, context: grpc.ServicerContext
    ) -> Iterator[signer_pb2.SignBatchResults]:
        for start, results in self._sign_batch(request, context, "SignBatchGrouped"):
            group = signer_pb2.SignBatchResults()
            add = group.results.add
            for index, result in enumerate(results, start):
                self._fill_result(add(), index, result)
            yield group

    def _sign_batch(
        self, request: signer_pb2.SignBatchRequest, context: grpc.ServicerContext, method: str
    ) -> Iterator[tuple[int, list[Signature | Exception]]]:
        """The index of the first item and the results of each slice of `CLAIMS_PER_TRANSACTION` items, each
        slice claimed in one transaction; a cancelled call claims no further slice."""

        def check(subject: str) -> str:
            if len(request.requests) > MAX_BATCH:
                raise InvalidRequestError(f"a batch holds at most {MAX_BATCH} payloads, not {len(request.requests)}")
            return subject

        started = time.perf_counter()
        subject = self._run(context, method, check, timed=False)
        try:
            total = len(request.requests)
            for start in range(0, total, CLAIMS_PER_TRANSACTION):
                if not context.is_active():
                    log.warning("%s cancelled by the client after %d of %d items", method, start, total)
                    return
                chunk = request.requests[start:start + CLAIMS_PER_TRANSACTION]
                # One line per slice, each signature at DEBUG: formatting a log line per item cost as much as
                # signing it. The audit table holds every signature's key, version and payload digest.
                results = self._sign_items(chunk, subject, signed_level=logging.DEBUG)
                signed = sum(isinstance(r, Signature) for r in results)
                log.info(
                    "signed batch items=%d-%d of %d signed=%d refused=%d client=%s",
                    start, start + len(chunk) - 1, total, signed, len(chunk) - signed, subject,
                )
                yield start, results
        finally:
            metrics.rpc_timer(method).observe(time.perf_counter() - started)

    def _fill_result(self, message: signer_pb2.SignBatchResult, index: int, result: Signature | Exception) -> None:
        """Write item `index`'s signature or refusal into `message` (filled in place: no message copies)."""
        message.index = index
        if isinstance(result, Signature):
            signature = message.signature
            signature.key_id, signature.signature = result.keyid, result.signature
            return
        error = message.error
        error.SetInParent()  # the error is set even if every field it gets is a default
        if isinstance(result, SignerError):
            self._refused("SignBatch item", result)
            error.code, error.grpc_status, error.message = result.code, status_for(result).value[0], result.message
            if isinstance(result, VersionRefusedError):
                error.highest_signed_version = result.highest
            return
        log.error("SignBatch item %d failed", index, exc_info=result)
        metrics.refusals.labels("SignBatch item", "INTERNAL").inc()
        error.code, error.grpc_status = "INTERNAL", grpc.StatusCode.INTERNAL.value[0]
        error.message = "internal signer error; see the signer's log"


def add_signer(server: grpc.Server, servicer: SignerServicer) -> None:
    signer_pb2_grpc.add_SignerServicer_to_server(servicer, server)

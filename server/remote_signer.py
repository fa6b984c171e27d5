"""`RemoteSigner`: the metadata server's handle on the signer's online keys, over gRPC with mutual TLS.

It holds no private bytes. Every call carries a deadline; failures map to `SignerUnavailableError`
(unreachable, deadline, TLS), `VersionConflictError` (the signer already signed this version or a
higher one with the key: another publish or renewal won the race; `detail["highest_signed_version"]`
says which version the key is at) or `SignerRefusedError` (the signer answered with another error, or with
something that does not check out: a key whose id is not its TUF key id, a signature that does not verify).
The channel is opened on first use and reopened after a fork, so it is safe to build before gunicorn forks.

Every signature request names the collection and role it is for; the signer refuses it unless they
are the key's. `sign` takes them from the key's record as last seen from the signer
(`get_public_key`, `create_key`, `list_keys`, `rotate_key`), or from its arguments.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, SSlibKey

from tufnotary.proto import signer_pb2, signer_pb2_grpc
from tufnotary.server import metrics
from tufnotary.server.errors import ServerError, SignerRefusedError, SignerUnavailableError, VersionConflictError
from tufnotary.server.logs import REQUEST_ID_METADATA, current_request_id

T = TypeVar("T")
_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
_HIGHEST_SIGNED_METADATA = "tufnotary-highest-signed-version"
# Once the signer is back, a channel in reconnect backoff keeps failing calls until its next attempt;
# gRPC's default backoff grows to 120 s. Cap it so publishes recover within a second or so.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
CALL_THREADS = 8  # calls under way at once per process for callers working meanwhile (`_start`)
BATCH_ITEMS_PER_TIMEOUT = 500  # a batch's deadline grows by one `timeout` per this many payloads


@dataclass(frozen=True)
class RemoteKeyInfo:
    """A key as the signer lists it: the public key, what it is for, and where it is in its lifecycle."""

    key: SSlibKey
    collection: str
    role: str
    state: str  # "active", "pending" or "retired"
    max_signed_version: int


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
        self._bindings: dict[str, tuple[str, str]] = {}  # key id -> (collection, role), as the signer said
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

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
        """Every key the signer holds for the collection (active, pending and retired), oldest first."""
        return [info.key for info in self.list_key_info(collection)]

    def list_key_info(self, collection: str) -> list[RemoteKeyInfo]:
        """Like `list_keys`, with each key's role and lifecycle state."""
        return self._key_info(self._call("ListKeys", signer_pb2.ListKeysRequest(collection=collection)))

    def start_list_key_info(self, collection: str) -> Pending[list[RemoteKeyInfo]]:
        """`list_key_info`, asked for now and answered by `result()`: the caller works meanwhile."""
        pending = self._start("ListKeys", signer_pb2.ListKeysRequest(collection=collection))
        return Pending(lambda: self._key_info(pending.result()), pending.cancel)

    def _key_info(self, response: signer_pb2.ListKeysResponse) -> list[RemoteKeyInfo]:
        return [
            RemoteKeyInfo(self._checked_key(k), k.collection, k.role, k.state or "active", k.max_signed_version)
            for k in response.keys
        ]

    def rotate_key(self, collection: str, role: str, algorithm: str = "") -> SSlibKey:
        """Start a rotation: the pending key of (collection, role) (see the signer's RotateKey), or the
        new active key if the pair had none. Its first signature makes it the active key."""
        request = signer_pb2.RotateKeyRequest(collection=collection, role=role, algorithm=algorithm)
        return self._checked_key(self._call("RotateKey", request))

    def retire_key(self, key_id: str) -> bool:
        """Retire a key (it never signs again); False if the signer holds no such key."""
        try:
            self._call("RetireKey", signer_pb2.RetireKeyRequest(key_id=key_id))
        except _NotFound:
            return False
        return True

    def sign(self, key: Key, payload: bytes, collection: str | None = None, role: str | None = None) -> Signature:
        """A signature over `payload` by `key`, verified here before it is returned."""
        request = self._sign_request(key, payload, collection, role)
        response = self._call("Sign", request)
        return self._checked_signature(key, payload, response)

    def _batch_results(self, stub, request, deadline: float):
        """The items' results of one batch: from SignBatchGrouped (one message per slice the signer
        commits, far cheaper than a message per item), or SignBatch from a signer that predates it."""
        try:
            for group in stub.SignBatchGrouped(request, timeout=deadline, metadata=_metadata(), wait_for_ready=True):
                yield from group.results
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise
        yield from stub.SignBatch(request, timeout=deadline, metadata=_metadata(), wait_for_ready=True)

    def sign_batch(
        self,
        items: Sequence[tuple[Key, bytes] | tuple[Key, bytes, str, str]],
        timeout: float | None = None,
    ) -> list[Signature | ServerError]:
        """Signatures for many (key, payload) or (key, payload, collection, role) items in one call, in order.

        Each item is a verified `Signature` or the error that item got (`VersionConflictError`,
        `SignerRefusedError`); a failure of the whole call (unreachable signer, deadline) raises. The
        deadline is `timeout`, by default one `self.timeout` per started 500 payloads. An item without
        collection and role takes them as `sign` does.
        """
        if not items:
            return []
        requests = [self._sign_request(item[0], item[1], *(item[2:] or (None, None))) for item in items]
        deadline = timeout or self.timeout * math.ceil(len(items) / BATCH_ITEMS_PER_TIMEOUT)
        results: list[Signature | ServerError | None] = [None] * len(items)
        stub = self._get_stub()
        started, outcome = time.perf_counter(), "ok"
        try:
            for result in self._batch_results(stub, signer_pb2.SignBatchRequest(requests=requests), deadline):
                if result.index >= len(items) or results[result.index] is not None:
                    raise SignerRefusedError("the signer answered a batch with a wrong index", {"index": result.index})
                key, payload = items[result.index][:2]
                if result.HasField("signature"):
                    try:
                        results[result.index] = self._checked_signature(key, payload, result.signature)
                    except SignerRefusedError as e:
                        results[result.index] = e
                else:
                    results[result.index] = self._batch_error(result.error)
        except grpc.RpcError as e:
            outcome = e.code().name.lower()  # type: ignore[attr-defined]
            raise self._translate("SignBatch", e) from None
        finally:
            metrics.signer_latency.labels("SignBatch", outcome).observe(time.perf_counter() - started)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise SignerRefusedError("the signer left batch items unanswered", {"missing": missing[:20]})
        return results  # type: ignore[return-value]

    def delete_key(self, key_id: str) -> bool:
        """Delete a key on the signer; False if it held no such key."""
        try:
            self._call("DeleteKey", signer_pb2.DeleteKeyRequest(key_id=key_id))
        except _NotFound:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub, self._pool = None, None, None

    def __enter__(self) -> "RemoteSigner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_stub(self) -> signer_pb2_grpc.SignerStub:
        with self._lock:
            if self._stub is None or self._pid != os.getpid():
                # A channel inherited across fork is unusable in the child; open our own.
                self._channel = grpc.secure_channel(self.address, self._credentials(), options=_CHANNEL_OPTIONS)
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

    def check_health(self, timeout: float | None = None) -> None:
        """Raise SignerUnavailableError unless the signer's gRPC health service says SERVING."""
        self._get_stub()
        with self._lock:
            channel = self._channel
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout or self.timeout,
                                  metadata=_metadata())
        except grpc.RpcError as e:
            raise SignerUnavailableError(
                f"the signer at {self.address} is unavailable",
                {"method": "Health.Check", "status": e.code().name},  # type: ignore[attr-defined]
            ) from None
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise SignerUnavailableError(
                f"the signer at {self.address} is not serving (its key store is unreachable)",
                {"method": "Health.Check", "status": health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)},
            )

    def _call(self, method: str, request: object) -> Any:
        stub = self._get_stub()
        started, outcome = time.perf_counter(), "ok"
        try:
            # wait_for_ready: a call made while the channel reconnects (a signer restart) waits for it,
            # within the deadline, instead of failing at once.
            return getattr(stub, method)(request, timeout=self.timeout, metadata=_metadata(), wait_for_ready=True)
        except grpc.RpcError as e:
            outcome = e.code().name.lower()  # type: ignore[attr-defined]
            raise self._translate(method, e) from None
        finally:
            metrics.signer_latency.labels(method, outcome).observe(time.perf_counter() - started)

    def _start(self, method: str, request: object) -> Pending[Any]:
        """`_call` on a worker thread (kept between calls: starting a thread costs more than the
        call), with the caller's request id; `result()` waits for it and raises what `_call` would."""
        context = contextvars.copy_context()
        future = self._workers().submit(context.run, self._call, method, request)
        return Pending(future.result, future.cancel)

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                # Threads do not survive a fork: a child makes its own.
                self._pool = ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="signer-call")
                self._pool_pid = os.getpid()
            return self._pool

    def _translate(self, method: str, e: grpc.RpcError) -> ServerError:
        code: grpc.StatusCode = e.code()  # type: ignore[attr-defined]
        details: str = e.details() or ""  # type: ignore[attr-defined]
        if code == grpc.StatusCode.NOT_FOUND:
            return _NotFound(method, details)
        if code in _UNAVAILABLE:
            return SignerUnavailableError(
                f"the signer at {self.address} is unavailable",
                {"method": method, "status": code.name, "detail": details},
            )
        if code == grpc.StatusCode.ABORTED:
            trailers = dict(e.trailing_metadata() or ())  # type: ignore[attr-defined]
            return _version_conflict(details, trailers.get(_HIGHEST_SIGNED_METADATA, ""))
        return SignerRefusedError(f"the signer refused {method}: {details}", {"method": method, "status": code.name})

    def _batch_error(self, error: signer_pb2.SignError) -> ServerError:
        message = f"{error.code}: {error.message}"
        if error.grpc_status == grpc.StatusCode.ABORTED.value[0]:
            return _version_conflict(message, str(error.highest_signed_version))
        if error.grpc_status == grpc.StatusCode.UNAVAILABLE.value[0]:
            return SignerUnavailableError(f"the signer at {self.address} is unavailable", {"detail": message})
        return SignerRefusedError(f"the signer refused SignBatch: {message}", {"method": "SignBatch", "code": error.code})

    def _sign_request(
        self, key: Key, payload: bytes, collection: str | None, role: str | None
    ) -> signer_pb2.SignRequest:
        if collection is None or role is None:
            with self._lock:
                bound = self._bindings.get(key.keyid)
            if bound is None:
                raise SignerRefusedError(
                    "sign() needs the key's collection and role: pass them, or get the key from the signer first",
                    {"key_id": key.keyid},
                )
            collection, role = collection or bound[0], role or bound[1]
        return signer_pb2.SignRequest(key_id=key.keyid, payload=payload, collection=collection, role=role)

    def _checked_signature(self, key: Key, payload: bytes, response: signer_pb2.SignResponse) -> Signature:
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

    def _checked_key(self, message: signer_pb2.PublicKey) -> SSlibKey:
        expected = tuf_key_id(message.keytype, message.scheme, message.public)
        if message.key_id != expected:
            raise SignerRefusedError(
                "the signer returned a key whose id is not its TUF key id",
                {"returned": message.key_id, "computed": expected},
            )
        try:
            key = SSlibKey(message.key_id, message.keytype, message.scheme, {"public": message.public})
        except ValueError:
            raise SignerRefusedError("the signer returned a malformed key", {"key_id": message.key_id}) from None
        if message.collection and message.role:
            with self._lock:
                self._bindings[message.key_id] = (message.collection, message.role)
        return key


class Pending(Generic[T]):
    """A signer call under way: `result()` waits for its answer (raising what the call would);
    `cancel()` abandons it (a no-op once answered)."""

    def __init__(self, result: Callable[[], T], cancel: Callable[[], object]) -> None:
        self.result = result
        self.cancel = cancel


def _metadata() -> tuple[tuple[str, str], ...]:
    """The request id of the HTTP request (or renewal pass) this call serves, for the signer's logs."""
    request_id = current_request_id()
    return ((REQUEST_ID_METADATA, request_id),) if request_id else ()


def _version_conflict(details: str, highest: str) -> VersionConflictError:
    detail: dict[str, Any] = {"signer": details}
    if highest.isdigit():
        detail["highest_signed_version"] = int(highest)
    return VersionConflictError(
        "the signer already signed this version (another publish or renewal won the race): retry", detail
    )


class _NotFound(SignerRefusedError):
    """NOT_FOUND from the signer; callers that expect it turn it into None/False."""

    def __init__(self, method: str, details: str) -> None:
        super().__init__(f"the signer refused {method}: {details}", {"method": method, "status": "NOT_FOUND"})

"""Readiness: the standard gRPC health service, SERVING only while the key store answers.

A background probe pings the key store every `interval` seconds; a call that finds the store
unreachable reports it at once (`mark_unavailable`). On shutdown every service turns NOT_SERVING
for good, so that load balancers stop sending work before in-flight calls finish.
"""

from __future__ import annotations

import logging
import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tufnotary.signer.errors import SignerError
from tufnotary.signer.keystore import KeyStore

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    """Health status of the signer's services (`""` and each name in `services`)."""

    def __init__(self, keystore: KeyStore, services: tuple[str, ...], interval: float = 2.0) -> None:
        self.servicer = health.HealthServicer()
        self._keystore = keystore
        self._names = ("", *services)
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._serving: bool | None = None
        self._thread: threading.Thread | None = None

    def add_to_server(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def probe(self) -> bool:
        """Ping the key store once and publish the result; True if it answered."""
        try:
            self._keystore.ping()
        except SignerError as e:
            self._set(False, f"{e.code}: {e.message}")
            return False
        except Exception as e:  # a probe must never kill the thread
            self._set(False, type(e).__name__)
            return False
        self._set(True, "")
        return True

    def mark_unavailable(self, reason: str) -> None:
        self._set(False, reason)

    def start(self) -> None:
        self.probe()
        if self._interval > 0:
            self._thread = threading.Thread(target=self._run, name="tufnotary-signer-readiness", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """NOT_SERVING from now on, whatever the key store says."""
        self._stop.set()
        self.servicer.enter_graceful_shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)  # no probe may touch the key store once it is being closed

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe()

    def _set(self, serving: bool, reason: str) -> None:
        with self._lock:
            if self._stop.is_set() or serving == self._serving:
                return
            self._serving = serving
            for name in self._names:
                self.servicer.set(name, SERVING if serving else NOT_SERVING)
        if serving:
            log.info("key store reachable: SERVING")
        else:
            log.warning("key store unreachable: NOT_SERVING (%s)", reason)

"""Keep every collection fresh: a background thread that renews timestamps before they expire.

Reads never sign: clients always get stored metadata, and this thread replaces it ahead of
expiry. Several workers (or hosts) may run it at once; the store's optimistic commit makes
one of them win and the others see a version conflict, which is harmless.
"""

from __future__ import annotations

import logging
import random
import threading

from tufnotary.server import metrics
from tufnotary.server.errors import ServerError, VersionConflictError
from tufnotary.server.logs import new_request_id, reset_request_id, set_request_id
from tufnotary.server.publish import OnlineSigner, renew
from tufnotary.server.config import ServerConfig
from tufnotary.server.storage import MetaStore

log = logging.getLogger(__name__)


def renew_all(store: MetaStore, signer: OnlineSigner, config: ServerConfig) -> int:
    """One pass over every collection; returns how many were renewed."""
    renewed = 0
    token = set_request_id(new_request_id("renew-"))  # follows the pass into the signer's logs
    try:
        for collection in store.collections():
            try:
                if renew(store, signer, config, collection):
                    renewed += 1
                    metrics.renewals.inc()
            except VersionConflictError:
                continue
            except ServerError as e:  # the signer or the database is down: try again next pass
                metrics.renewal_failures.labels(e.code).inc()
                log.warning("could not renew %s: %s %s", collection, e.code, e.message)
    finally:
        reset_request_id(token)
    return renewed


class Renewer(threading.Thread):
    def __init__(self, store: MetaStore, signer: OnlineSigner, config: ServerConfig) -> None:
        super().__init__(name="tufnotary-renewer", daemon=True)
        self._store, self._signer, self._config = store, signer, config
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = self._config.renew_interval
        # Spread workers apart so that they rarely race for the same collection.
        while not self._stop_event.wait(interval * random.uniform(0.5, 1.0)):
            try:
                count = renew_all(self._store, self._signer, self._config)
                if count:
                    log.info("renewed %d collection(s)", count)
            except ServerError as e:
                metrics.renewal_failures.labels(e.code).inc()
                log.warning("renewal pass failed: %s %s", e.code, e.message)
            except Exception:
                metrics.renewal_failures.labels("INTERNAL").inc()
                log.exception("renewal pass failed")

    def stop(self) -> None:
        self._stop_event.set()

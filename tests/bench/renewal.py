"""(7) Renew the timestamps of many collections: create them directly through the HTTP API with
python-tuf metadata (fast), then time passes of the server's own `renewer.renew_all` against the
stack's database and signer.

The collections are created by a server whose timestamps last one hour; each pass runs with the
renewal clock (`tufnotary.server.publish.utcnow`, in this process only) 40 minutes further on, so
that every timestamp is due (less than half its hour left) and the new one still passes the
signer's expiry window."""

from __future__ import annotations

import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from unittest import mock

from tests.e2e.tuf_http import new_collection
from tests.stack import Stack
from tufnotary.server import publish
from tufnotary.server.config import ServerConfig
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.server.renewer import renew_all
from tufnotary.server.storage import open_store

EXPIRY = timedelta(hours=1)
STEP = timedelta(minutes=40)
# A long signer deadline: creating keys costs the signer one scrypt derivation each (see docs/performance.md),
# and the stack's default of 3 s answers 503 SIGNER_UNAVAILABLE when creations queue up behind each other.
ENV = {"TUFNOTARY_SERVER_TIMESTAMP_EXPIRY_DAYS": str(EXPIRY / timedelta(days=1)),
       "TUFNOTARY_SERVER_RENEW_INTERVAL": "0", "TUFNOTARY_SERVER_SIGNER_TIMEOUT": "30"}


def create_collections(stack: Stack, prefix: str, count: int, threads: int = 2) -> tuple[float, int]:
    """(seconds, 503 answers retried) to create `count` collections, `threads` at a time."""
    retried = 0

    def create(i: int) -> None:
        nonlocal retried
        for attempt in range(5):
            try:
                new_collection(stack, f"{prefix}/c{i}")
                return
            except urllib.error.HTTPError as e:
                if e.code != 503 or attempt == 4:
                    raise
                retried += 1
                time.sleep(1.0)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(count)))
    return time.perf_counter() - started, retried


def renewal_passes(stack: Stack, passes: int) -> list[tuple[float, int]]:
    """(seconds, collections renewed) of each pass."""
    config = ServerConfig(database_url=stack.server_db, timestamp_expiry=EXPIRY)
    store = open_store(stack.server_db)
    signer = RemoteSigner(stack.signer_address.replace("127.0.0.1", "localhost"), stack.certs.ca_cert,
                          stack.certs.client_cert, stack.certs.client_key, timeout=30)
    real_utcnow = publish.utcnow
    results = []
    try:
        for n in range(1, passes + 1):
            with mock.patch.object(publish, "utcnow", lambda n=n: real_utcnow() + n * STEP):
                started = time.perf_counter()
                renewed = renew_all(store, signer, config)
                results.append((time.perf_counter() - started, renewed))
    finally:
        signer.close()
        store.close()
    return results

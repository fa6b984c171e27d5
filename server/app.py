"""The Flask application factory: `create_app()` is what gunicorn serves.

Database connections and the gRPC channel are opened lazily, on first use in each worker,
because gunicorn forks its workers after the factory runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from tufnotary.server import ops
from tufnotary.server.api import bp
from tufnotary.server.auth import build_gatekeeper, token_bp
from tufnotary.server.config import ServerConfig, config_from_env
from tufnotary.server.changes import Generations, PostgresChanges
from tufnotary.server.fastread import FastReads
from tufnotary.server.publish import OnlineSigner
from tufnotary.server.readcache import ReadCache
from tufnotary.server.remote_signer import RemoteSigner
from tufnotary.server.storage import MetaStore, open_store


@dataclass
class Services:
    config: ServerConfig
    store: MetaStore
    signer: OnlineSigner
    reads: ReadCache
    """Metadata GETs go through it: from memory while current, else from `store`."""
    listener: PostgresChanges | None = None
    """The thread that hears other processes' commits (PostgreSQL only)."""

    def close(self) -> None:
        """Stop what the app runs in the background (the listener); the store and signer stay open."""
        if self.listener is not None:
            self.listener.stop()


def create_app(
    config: ServerConfig | None = None,
    store: MetaStore | None = None,
    signer: OnlineSigner | None = None,
    generations: Generations | None = None,
) -> Flask:
    """Build the app from `config` (default: the environment); `store`/`signer` override for tests.

    `generations` must be shared by every worker of one server (created before gunicorn forks);
    without it this app's cache hears only its own process's commits and other hosts'."""
    config = config or config_from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    gatekeeper = build_gatekeeper(config.auth)  # refuses to start when nobody could ever be let in
    if store is None:
        store = open_store(config.database_url, pool_size=config.database_pool_size)
    if signer is None:
        signer = RemoteSigner(
            config.signer_address,
            config.signer_ca,
            config.signer_client_cert,
            config.signer_client_key,
            timeout=config.signer_timeout,
        )
    reads, listener = _read_cache(config, store, generations)
    app.extensions["tufnotary"] = Services(config, store, signer, reads, listener)
    app.register_blueprint(bp)
    app.extensions["tufnotary_auth"] = gatekeeper
    app.register_blueprint(token_bp)
    app.wsgi_app = FastReads(app, app.wsgi_app)  # type: ignore[method-assign]
    if config.auth.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.auth.proxy_hops)  # type: ignore[method-assign]
    ops.init_app(app)  # health, readiness, /metrics, OpenAPI; request id and access log
    logger = logging.getLogger("tufnotary")
    if logger.level == logging.NOTSET:  # configure_logging (the CLI) chose a level already otherwise
        logger.setLevel(logging.INFO)
    return app


def _read_cache(config: ServerConfig, store: MetaStore,
                generations: Generations | None) -> tuple[ReadCache, PostgresChanges | None]:
    """The cache, and the listener it depends on. The cache is on only where every change is heard: a
    backend that announces commits, with a listener connected (until then, and whenever it is not,
    reads go to the store)."""
    generations = generations or Generations()
    url = store.listen_url()
    if url is None or config.read_cache_bytes <= 0:
        return ReadCache(store, generations, enabled=lambda: False, max_bytes=0), None
    listener = PostgresChanges(url, generations)
    listener.start()
    return ReadCache(store, generations, enabled=lambda: listener.healthy, max_bytes=config.read_cache_bytes), listener

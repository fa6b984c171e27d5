"""`tufnotary-signer`: the only module of the signer that parses arguments, prints or exits.

    tufnotary-signer [--config FILE] serve  # config from FILE and TUFNOTARY_SIGNER_* variables; migrate, serve
    tufnotary-signer migrate            # apply pending key database migrations
    tufnotary-signer rewrap --to ALIAS  # re-encrypt every SQL-stored key under ALIAS's passphrase
    tufnotary-signer gen-certs --out D  # development CA, signer and server-client certificates
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tufnotary.signer.app import create_server, open_keystore
from tufnotary.signer.certs import write_dev_certs
from tufnotary.signer.config import ENV_CONFIG_FILE, SignerConfig, check_safe, load_config, merged_settings
from tufnotary.signer.errors import ConfigError, SignerError
from tufnotary.signer.logs import configure_logging
from tufnotary.signer.metrics import serve_metrics
from tufnotary.signer.sql_keystore import SqlKeyStore

log = logging.getLogger("tufnotary.signer")


def serve(config: SignerConfig) -> None:
    """Migrate, then serve until SIGTERM or SIGINT. On a signal: NOT_SERVING at once, no new calls,
    and in-flight calls (signatures, batches) get `config.stop_grace` seconds to finish."""
    keystore = open_keystore(config)
    try:
        keystore.migrate()
        signer = create_server(config, keystore)
        if config.metrics_listen:
            metrics_port = serve_metrics(config.metrics_listen)
            log.info("metrics on http://%s:%d/metrics", config.metrics_listen.rsplit(":", 1)[0], metrics_port)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signer.start()
        # What start-up built (modules, the server, the key store) lives as long as the process: the collector
        # stops re-scanning it in every full collection (~30 ms each, one per ~30 batches of 200 when measured).
        gc.collect()
        gc.freeze()
        host = config.listen.rsplit(":", 1)[0]
        allowed = f"{len(config.allowed_client_subjects)} allowed client subject(s)" if config.allowed_client_subjects \
            else "any client certificate from the client CA"
        log.info("signer listening on %s:%d (mutual TLS, %s, %s key store)", host, signer.port, allowed, config.keystore)
        stop.wait()
        log.info("signer stopping: finishing in-flight calls (up to %.0f s)", config.stop_grace)
        signer.stop(config.stop_grace)
        log.info("signer stopped")
    finally:
        keystore.close()


def migrate(config: SignerConfig) -> None:
    keystore = open_keystore(config)
    try:
        keystore.migrate()
    finally:
        keystore.close()


def rewrap(config: SignerConfig, to_alias: str) -> int:
    if config.keystore != "sql":
        raise ConfigError("rewrap applies to the SQL key store only: PKCS#11 keys never leave their token")
    keystore = SqlKeyStore(config.database_url, config.passphrases, config.default_alias)
    try:
        keystore.migrate()
        return keystore.rewrap(to_alias)
    finally:
        keystore.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tufnotary-signer",
        description="The tufnotary signer: online TUF keys behind gRPC with mutual TLS. "
        "Configured by a TOML file (--config) and TUFNOTARY_SIGNER_* environment variables, which override it.",
    )
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML configuration file (default: ${ENV_CONFIG_FILE}); see docs/configuration.md")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate the key database, then serve until SIGTERM/SIGINT")
    sub.add_parser("migrate", help="apply pending key database migrations")
    rw = sub.add_parser(
        "rewrap", help="re-encrypt every SQL-stored key under the passphrase of ALIAS, in one transaction"
    )
    rw.add_argument("--to", required=True, metavar="ALIAS", help="a passphrase alias configured for this signer")
    gen = sub.add_parser("gen-certs", help="write development certificates (CA, signer, server client)")
    gen.add_argument("--out", required=True, type=Path, help="directory to write the files into")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "gen-certs":
            paths = write_dev_certs(args.out)
            print(f"wrote development certificates to {paths.ca_cert.parent}")
        elif args.command == "migrate":
            migrate(load_config(args.config, os.environ))
            print("signer key database is up to date")
        elif args.command == "rewrap":
            count = rewrap(load_config(args.config, os.environ), args.to)
            print(f"rewrapped {count} key(s) under passphrase alias {args.to!r}")
        else:
            settings = merged_settings(args.config, os.environ)
            config = load_config(args.config, os.environ)
            check_safe(config, settings)
            configure_logging(config.log_format)
            serve(config)
    except SignerError as e:
        print(f"tufnotary-signer: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"tufnotary-signer: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

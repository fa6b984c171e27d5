"""`tufnotary-signer`: the only module of the signer that parses arguments, prints or exits.

    tufnotary-signer serve              # config from TUFNOTARY_SIGNER_* variables; migrate, then serve
    tufnotary-signer migrate            # apply pending key database migrations
    tufnotary-signer gen-certs --out D  # development CA, signer and server-client certificates
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tufnotary.signer.app import create_server
from tufnotary.signer.certs import write_dev_certs
from tufnotary.signer.config import SignerConfig, config_from_env
from tufnotary.signer.errors import SignerError
from tufnotary.signer.sql_keystore import SqlKeyStore

log = logging.getLogger("tufnotary.signer")

STOP_GRACE_SECONDS = 5.0


def _keystore(config: SignerConfig) -> SqlKeyStore:
    return SqlKeyStore(config.database_url, config.passphrases, config.default_alias)


def serve(config: SignerConfig) -> None:
    """Migrate, then serve until SIGTERM or SIGINT; in-flight calls get a short grace period."""
    keystore = _keystore(config)
    try:
        keystore.migrate()
        server, port = create_server(config, keystore)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        server.start()
        host = config.listen.rsplit(":", 1)[0]
        log.info("signer listening on %s:%d (mutual TLS)", host, port)
        stop.wait()
        log.info("signer stopping")
        server.stop(STOP_GRACE_SECONDS).wait()
        log.info("signer stopped")
    finally:
        keystore.close()


def migrate(config: SignerConfig) -> None:
    keystore = _keystore(config)
    try:
        keystore.migrate()
    finally:
        keystore.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tufnotary-signer",
        description="The tufnotary signer: online TUF keys behind gRPC with mutual TLS. "
        "Configured by TUFNOTARY_SIGNER_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate the key database, then serve until SIGTERM/SIGINT")
    sub.add_parser("migrate", help="apply pending key database migrations")
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
            migrate(config_from_env(os.environ))
            print("signer key database is up to date")
        else:
            serve(config_from_env(os.environ))
    except SignerError as e:
        print(f"tufnotary-signer: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"tufnotary-signer: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

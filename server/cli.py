"""`tufnotary-server`: serve (gunicorn), migrate, and dev (the whole embedded stack on loopback).

The only module of the server that prints or exits.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tufnotary.server.config import ENV_CONFIG_FILE, ServerConfig, check_safe, load_config
from tufnotary.server.errors import ServerError

NEW_PASSWORD_ENV = "TUFNOTARY_SERVER_NEW_PASSWORD"


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    config = load_config(args.config)
    check_safe(config)
    _check_auth(config, args.bind)
    # Before prometheus_client is first imported (by the app): every worker writes its samples to
    # this directory and /metrics adds them up. A leftover directory is emptied.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="tufnotary-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from tufnotary.server import metrics
    from tufnotary.server.app import create_app
    from tufnotary.server.changes import Generations
    from tufnotary.server.logs import configure_logging
    from tufnotary.server.renewer import Renewer

    metrics.prepare_multiprocess_dir(metrics_dir)
    configure_logging(config.log_format, config.log_level)
    if args.migrate:
        _migrate_store(config.database_url)
    generations = Generations()  # before the fork: every worker shares it (see changes.py)

    class App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", [args.bind])
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", "-" if args.access_log else None)
            self.cfg.set("proc_name", "tufnotary-server")
            if "control_socket_disable" in self.cfg.settings:  # one per host would collide
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("child_exit", lambda server, worker: metrics.worker_exited(worker.pid))

        def load(self):  # runs in each worker after the fork
            configure_logging(config.log_format, config.log_level)
            app = create_app(config, generations=generations)
            if config.renew_interval > 0:
                services = app.extensions["tufnotary"]
                Renewer(services.store, services.signer, config).start()
            return app

    App().run()
    return 0


def _check_auth(config: ServerConfig, bind: str) -> None:
    """Refuse to serve with authentication off beyond loopback, or with nothing to authenticate
    with (create_app would refuse it in every worker)."""
    from tufnotary.server.auth import build_gatekeeper

    host = bind.rsplit(":", 1)[0].strip("[]")
    if not config.auth.enabled and host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"TUFNOTARY_SERVER_AUTH=none lets anyone publish and delete: it is allowed on a "
                         f"loopback address only, not {bind}; configure token auth (docs/auth.md)")
    build_gatekeeper(config.auth)


def _dev_auth(state: Path) -> dict[str, str]:
    """The embedded default's auth: the server's own token issuer with one user, `dev`, who may do
    everything; the password is generated once into the state dir. Anonymous pull on loopback."""
    from tufnotary.server.tokens import generate_token_key
    from tufnotary.server.users import write_user

    key, users, password = state / "token-key.pem", state / "users.toml", state / "dev-password"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(generate_token_key())
    if not password.exists() or not users.exists():
        fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
        write_user(users, "dev", password.read_text(), ["repository:*:*", "registry:catalog:*"])
    return {
        "TUFNOTARY_SERVER_AUTH": "token",
        "TUFNOTARY_SERVER_AUTH_USERS_FILE": str(users),
        "TUFNOTARY_SERVER_AUTH_TOKEN_KEY": str(key),
        "TUFNOTARY_SERVER_AUTH_ANONYMOUS_PULL": "true",
    }


def _audit_verify(args: argparse.Namespace) -> int:
    from tufnotary.server.audit import verify_chain
    from tufnotary.server.storage import open_store

    store = open_store(load_config(args.config).database_url)
    try:
        head = store.audit_head()

        def records():
            since = 0
            while page := store.audit_records(since=since, limit=1000):
                yield from page
                since = page[-1].seq

        report = verify_chain(records(), head)
    finally:
        store.close()
    if report.ok:
        print(f"audit log OK: {report.records} records, head {report.head_seq} {report.head_hash}")
        return 0
    print(f"audit log BROKEN at record {report.broken_at}: {report.reason} "
          f"({report.records} records checked before it)", file=sys.stderr)
    return 3


def _read_new_password(args: argparse.Namespace) -> str:
    import getpass

    if os.environ.get(NEW_PASSWORD_ENV):
        return os.environ[NEW_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise ValueError(f"no terminal to ask the password on: set {NEW_PASSWORD_ENV}")
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValueError("the two passwords differ; nothing was changed")
    return first


def _user_add(args: argparse.Namespace) -> int:
    from tufnotary.server.users import write_user

    write_user(Path(args.users_file), args.name, _read_new_password(args), args.access or [])
    print(f"{args.name} may now get tokens for: {', '.join(args.access or []) or 'nothing'}")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    from tufnotary.server.users import remove_user

    if not remove_user(Path(args.users_file), args.name):
        raise ValueError(f"{args.users_file} has no user {args.name}")
    print(f"removed {args.name}")
    return 0


def _token_key(args: argparse.Namespace) -> int:
    from tufnotary.server.tokens import generate_token_key

    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(generate_token_key())
    print(f"wrote an EC P-256 token signing key to {args.out}")
    return 0


def _migrate_store(url: str) -> list[str]:
    from tufnotary.server.storage import open_store

    store = open_store(url)
    try:
        return store.migrate()
    finally:
        store.close()


def _migrate(args: argparse.Namespace) -> int:
    applied = _migrate_store(load_config(args.config).database_url)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tufnotary-server: error: {what} exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"tufnotary-server: error: {what} did not listen on {host}:{port} in {timeout:.0f}s")


def _dev(args: argparse.Namespace) -> int:
    """Start signer and server on loopback with SQLite, certificates and passphrase in a state dir."""
    state = Path(args.state_dir).resolve()
    certs = state / "certs"
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    bindir = Path(sys.executable).parent
    signer_exe = shutil.which("tufnotary-signer", path=str(bindir)) or "tufnotary-signer"
    if not (certs / "ca.crt").exists():
        subprocess.run([signer_exe, "gen-certs", "--out", str(certs)], check=True)
    passphrase_file = state / "signer-passphrase"
    if not passphrase_file.exists():
        passphrase_file.touch(mode=0o600)
        passphrase_file.write_text(secrets.token_urlsafe(32))

    signer_env = {
        **os.environ,
        "TUFNOTARY_SIGNER_LISTEN": f"127.0.0.1:{args.signer_port}",
        "TUFNOTARY_SIGNER_DATABASE_URL": f"sqlite:///{state / 'signer.db'}",
        "TUFNOTARY_SIGNER_TLS_CERT": str(certs / "signer.crt"),
        "TUFNOTARY_SIGNER_TLS_KEY": str(certs / "signer.key"),
        "TUFNOTARY_SIGNER_TLS_CLIENT_CA": str(certs / "ca.crt"),
        "TUFNOTARY_SIGNER_PASSPHRASE_FILE": str(passphrase_file),
        "TUFNOTARY_SIGNER_LOG_FORMAT": os.environ.get("TUFNOTARY_SIGNER_LOG_FORMAT", "text"),
    }
    server_env = {
        **os.environ,
        "TUFNOTARY_SERVER_DATABASE_URL": f"sqlite:///{state / 'server.db'}",
        "TUFNOTARY_SERVER_SIGNER_ADDRESS": f"127.0.0.1:{args.signer_port}",
        "TUFNOTARY_SERVER_SIGNER_CA": str(certs / "ca.crt"),
        "TUFNOTARY_SERVER_SIGNER_CLIENT_CERT": str(certs / "server-client.crt"),
        "TUFNOTARY_SERVER_SIGNER_CLIENT_KEY": str(certs / "server-client.key"),
        "TUFNOTARY_SERVER_LOG_FORMAT": os.environ.get("TUFNOTARY_SERVER_LOG_FORMAT", "text"),
        **_dev_auth(state),
    }
    server_exe = shutil.which("tufnotary-server", path=str(bindir)) or "tufnotary-server"
    procs: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        procs.append(subprocess.Popen([signer_exe, "serve"], env=signer_env))
        _wait_for_port("127.0.0.1", args.signer_port, procs[0], "the signer")
        server_cmd = [server_exe, "serve", "--migrate", "--bind", f"127.0.0.1:{args.port}",
                      "--workers", str(args.workers)]
        procs.append(subprocess.Popen(server_cmd, env=server_env))
        _wait_for_port("127.0.0.1", args.port, procs[1], "the server")
        print(f"tufnotary is running on http://127.0.0.1:{args.port} (state in {state}); Ctrl-C stops it\n"
              f"anyone on this host may pull; to publish, log in as dev:\n"
              f"    export TUFNOTARY_USERNAME=dev TUFNOTARY_PASSWORD_FILE={state / 'dev-password'}",
              flush=True)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tufnotary-server", description="tufnotary metadata server")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML configuration file (default: ${ENV_CONFIG_FILE}); "
                             "TUFNOTARY_SERVER_* variables override it (docs/configuration.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API with gunicorn (configuration from --config and the environment)")
    serve.add_argument("--bind", default="127.0.0.1:4443", help="address to listen on (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default: %(default)s)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker (default: %(default)s)")
    serve.add_argument("--migrate", action="store_true", help="apply schema migrations before serving")
    serve.add_argument("--access-log", action="store_true", help="log every request to stdout")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="apply pending schema migrations to the configured database")
    migrate.set_defaults(func=_migrate)

    dev = sub.add_parser("dev", help="run signer and server on loopback with SQLite (the embedded default)")
    dev.add_argument("--state-dir", default=".state", help="certificates, passphrase, databases (default: %(default)s)")
    dev.add_argument("--port", type=int, default=4443)
    dev.add_argument("--signer-port", type=int, default=7899)
    dev.add_argument("--workers", type=int, default=2)
    dev.set_defaults(func=_dev)

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit log's hash chain; exit 3 naming the "
                                  "first record that was edited or deleted")
    verify.set_defaults(func=_audit_verify)

    users_file = os.environ.get("TUFNOTARY_SERVER_AUTH_USERS_FILE")
    user = sub.add_parser("user", help="users of the server's own token issuer")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help=f"add or replace a user; the password from ${NEW_PASSWORD_ENV} "
                              "or asked on the terminal, never an argument")
    add.add_argument("name")
    add.add_argument("--access", action="append", metavar="SCOPE",
                     help="a scope the user may get, e.g. 'repository:wabbit-networks/*:pull,push' or "
                          "'registry:catalog:*' (repeat)")
    remove = user_sub.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    for p, func in ((add, _user_add), (remove, _user_remove)):
        p.add_argument("--users-file", default=users_file, required=users_file is None,
                       help="default: $TUFNOTARY_SERVER_AUTH_USERS_FILE")
        p.set_defaults(func=func)

    token_key = sub.add_parser("token-key", help="write a new token signing key for the server's own issuer")
    token_key.add_argument("--out", required=True, metavar="FILE")
    token_key.set_defaults(func=_token_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ServerError) as e:  # configuration, storage
        print(f"tufnotary-server: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

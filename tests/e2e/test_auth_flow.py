"""Token auth through the real processes (gunicorn server, signer) and the `tufnotary` CLI: the
server's own issuer with credentials from the environment or the Docker config file, and an
external token issuer running on loopback; the changefeed names who published."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from tests.e2e.registry import write_credential_helper
from tests.server.auth_helpers import ExternalIssuer, own_issuer_files
from tests.stack import start_stack

BIN = Path(sys.executable).parent
COLLECTION = "wabbit-networks/net-monitor"
ALICE_PASSWORD = "alice's long password"


def tufnotary(stack, trust_dir: Path, *args: str, **env: str):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TUFNOTARY_", "DOCKER_CONFIG"))}
    environ.update({"TUFNOTARY_PASSPHRASE": "publisher passphrase", "HOME": str(trust_dir.parent), **env})
    return subprocess.run([str(BIN / "tufnotary"), "--server", stack.url, "--trust-dir", str(trust_dir), *args],
                          env=environ, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth-own")
    users, key = own_issuer_files(workdir, {
        "alice": (ALICE_PASSWORD, ["repository:wabbit-networks/*:pull,push"]),
        "reader": ("reader password", ["repository:wabbit-networks/*:pull"]),
    })
    stack = start_stack(workdir, f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}", {
        "TUFNOTARY_SERVER_AUTH": "token",
        "TUFNOTARY_SERVER_AUTH_USERS_FILE": str(users),
        "TUFNOTARY_SERVER_AUTH_TOKEN_KEY": str(key),
        "TUFNOTARY_SERVER_RATE_LIMIT": "200",
    })
    yield stack
    stack.stop()


def test_cli_with_the_servers_own_tokens(own_stack, tmp_path):
    publisher = tmp_path / "home" / "publisher"
    alice = {"TUFNOTARY_USERNAME": "alice", "TUFNOTARY_PASSWORD": ALICE_PASSWORD}
    artifact = tmp_path / "net-monitor.tar"
    artifact.write_bytes(b"net-monitor build 1")

    refused = tufnotary(own_stack, publisher, "init", COLLECTION)
    assert refused.returncode == 4 and "TUFNOTARY_USERNAME" in refused.stderr, refused.stderr
    wrong = tufnotary(own_stack, publisher, "init", COLLECTION, TUFNOTARY_USERNAME="alice",
                      TUFNOTARY_PASSWORD="wrong")
    assert wrong.returncode == 4 and "refused the credentials" in wrong.stderr
    assert ALICE_PASSWORD not in wrong.stderr + wrong.stdout

    ok(tufnotary(own_stack, publisher, "init", COLLECTION, **alice))
    ok(tufnotary(own_stack, publisher, "add", COLLECTION, "net-monitor:1.0", str(artifact), **alice))
    ok(tufnotary(own_stack, publisher, "publish", COLLECTION, **alice))
    ok(tufnotary(own_stack, publisher, "verify", COLLECTION, "net-monitor:1.0", str(artifact), **alice))
    denied = tufnotary(own_stack, publisher, "delete", COLLECTION, "--yes", **alice)
    assert denied.returncode == 4 and "DENIED" in denied.stderr

    # a consumer with pull-only credentials in the Docker config file: verifies, cannot publish
    root = publisher / "collections" / COLLECTION / "metadata" / "root.json"
    consumer_home = tmp_path / "consumer-home"
    docker = consumer_home / ".docker"
    docker.mkdir(parents=True)
    host = own_stack.url.removeprefix("http://")
    (docker / "config.json").write_text(json.dumps(
        {"auths": {host: {"auth": base64.b64encode(b"reader:reader password").decode()}}}))
    consumer = consumer_home / "trust"
    ok(tufnotary(own_stack, consumer, "verify", "--root", str(root), COLLECTION, "net-monitor:1.0", str(artifact)))
    anonymous = tufnotary(own_stack, tmp_path / "anon-home" / "trust", "verify", "--root", str(root), COLLECTION,
                          "net-monitor:1.0", str(artifact))
    assert anonymous.returncode == 4, anonymous.stderr

    feed = ok(tufnotary(own_stack, publisher, "changefeed", COLLECTION, **alice))
    lines = feed.strip().splitlines()
    assert len(lines) == 4 and all(" by alice from 127.0.0.1" in line for line in lines)
    assert "net-monitor:1.0 added" in lines[-1]


def test_server_credentials_from_docker_credential_helpers(own_stack, tmp_path):
    """`docker login` into a credential helper covers the metadata server as it does registries:
    credsStore for the publisher, credHelpers for the consumer; no secret is ever printed."""
    host = own_stack.url.removeprefix("http://")
    bin_dir = tmp_path / "bin"
    write_credential_helper(bin_dir, "desktop", {host: ("alice", ALICE_PASSWORD)})
    write_credential_helper(bin_dir, "pass", {host: ("reader", "reader password")})
    write_credential_helper(bin_dir, "empty", {})
    path = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def home(name: str, config: dict) -> Path:
        docker = tmp_path / name / ".docker"
        docker.mkdir(parents=True)
        (docker / "config.json").write_text(json.dumps(config))
        return tmp_path / name / "trust"

    collection = "wabbit-networks/helpers"
    artifact = tmp_path / "helpers.tar"
    artifact.write_bytes(b"helpers build 1")
    publisher = home("publisher", {"credsStore": "desktop"})
    ok(tufnotary(own_stack, publisher, "init", collection, **path))
    ok(tufnotary(own_stack, publisher, "add", collection, "helpers:1.0", str(artifact), **path))
    ok(tufnotary(own_stack, publisher, "publish", collection, **path))
    assert (bin_dir / "desktop.calls").read_text().splitlines()[0] == f"get {host}"

    root = publisher / "collections" / collection / "metadata" / "root.json"
    consumer = home("consumer", {"credsStore": "empty", "credHelpers": {host: "pass"}})
    verified = tufnotary(own_stack, consumer, "verify", "--root", str(root), collection, "helpers:1.0",
                         str(artifact), **path)
    ok(verified)
    assert "reader password" not in verified.stdout + verified.stderr
    assert not (bin_dir / "empty.calls").exists()  # credHelpers beats credsStore
    # Pull-only credentials from the helper: publishing is refused by the server.
    pushed = tufnotary(own_stack, consumer, "add", collection, "helpers:2.0", str(artifact), **path)
    if pushed.returncode == 0:
        pushed = tufnotary(own_stack, consumer, "publish", collection, **path)
    assert pushed.returncode != 0 and "reader password" not in pushed.stdout + pushed.stderr

    # A helper that holds nothing for the server: anonymous, refused (4), naming the ways to log in.
    nobody = home("nobody", {"credsStore": "empty"})
    refused = tufnotary(own_stack, nobody, "verify", "--root", str(root), collection, "helpers:1.0",
                        str(artifact), **path)
    assert refused.returncode == 4 and "TUFNOTARY_USERNAME" in refused.stderr, refused.stderr
    assert (bin_dir / "empty.calls").read_text().splitlines() == [f"get {host}"]
    # A helper named but missing: a clear error (1), nothing else tried.
    missing = home("missing", {"credHelpers": {host: "nosuch"}})
    broken = tufnotary(own_stack, missing, "verify", "--root", str(root), collection, "helpers:1.0",
                       str(artifact), **path)
    assert broken.returncode == 1 and "docker-credential-nosuch" in broken.stderr, broken.stderr
    assert "Traceback" not in broken.stderr


class LoopbackIssuer:
    """A registry token server of our own on loopback: basic credentials in, RS256 tokens out."""

    def __init__(self, keys: ExternalIssuer, users: dict[str, tuple[str, list[dict]]]) -> None:
        app = Flask("test-issuer")
        self.requests: list[dict[str, list[str]]] = []

        @app.get("/token")
        def token():
            auth = request.authorization
            self.requests.append(request.args.to_dict(flat=False))
            if auth is None or users.get(auth.username, ("",))[0] != auth.password:
                return jsonify({"error": "bad credentials"}), 401
            return jsonify({"token": keys.token(auth.username, users[auth.username][1], kid="k1"), "expires_in": 120})

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


def test_cli_with_an_external_token_issuer(tmp_path_factory, tmp_path):
    workdir = tmp_path_factory.mktemp("auth-external")
    keys = ExternalIssuer.create("k1")
    keys.audience = "tufnotary"
    jwks = keys.write_jwks(workdir / "jwks.json")
    issuer = LoopbackIssuer(keys, {"ci": ("ci secret", [
        {"type": "repository", "name": "acme/*", "actions": ["pull", "push"]}])})
    stack = None
    try:
        stack = start_stack(workdir, f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}", {
            "TUFNOTARY_SERVER_AUTH": "token",
            "TUFNOTARY_SERVER_AUTH_ISSUER": keys.issuer,
            "TUFNOTARY_SERVER_AUTH_JWKS_FILE": str(jwks),
            "TUFNOTARY_SERVER_AUTH_REALM": issuer.url,
        })
        publisher = tmp_path / "home" / "publisher"
        ci = {"TUFNOTARY_USERNAME": "ci", "TUFNOTARY_PASSWORD": "ci secret"}
        artifact = tmp_path / "a.bin"
        artifact.write_bytes(b"acme")
        ok(tufnotary(stack, publisher, "init", "acme/app", **ci))
        ok(tufnotary(stack, publisher, "add", "acme/app", "a.bin", str(artifact), **ci))
        ok(tufnotary(stack, publisher, "publish", "acme/app", **ci))
        ok(tufnotary(stack, publisher, "verify", "acme/app", "a.bin", str(artifact), **ci))
        assert {"service": ["tufnotary"], "scope": ["repository:acme/app:pull,push"], "account": ["ci"]} \
            in issuer.requests, issuer.requests
        # the external issuer grants nothing outside acme/*
        other = tufnotary(stack, tmp_path / "home" / "other", "init", "wabbit/app", **ci)
        assert other.returncode == 4 and "DENIED" in other.stderr
        # tokens are cached per scope: one token request per scope, not per HTTP request
        assert len(issuer.requests) < 20
    finally:
        if stack is not None:
            stack.stop()
        issuer.stop()


def test_dev_mode_runs_the_readme_quickstart_with_the_printed_credentials(tmp_path):
    """`tufnotary-server dev` (what `make run` starts): anonymous pull, and push as the printed dev user."""
    from tests.pgcluster import free_port

    port, signer_port = free_port(), free_port()
    state = tmp_path / "state"
    log = (tmp_path / "dev.log").open("w+")
    proc = subprocess.Popen([str(BIN / "tufnotary-server"), "dev", "--state-dir", str(state), "--port", str(port),
                             "--signer-port", str(signer_port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "is running" not in (tmp_path / "dev.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
            time.sleep(0.2)
        printed = (tmp_path / "dev.log").read_text()
        assert f"TUFNOTARY_PASSWORD_FILE={state / 'dev-password'}" in printed
        assert (state / "dev-password").stat().st_mode & 0o077 == 0
        stack = type("S", (), {"url": f"http://127.0.0.1:{port}"})()
        me = tmp_path / "home" / "me"
        hello = tmp_path / "hello.txt"
        hello.write_text("hello\n")
        login = {"TUFNOTARY_USERNAME": "dev", "TUFNOTARY_PASSWORD_FILE": str(state / "dev-password")}
        ok(tufnotary(stack, me, "init", "example/hello", **login))
        ok(tufnotary(stack, me, "add", "example/hello", "hello.txt", str(hello), **login))
        ok(tufnotary(stack, me, "publish", "example/hello", **login))
        ok(tufnotary(stack, me, "verify", "example/hello", "hello.txt", str(hello)))  # anonymous pull
        assert tufnotary(stack, tmp_path / "home" / "x", "init", "example/other").returncode == 4
        assert (state / "dev-password").read_text() not in printed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

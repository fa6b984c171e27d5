"""The logs of a whole publish/verify cycle through the real processes (signer, gunicorn, the CLI) are
JSON, follow the request id from HTTP into the signer, and hold no secret: no passphrase, token, private
key material, signature or payload bytes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.pgcluster import free_port
from tests.stack import start_stack

BIN = Path(sys.executable).parent
CLIENT_PASSPHRASE = "client passphrase 7f3a9c"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJlLWJ5dGVz"
ARTIFACT = b"artifact payload 5b2e8d41 never logged"
COLLECTION = "ops/log-secrets"


@pytest.fixture(scope="module")
def logged_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("log-secrets")
    metrics_port = free_port()
    previous = os.environ.get("TUFNOTARY_SIGNER_METRICS_LISTEN")
    os.environ["TUFNOTARY_SIGNER_METRICS_LISTEN"] = f"127.0.0.1:{metrics_port}"  # inherited by the signer
    try:
        stack = start_stack(workdir, f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}",
                            server_env={"TUFNOTARY_SERVER_AUTH": "none", "TUFNOTARY_SERVER_LOG_FORMAT": "json"})
    finally:
        if previous is None:
            del os.environ["TUFNOTARY_SIGNER_METRICS_LISTEN"]
        else:
            os.environ["TUFNOTARY_SIGNER_METRICS_LISTEN"] = previous
    stack.signer_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    yield stack
    stack.stop()


def _cli(stack, trust: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUFNOTARY_PASSPHRASE": CLIENT_PASSPHRASE}
    done = subprocess.run([str(BIN / "tufnotary"), "--server", stack.url, "--trust-dir", str(trust), *args],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        return e.read()


def _pem_bodies(path: Path) -> list[str]:
    """Base64 lines of a PEM file, long enough to be unmistakable."""
    return [line for line in path.read_text().splitlines() if len(line) >= 40 and not line.startswith("-----")]


def test_a_publish_verify_cycle_logs_no_secret_and_follows_the_request_id(logged_stack, tmp_path):
    stack = logged_stack
    trust = tmp_path / "trust"
    artifact = tmp_path / "artifact.bin"
    artifact.write_bytes(ARTIFACT)
    outputs = [_cli(stack, trust, "init", COLLECTION), _cli(stack, trust, "add", COLLECTION, "app:1", str(artifact)),
               _cli(stack, trust, "publish", COLLECTION), _cli(stack, trust, "verify", COLLECTION, "app:1", str(artifact))]
    base = stack.base(COLLECTION)
    # Secrets a client might send in a header or a query string.
    _get(base + "targets.json", {"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "trace-publish-0001"})
    _get(base + f"root.json?access_token={TOKEN}")
    _get(stack.url + "/v2/ops/log-secrets-new/_trust/tuf/timestamp.key", {"X-Request-ID": "trace-create-key-0002"})
    metadata = {role: json.loads(_get(base + f"{role}.json")) for role in ("root", "targets", "snapshot", "timestamp")}
    _check_signer_metrics(stack.signer_metrics_url)
    stack.stop()  # flush and close the logs

    server_log = (stack.workdir / "server.log").read_text()
    signer_log = (stack.workdir / "signer.log").read_text()
    everything = server_log + signer_log + "".join(o.stdout + o.stderr for o in outputs)

    secrets = {
        "signer passphrase": (stack.workdir / "signer-passphrase").read_text(),
        "client passphrase": CLIENT_PASSPHRASE,
        "bearer token": TOKEN,
        "token payload": TOKEN.split(".")[1],
        "artifact bytes": ARTIFACT.decode(),
    }
    certs = stack.certs
    for name, path in (("signer TLS key", certs.signer_key), ("server client key", certs.client_key)):
        for n, line in enumerate(_pem_bodies(Path(path))):
            secrets[f"{name} line {n}"] = line
    for key_file in trust.rglob("*"):
        if key_file.is_file() and b"PRIVATE KEY" in key_file.read_bytes():
            for n, line in enumerate(_pem_bodies(key_file)):
                secrets[f"{key_file.name} line {n}"] = line
    for role, md in metadata.items():  # signatures and the signed payloads themselves
        for n, signature in enumerate(md["signatures"]):
            secrets[f"{role} signature {n}"] = signature["sig"]
        secrets[f"{role} payload"] = json.dumps(md["signed"], separators=(",", ":"), sort_keys=True)[:80]
    assert len(secrets) > 10
    leaked = sorted(name for name, value in secrets.items() if value and value in everything)
    assert leaked == [], f"found in the logs: {leaked}"

    # Every line the services wrote through our loggers is JSON; the request id reaches the signer.
    ours = [json.loads(line) for line in (server_log + signer_log).splitlines() if line.startswith("{")]
    assert len(ours) > 20
    assert any(e.get("request_id") == "trace-publish-0001" and e["logger"] == "tufnotary.server.access"
               for e in ours)
    in_signer = [e for e in map(json.loads, filter(lambda l: l.startswith("{"), signer_log.splitlines()))
                 if e.get("request_id") == "trace-create-key-0002"]
    assert in_signer and any("collection=ops/log-secrets-new" in e["message"] for e in in_signer)
    publish_lines = [e for e in ours if e.get("route") == "/v2/<path:collection>/_trust/tuf/" and e["method"] == "POST"]
    assert publish_lines and all(re.fullmatch(r"[0-9a-f]{32}", e["request_id"]) for e in publish_lines)
    publish_ids = {e["request_id"] for e in publish_lines}
    signer_ids = {e.get("request_id") for e in map(json.loads, filter(lambda l: l.startswith("{"),
                                                                         signer_log.splitlines()))}
    assert publish_ids & signer_ids, "the publish's request id did not reach the signer's log"



def _check_signer_metrics(url: str) -> None:
    """The signer's Prometheus endpoint, on its own plain-HTTP port."""
    text = _get(url).decode()
    assert re.search(r'tufnotary_signer_signatures_total\{algorithm="ed25519",role="timestamp"\} [1-9]', text)
    assert "tufnotary_signer_keystore_duration_seconds_bucket" in text
    assert re.search(r'tufnotary_signer_refusals_total\{method="GetPublicKey",reason="KEY_NOT_FOUND"\} [1-9]', text)
    assert "tufnotary_signer_rpc_duration_seconds_count" in text

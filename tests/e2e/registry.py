"""Real OCI registries for tests: Debian's `docker-registry` (distribution 2.8) on loopback.

`start_registry(workdir, auth=...)` writes a temporary config and storage directory and starts
the registry process: anonymous (`auth=None`), basic (`"htpasswd"`: bcrypt htpasswd file, like
`htpasswd -B`), or the Docker token flow (`"token"`: an in-process token issuer that checks
basic credentials and signs ES256 JWTs with a self-signed certificate the registry trusts
through `rootcertbundle`). `push_image` pushes small images and indexes over the registry API
(no docker engine). Every process is stopped at teardown.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.pgcluster import free_port
from tests.stack import stop_process
from tufnotary.client.reference import Reference, parse_reference
from tufnotary.client.registry import OCI_INDEX, OCI_MANIFEST, Manifest, RegistryClient, sha256_digest

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SERVICE = "tufnotary-test-registry"
ISSUER = "tufnotary-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """A minimal Docker registry token service: basic credentials in, an ES256 JWT out."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        self.users = users
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tufnotary test token issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = workdir / "token-issuer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issued: list[tuple[str | None, list[str]]] = []  # (user, scopes) per token
        # Identity tokens (what `docker login` stores for OAuth2 registries) -> user.
        self.refresh_tokens: dict[str, str] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                status, body = issuer.handle(self.path, self.headers.get("Authorization"))
                self._reply(status, body)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                form = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                status, body = issuer.handle_refresh(parse_qs(form))
                self._reply(status, body)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        query = parse_qs(urlparse(path).query)
        user = None
        if authorization:
            if not authorization.startswith("Basic "):
                return 401, {"errors": [{"code": "UNAUTHORIZED"}]}
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(name) != password:
                return 401, {"errors": [{"code": "UNAUTHORIZED"}]}
            user = name
        return self._issue(user, query.get("scope", []), query.get("service", [""])[0])

    def handle_refresh(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """The OAuth2 form of the token spec: grant_type=refresh_token with an identity token."""
        if form.get("grant_type") != ["refresh_token"]:
            return 400, {"error": "unsupported_grant_type"}
        user = self.refresh_tokens.get((form.get("refresh_token") or [""])[0])
        if user is None:
            return 401, {"error": "invalid_grant"}
        scopes = " ".join(form.get("scope", [])).split()
        return self._issue(user, scopes, form.get("service", [""])[0])

    def _issue(self, user: str | None, scopes: list[str], service: str) -> tuple[int, dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            # Authenticated users get what they ask for; anonymous users nothing.
            if kind == "repository" and user is not None:
                access.append({"type": "repository", "name": repo, "actions": actions.split(",")})
        self.issued.append((user, scopes))
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": service,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8),
                  "access": access}
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        return 200, {"token": token, "access_token": token, "expires_in": 300}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Registry:
    """One running `docker-registry` process."""

    workdir: Path
    host: str  # 127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)
    issuer: TokenIssuer | None = None

    def ref(self, repository_and_tag: str) -> Reference:
        return parse_reference(f"{self.host}/{repository_and_tag}")

    def stop(self) -> None:
        stop_process(self.proc)
        if self.issuer is not None:
            self.issuer.stop()

    def docker_config(self, path: Path, user: str) -> Path:
        """A Docker config file holding `user`'s credentials for this registry."""
        auth = base64.b64encode(f"{user}:{self.users[user]}".encode()).decode()
        data = json.loads(path.read_text()) if path.exists() else {"auths": {}}
        data["auths"][self.host] = {"auth": auth}
        path.write_text(json.dumps(data))
        return path


def start_registry(workdir: Path, auth: str | None = None, users: dict[str, str] | None = None) -> Registry:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    users = dict(users or ({"ci": "ci-password", "admin": "admin-password"} if auth else {}))
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    issuer = None
    if auth == "htpasswd":
        lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}" for u, p in users.items()]
        (workdir / "htpasswd").write_text("\n".join(lines) + "\n")
        config["auth"] = {"htpasswd": {"realm": "tufnotary-test", "path": str(workdir / "htpasswd")}}
    elif auth == "token":
        issuer = TokenIssuer(workdir, users)
        config["auth"] = {"token": {"realm": issuer.url, "service": SERVICE, "issuer": ISSUER,
                                    "rootcertbundle": str(issuer.cert_path)}}
    elif auth is not None:
        raise ValueError(auth)
    # JSON is YAML: no YAML writer needed.
    (workdir / "config.yml").write_text(json.dumps(config))
    log = workdir / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(workdir / "config.yml")], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    registry = Registry(workdir, f"127.0.0.1:{port}", proc, users, issuer)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            registry.stop()
            raise RuntimeError(f"docker-registry exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1).close()
            return registry
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return registry
        except OSError:
            pass
        if time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(f"docker-registry not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _push_blob(client: RegistryClient, ref: Reference, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if not client.blob_exists(ref, digest):
        client.push_blob(ref, data, digest, len(data))
    return {"digest": digest, "size": len(data)}


def push_image(client: RegistryClient, ref: Reference, content: bytes,
               artifact_type: str = "application/vnd.oci.image.config.v1+json") -> Manifest:
    """Push a one-layer image (or artifact) whose layer is `content`; tag it as `ref` says."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": artifact_type, **_push_blob(client, ref, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_push_blob(client, ref, content)}],
    }
    data = json.dumps(doc, indent=2).encode()
    manifest = Manifest(ref, sha256_digest(data), OCI_MANIFEST, data)
    client.put_manifest(ref, manifest)
    return manifest


def push_index(client: RegistryClient, ref: Reference, children: list[Manifest]) -> Manifest:
    """Push an OCI index over already pushed manifests (image, SBOM, source...)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": m.media_type, "digest": m.digest, "size": m.length,
                       "annotations": {"org.example.part": m.reference.tag or ""}} for m in children],
    }
    data = json.dumps(doc, indent=2).encode()
    manifest = Manifest(ref, sha256_digest(data), OCI_INDEX, data)
    client.put_manifest(ref, manifest)
    return manifest


def write_credential_helper(bin_dir: Path, name: str, answers: dict[str, tuple[str, str]]) -> Path:
    """A `docker-credential-<name>` program speaking Docker's credential helper protocol.

    `get` reads the server on stdin and prints `{"ServerURL", "Username", "Secret"}` from
    `answers`, or says "credentials not found in native keychain" and exits 1, as the real
    helpers do. Each call is appended to `<bin_dir>/<name>.calls` (action and server, no secret).
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(f"""#!{sys.executable}
import json, sys
answers = {json.dumps(answers)!r}
answers = json.loads(answers)
server = sys.stdin.read().strip()
with open({str(bin_dir / f"{name}.calls")!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + " " + server + "\\n")
if sys.argv[1:] != ["get"]:
    print("unsupported action", file=sys.stderr)
    sys.exit(2)
if server not in answers:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = answers[server]
print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
""")
    program.chmod(0o755)
    return program

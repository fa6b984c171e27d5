"""The OCI registry client's own checks: references, auth parsing, credentials, and digests and
media types checked here even when a registry lies (an in-process HTTP server plays the lying
registry: the real docker-registry never lies, so it cannot show these refusals)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.registry import write_credential_helper
from tufnotary.client.errors import (
    CredentialHelperError,
    RegistryError,
    RegistryIntegrityError,
    RegistryUnreachableError,
    UsageError,
)
from tufnotary.client.reference import is_loopback, parse_reference, parse_repository
from tufnotary.client.registry import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    check_manifest,
)
from tufnotary.client.challenge import parse_challenge
from tufnotary.client.registryauth import CredentialStore, TokenCache

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 1},
                       "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@pytest.mark.parametrize("text,expected", [
    ("registry.example.com/networking/net-monitor:1.0", ("registry.example.com", "networking/net-monitor", "1.0", None)),
    ("localhost:5000/web", ("localhost:5000", "web", "latest", None)),
    (f"127.0.0.1:5000/a/b@{DIGEST}", ("127.0.0.1:5000", "a/b", None, DIGEST)),
    (f"r.io/a:v1@{DIGEST}", ("r.io", "a", "v1", DIGEST)),
    ("alpine", ("docker.io", "library/alpine", "latest", None)),
    ("wabbit/net-monitor:2", ("docker.io", "wabbit/net-monitor", "2", None)),
])
def test_parse_reference(text: str, expected: tuple[Any, ...]) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("text", ["", "r.io/UPPER:1", "r.io/a:-bad", "r.io/a@sha256:short", "r.io//a"])
def test_parse_reference_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="invalid"):
        parse_reference(text)


def test_parse_repository_has_no_tag() -> None:
    assert parse_repository("r.io/a/b").name == "r.io/a/b"
    with pytest.raises(UsageError):
        parse_repository("r.io/a/b:1")


def test_loopback_and_plain_http() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com:5000") and not is_loopback("10.0.0.1")
    client = RegistryClient(CredentialStore({}))
    assert client.base_url(parse_reference("registry.example.com/a")).startswith("https://")
    assert client.base_url(parse_reference("127.0.0.1:5000/a")).startswith("http://")
    allowed = RegistryClient(CredentialStore({}), insecure=["registry.lan:5000"])
    assert allowed.base_url(parse_reference("registry.lan:5000/a")).startswith("http://")


def test_parse_challenge() -> None:
    c = parse_challenge('Bearer realm="https://auth.example.com/token",service="registry",'
                        'scope="repository:a/b:pull,push"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example.com/token", "service": "registry",
                        "scope": "repository:a/b:pull,push"}
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"


def test_credentials_from_docker_config_then_env(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {
        "https://registry.example.com/v1/": {"auth": base64.b64encode(b"ci:s3cret").decode()},
    }}))
    store = CredentialStore({"TUFNOTARY_REGISTRY_AUTH_FILE": str(config),
                             "TUFNOTARY_REGISTRY_USERNAME": "env", "TUFNOTARY_REGISTRY_PASSWORD": "pw"})
    creds = store.get("registry.example.com")
    assert creds is not None and (creds.username, creds.password) == ("ci", "s3cret")
    assert "s3cret" not in repr(creds)
    other = store.get("other.example.com")
    assert other is not None and other.username == "env"
    assert CredentialStore({"DOCKER_CONFIG": str(tmp_path / "none")}).get("x.io") is None


def _helper_script(bin_dir: Path, name: str, body: str) -> None:
    """A misbehaving `docker-credential-<name>`: a shell script running `body`."""
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def _helper_env(tmp_path: Path, config: dict[str, Any]) -> dict[str, str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return {"TUFNOTARY_REGISTRY_AUTH_FILE": str(path), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}


def test_credential_helpers_in_dockers_order(tmp_path: Path) -> None:
    write_credential_helper(tmp_path / "bin", "store", {"a.example.com": ("store-user", "store-secret"),
                                                      "https://index.docker.io/v1/": ("hub", "hub-secret")})
    write_credential_helper(tmp_path / "bin", "special", {"b.example.com": ("<token>", "refresh-me")})
    env = _helper_env(tmp_path, {
        "credsStore": "store", "credHelpers": {"b.example.com": "special"},
        "auths": {"c.example.com": {"auth": base64.b64encode(b"file-user:file-pw").decode()}}})
    store = CredentialStore(env)
    a = store.get("a.example.com")
    assert a is not None and (a.username, a.password, a.identity_token) == ("store-user", "store-secret", None)
    b = store.get("B.example.com")  # credHelpers beats credsStore; <token> is an identity token
    assert b is not None and b.identity_token == "refresh-me"
    c = store.get("c.example.com")  # the store holds nothing for c: the auths entry applies
    assert c is not None and c.username == "file-user"
    hub = store.get("docker.io")  # Docker Hub is asked for under its legacy server URL
    assert hub is not None and hub.username == "hub"
    assert store.get("d.example.com") is None
    store.get("a.example.com")  # asked once per registry and command
    calls = (tmp_path / "bin" / "store.calls").read_text().splitlines()
    assert calls == ["get a.example.com", "get c.example.com", "get https://index.docker.io/v1/",
                     "get d.example.com"]
    assert "refresh-me" not in repr(b)


def test_identity_token_from_auths_entry(tmp_path: Path) -> None:
    env = _helper_env(tmp_path, {"auths": {"r.example.com": {"identitytoken": "idt"}}})
    creds = CredentialStore(env).get("r.example.com")
    assert creds is not None and creds.identity_token == "idt"


def test_credential_helper_missing_or_failing_is_a_clear_error(tmp_path: Path) -> None:
    env = _helper_env(tmp_path, {"credsStore": "nosuch"})
    with pytest.raises(CredentialHelperError, match="docker-credential-nosuch .* is not on PATH: install it"):
        CredentialStore(env).get("a.example.com")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _helper_script(bin_dir, "broken", "echo 'keyring locked' >&2\necho 'secret-on-stdout'\nexit 3")
    env = _helper_env(tmp_path, {"credsStore": "broken"})
    with pytest.raises(CredentialHelperError, match="failed for a.example.com \\(exit status 3\\): keyring locked") as e:
        CredentialStore(env).get("a.example.com")
    assert "secret-on-stdout" not in e.value.message
    _helper_script(bin_dir, "garbled", "echo '{\"Username\": \"u\", \"Password\": \"leaked-secret\"}'")
    env = _helper_env(tmp_path, {"credsStore": "garbled"})
    with pytest.raises(CredentialHelperError, match="without a JSON") as e:
        CredentialStore(env).get("a.example.com")
    assert "leaked-secret" not in e.value.message


@pytest.mark.parametrize("name", ["../evil", "a b", "", 7])
def test_credential_helper_name_must_be_a_word(tmp_path: Path, name: Any) -> None:
    env = _helper_env(tmp_path, {"credHelpers": {"a.example.com": name}})
    with pytest.raises(UsageError, match="must name a credential helper"):
        CredentialStore(env).get("a.example.com")


def test_token_cache_per_scope() -> None:
    cache = TokenCache()
    pull, push = frozenset({"repository:a:pull"}), frozenset({"repository:a:pull,push"})
    cache.put("realm", "svc", pull, "t1", 300)
    assert cache.get("realm", "svc", pull) == "t1"
    assert cache.get("realm", "svc", push) is None
    cache.put("realm", "svc", push, "t2", 0)  # already expired (renewed 10 s early)
    assert cache.get("realm", "svc", push) is None


def test_check_manifest_media_type() -> None:
    ref = parse_reference("r.io/a:1")
    assert check_manifest(ref, MANIFEST, OCI_MANIFEST, DIGEST).media_type == OCI_MANIFEST
    with pytest.raises(RegistryIntegrityError, match="declares"):
        check_manifest(ref, MANIFEST, DOCKER_MANIFEST, DIGEST)
    with pytest.raises(RegistryError, match="not an OCI or Docker"):
        check_manifest(ref, MANIFEST, "application/json", DIGEST)
    index_shaped = json.dumps({"schemaVersion": 2, "config": {}}).encode()
    with pytest.raises(RegistryIntegrityError, match="does not match its media type"):
        check_manifest(ref, index_shaped, OCI_INDEX, DIGEST)


class LyingRegistry:
    """Serves one manifest; `announce` is the Docker-Content-Digest header it sends."""

    def __init__(self, body: bytes, announce: str, content_type: str = OCI_MANIFEST) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, with_body: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", owner.content_type)
                self.send_header("Docker-Content-Digest", owner.announce)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(owner.body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802
                owner.paths.append(self.path)
                self._answer(True)

        self.body, self.announce, self.content_type = body, announce, content_type
        self.paths: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def lying() -> Iterator[list[LyingRegistry]]:
    made: list[LyingRegistry] = []
    yield made
    for r in made:
        r.httpd.shutdown()
        r.httpd.server_close()


def test_resolve_gets_by_announced_digest_and_hashes_itself(lying: list[LyingRegistry]) -> None:
    honest = LyingRegistry(MANIFEST, DIGEST)
    lying.append(honest)
    manifest = RegistryClient(CredentialStore({})).resolve(parse_reference(f"{honest.host}/a:1"))
    assert manifest.digest == DIGEST and honest.paths == [f"/v2/a/manifests/{DIGEST}"]


def test_resolve_refuses_a_digest_header_that_lies(lying: list[LyingRegistry]) -> None:
    liar = LyingRegistry(MANIFEST, "sha256:" + "b" * 64)
    lying.append(liar)
    with pytest.raises(RegistryIntegrityError, match=f"hashes to {DIGEST}"):
        RegistryClient(CredentialStore({})).resolve(parse_reference(f"{liar.host}/a:1"))


def test_resolve_by_digest_refuses_other_bytes(lying: list[LyingRegistry]) -> None:
    liar = LyingRegistry(MANIFEST, DIGEST)
    lying.append(liar)
    wanted = "sha256:" + "c" * 64
    with pytest.raises(RegistryIntegrityError):
        RegistryClient(CredentialStore({})).resolve(parse_reference(f"{liar.host}/a@{wanted}"))


def test_unreachable_registry() -> None:
    with pytest.raises(RegistryUnreachableError, match="cannot reach registry"):
        RegistryClient(CredentialStore({}), timeout=2).resolve(parse_reference("127.0.0.1:9/a:1"))

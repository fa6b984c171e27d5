"""The Notary v2 scenarios (shared/seeds/001) end to end: the `tufnotary` CLI against the real
server stack and real Debian `docker-registry` processes (anonymous, htpasswd, token auth).

Publishers and consumers each have their own trust directory; consumers find server, collection,
pinned root and required roles in their trust policy file. Collections are named independently
of the registry hosts: `acme/web` backs `<A>/dev/web`, `<A>/prod/web` and `<B>/archive/web`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.registry import Registry, push_image, push_index, start_registry, write_credential_helper
from tufnotary.client.registry import OCI_MANIFEST, RegistryClient
from tufnotary.client.registryauth import CredentialStore

BIN = Path(sys.executable).parent
PASSPHRASE = "oci scenario passphrase"
_n = iter(range(10_000))


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """Registry A (anonymous), B (token auth) and C (htpasswd), on loopback."""
    base = tmp_path_factory.mktemp("registries")
    started: list[Registry] = []
    try:
        for name, auth in (("a", None), ("b", "token"), ("c", "htpasswd")):
            started.append(start_registry(base / name, auth))
        docker_config = base / "docker-config.json"
        for r in started[1:]:
            r.docker_config(docker_config, "ci")
        yield started[0], started[1], started[2], docker_config
    finally:
        for r in started:
            r.stop()


@pytest.fixture
def world(sqlite_stack, registries, tmp_path):
    a, b, c, docker_config = registries
    return World(sqlite_stack, a, b, c, docker_config, tmp_path, f"acme/web-{next(_n)}")


class World:
    def __init__(self, stack, a: Registry, b: Registry, c: Registry, docker_config: Path,
                 tmp: Path, collection: str) -> None:
        self.stack, self.a, self.b, self.c = stack, a, b, c
        self.docker_config, self.tmp, self.collection = docker_config, tmp, collection
        self.registry = RegistryClient(CredentialStore({"TUFNOTARY_REGISTRY_AUTH_FILE": str(docker_config)}))

    def run(self, who: str, *args: str, server: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
        env["TUFNOTARY_PASSPHRASE"] = PASSPHRASE
        env["TUFNOTARY_REGISTRY_AUTH_FILE"] = str(self.docker_config)
        env.update(extra)
        return subprocess.run(
            [str(BIN / "tufnotary"), "--server", server or self.stack.url, "--trust-dir",
             str(self.tmp / who), *args],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )

    def ok(self, who: str, *args: str, **kw: Any) -> str:
        r = self.run(who, *args, **kw)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def fails(self, status: int, who: str, *args: str, phrases: tuple[str, ...] = (), **kw: Any) -> str:
        r = self.run(who, *args, **kw)
        assert r.returncode == status, r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        for phrase in phrases:
            assert phrase in r.stderr + r.stdout, r.stderr + r.stdout
        return r.stdout + r.stderr

    def root_file(self) -> Path:
        """The root the owner handed out right after `init` (version 1)."""
        return self.tmp / "root-v1.json"

    def policy(self, who: str, *scopes: dict) -> None:
        """Write `who`'s trust policy: each scope maps to this world's collection and root."""
        lines = []
        for s in scopes:
            s = {"server": self.stack.url, "collection": self.collection, "root": str(self.root_file()), **s}
            lines.append("[[scope]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in s.items() if v is not None]
        path = self.tmp / who / "trust-policy.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def key(self, who: str, *args: str) -> tuple[str, Path]:
        keyid = self.ok(who, "key", "generate", *args).strip()
        exported = self.tmp / f"{who}-{keyid[:12]}.pub.json"
        exported.write_text(self.ok(who, "key", "export", keyid))
        return keyid, exported

    def delegate(self, holder: str, role: str, paths: str = "*") -> str:
        """The owner delegates `paths` to `role`, held by a key only `holder` has."""
        keyid, pub = self.key(holder)
        request = self.tmp / f"{role.replace('/', '-')}.request.json"
        self.ok("owner", "delegation", "add", self.collection, role, "--key", str(pub), "--paths", paths,
                "--save", str(request))
        self.ok(holder, "sign", "--add-signature", str(request))
        self.ok("owner", "publish", self.collection, "--from", str(request))
        self.ok(holder, "list", self.collection, "--root", str(self.root_file()))
        return keyid


def _init(w: World, *args: str) -> None:
    w.ok("owner", "init", w.collection, *args)
    pinned = w.tmp / "owner" / "collections" / w.collection / "metadata" / "root.json"
    w.root_file().write_bytes(pinned.read_bytes())


def test_scenario1_local_build_sign_validate_by_file_digest(world):
    w = world
    _init(w)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode()
    local = w.tmp / "net-monitor-abc123.manifest.json"
    local.write_bytes(manifest)
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    w.ok("owner", "add", w.collection, "net-monitor:abc123", "--digest", digest, "--length", str(len(manifest)),
         "--custom", json.dumps({"mediaType": OCI_MANIFEST}))
    w.ok("owner", "publish", w.collection)
    out = w.ok("consumer", "verify", "--root", str(w.root_file()), w.collection, "net-monitor:abc123", str(local))
    assert digest.split(":")[1] in out
    local.write_bytes(manifest + b" ")
    w.fails(3, "consumer", "verify", w.collection, "net-monitor:abc123", str(local), phrases=("does not match",))


def test_scenario2_sign_copy_to_another_repository_and_registry_still_verifies(world):
    w = world
    _init(w)
    built = push_image(w.registry, w.a.ref("dev/net-monitor:1.0"), b"net-monitor build 1")
    w.ok("owner", "sign", f"{w.a.host}/dev/net-monitor:1.0", "--collection", w.collection)
    # Registry B (token auth) and another repository; consumers trust both through one collection.
    dst = f"{w.b.host}/networking/net-monitor:1.0"
    out = w.ok("owner", "copy", f"{w.a.host}/dev/net-monitor:1.0", dst)
    assert built.digest in out
    w.policy("consumer", {"registry": f"{w.a.host}/dev/*"}, {"registry": f"{w.b.host}/networking/*"})
    for ref in (f"{w.a.host}/dev/net-monitor:1.0", dst):
        assert w.ok("consumer", "verify", ref).strip() == ref.rsplit(":", 1)[0] + "@" + built.digest
    # The token service issued a push token for the copy and pull tokens per scope.
    assert any(user == "ci" and any("networking/net-monitor:pull,push" in s for s in scopes)
               for user, scopes in w.b.issuer.issued)
    # A new tag name is a new target: it must be signed before it verifies (no tag substitution).
    w.ok("owner", "copy", dst, f"{w.b.host}/networking/net-monitor:latest")
    w.fails(10, "consumer", "verify", f"{w.b.host}/networking/net-monitor:latest", phrases=("latest is not signed",))
    # Pull by digest, as printed: a digest the collection signs under no name is refused too.
    w.fails(10, "consumer", "verify", f"{w.b.host}/networking/net-monitor@{built.digest}")
    # No policy for registry C, and no --collection: refused, naming the setting.
    w.fails(1, "consumer", "verify", f"{w.c.host}/networking/net-monitor:1.0", phrases=("[[scope]]", "root-sha256"))


def test_scenario3_ci_key_vs_prod_key(world):
    w = world
    _init(w)
    w.delegate("ci", "targets/ci")
    w.delegate("prod", "targets/prod")
    push_image(w.registry, w.a.ref("team/web:1.0-alpine"), b"web alpine")
    w.ok("ci", "sign", f"{w.a.host}/team/web:1.0-alpine", "--collection", w.collection, "--role", "targets/ci")
    w.policy("dev", {"registry": f"{w.a.host}/*"})
    w.policy("prodhost", {"registry": f"{w.a.host}/*", "require-roles": ["targets/prod"]})
    w.ok("dev", "verify", f"{w.a.host}/team/web:1.0-alpine")
    w.fails(10, "prodhost", "verify", f"{w.a.host}/team/web:1.0-alpine",
            phrases=("required role targets/prod does not sign 1.0-alpine",))
    w.ok("prod", "sign", f"{w.a.host}/team/web:1.0-alpine", "--collection", w.collection, "--role", "targets/prod")
    w.ok("prodhost", "verify", f"{w.a.host}/team/web:1.0-alpine")


def test_scenario4_promotion_dev_to_prod_keeps_both_signatures(world):
    w = world
    _init(w)
    w.delegate("ci", "targets/dev")
    w.delegate("prod", "targets/prod")
    built = push_image(w.registry, w.a.ref("dev/alpha-team/web:1abc"), b"web 1abc")
    w.ok("ci", "sign", f"{w.a.host}/dev/alpha-team/web:1abc", "--collection", w.collection, "--role", "targets/dev")
    scopes = [{"registry": f"{w.a.host}/dev/*"}, {"registry": f"{w.a.host}/prod/*"}]
    for who in ("prod", "prodhost"):
        w.policy(who, *scopes)
    out = w.ok("prod", "promote", f"{w.a.host}/dev/alpha-team/web:1abc", f"{w.a.host}/prod/web:1abc",
               "--role", "targets/prod")
    assert "mounted" in out and "copied" not in out, out  # cross-repository blob mount
    w.policy("prodhost", *[{**s, "require-roles": ["targets/dev", "targets/prod"]} for s in scopes])
    for ref in (f"{w.a.host}/prod/web:1abc", f"{w.a.host}/dev/alpha-team/web:1abc"):
        assert w.ok("prodhost", "verify", ref).strip().endswith(built.digest)
    # Archive to another registry: the digest is unchanged and both signatures still apply.
    w.ok("prod", "copy", f"{w.a.host}/prod/web:1abc", f"{w.c.host}/archive/web:1abc")
    w.policy("auditor", {"registry": f"{w.c.host}/archive/*", "require-roles": ["targets/dev", "targets/prod"]})
    assert w.ok("auditor", "verify", f"{w.c.host}/archive/web:1abc").strip().endswith(built.digest)


def test_scenario5_air_gapped_bundle(world):
    w = world
    _init(w)
    built = push_image(w.registry, w.a.ref("networking/net-monitor:1.0"), b"net-monitor 1.0")
    w.ok("owner", "sign", f"{w.a.host}/networking/net-monitor:1.0", "--collection", w.collection)
    bundle = w.tmp / "net-monitor.bundle.json"
    w.ok("owner", "bundle", "export", w.collection, "-o", str(bundle))
    # Inside the restricted network the metadata server cannot be reached at all.
    unreachable = "http://127.0.0.1:9"
    w.policy("airgap", {"registry": f"{w.a.host}/networking/*", "server": unreachable})
    ref = f"{w.a.host}/networking/net-monitor:1.0"
    w.fails(4, "airgap", "verify", ref, phrases=("server http://127.0.0.1:9",))
    assert w.ok("airgap", "verify", ref, "--bundle", str(bundle)).strip().endswith(built.digest)
    # Freshness is enforced: judged after the timestamp expires, the bundle is refused ...
    w.fails(12, "airgap", "verify", ref, "--bundle", str(bundle), "--as-of", "2999-01-01T00:00:00Z",
            phrases=("expired",))
    # ... and an older bundle after a newer one is a rollback.
    w.ok("owner", "sign", f"{w.a.host}/networking/net-monitor:1.0", "--collection", w.collection)
    newer = w.tmp / "newer.bundle.json"
    w.ok("owner", "bundle", "export", w.collection, "-o", str(newer))
    w.ok("airgap", "verify", ref, "--bundle", str(newer))
    w.fails(13, "airgap", "verify", ref, "--bundle", str(bundle), phrases=("rollback",))
    # A tampered bundle is refused (by a consumer that has not cached the genuine metadata).
    import base64

    doc = json.loads(newer.read_text())
    name = next(n for n in doc["files"] if n.endswith(".targets.json"))
    targets = json.loads(base64.b64decode(doc["files"][name]))
    targets["signed"]["targets"]["1.0"]["hashes"]["sha256"] = "0" * 64
    doc["files"][name] = base64.b64encode(json.dumps(targets).encode()).decode()
    tampered = w.tmp / "tampered.bundle.json"
    tampered.write_text(json.dumps(doc))
    w.policy("airgap2", {"registry": f"{w.a.host}/networking/*", "server": unreachable})
    w.fails(3, "airgap2", "verify", ref, "--bundle", str(tampered), phrases=("not signed by the trusted keys",))
    w.ok("airgap2", "verify", ref, "--bundle", str(newer))


def test_scenario6_vendor_and_consumer_signatures_both_required(world):
    w = world
    _init(w)  # the vendor (wabbit-networks) owns the collection and signs with targets
    w.delegate("acme", "targets/acme")
    push_image(w.registry, w.a.ref("mydb:1.0"), b"mydb patched")
    w.ok("owner", "sign", f"{w.a.host}/mydb:1.0", "--collection", w.collection)
    w.ok("owner", "copy", f"{w.a.host}/mydb:1.0", f"{w.a.host}/mydb:1.0-202002131000")
    w.ok("owner", "sign", f"{w.a.host}/mydb:1.0-202002131000", "--collection", w.collection)
    w.policy("prodhost", {"registry": f"{w.a.host}/mydb", "require-roles": ["targets", "targets/acme"]})
    ref = f"{w.a.host}/mydb:1.0-202002131000"
    w.fails(10, "prodhost", "verify", ref, phrases=("targets/acme does not sign",))
    w.ok("acme", "sign", ref, "--collection", w.collection, "--role", "targets/acme")
    w.ok("prodhost", "verify", ref)


def test_scenario7_unsigned_push_to_existing_tag(world):
    w = world
    _init(w)
    good = push_image(w.registry, w.c.ref("net-monitor:1.0"), b"good build")
    push_image(w.registry, w.c.ref("net-monitor:1.1"), b"good build 1.1")
    for tag in ("1.0", "1.1"):
        w.ok("owner", "sign", f"{w.c.host}/net-monitor:{tag}", "--collection", w.collection)
    w.policy("consumer", {"registry": f"{w.c.host}/net-monitor"})
    # The attacker has registry credentials, not the signing keys.
    evil = push_image(w.registry, w.c.ref("net-monitor:1.0"), b"good build + exploit")
    push_image(w.registry, w.c.ref("net-monitor:debug"), b"unsigned extra")
    ref = f"{w.c.host}/net-monitor:1.0"
    w.fails(11, "consumer", "verify", ref, phrases=(evil.digest, good.digest, "moved"))
    out = w.fails(11, "consumer", "audit", f"{w.c.host}/net-monitor")
    assert f"MOVED      registry {evil.digest} signed {good.digest}" in out
    assert "1.1                      signed" in out and "debug                    UNSIGNED" in out
    history = w.ok("consumer", "history", w.collection, "1.0")
    assert good.digest in history and evil.digest not in history
    # This server runs without authentication: the audit log records no subject, and says so.
    assert "recorded 20" in history and "by anonymous (no authenticated subject)" in history, history
    # Restore the tag to the signed manifest, by digest: verify and audit recover.
    w.ok("owner", "copy", f"{w.c.host}/net-monitor@{good.digest}", ref)
    assert w.ok("consumer", "verify", ref).strip().endswith(good.digest)


def _ci_key_leaks(w: World, repo: str) -> tuple[str, dict[str, str]]:
    """targets/ci is signed by either the CI key (on the runner) or the release key (the owner's).
    Release signs 1.0 and 2.0, CI signs nightly; then the CI key leaks and the attacker moves 1.0
    and adds `evil`, signing both with it. Returns the CI key id and the digests by name."""
    _init(w)
    ci, ci_pub = w.key("ci")
    _, release_pub = w.key("owner")
    w.ok("owner", "delegation", "add", w.collection, "targets/ci", "--key", str(ci_pub), "--key",
         str(release_pub), "--paths", "*")
    w.ok("ci", "list", w.collection, "--root", str(w.root_file()))
    digests = {}
    for tag, who in (("1.0", "owner"), ("2.0", "owner"), ("nightly", "ci")):
        digests[tag] = push_image(w.registry, w.a.ref(f"{repo}:{tag}"), f"{tag} build".encode()).digest
        w.ok(who, "sign", f"{w.a.host}/{repo}:{tag}", "--collection", w.collection, "--role", "targets/ci")
    w.policy("consumer", {"registry": f"{w.a.host}/{repo}"})
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:1.0").strip().endswith(digests["1.0"])
    # The attacker holds the CI key (the "ci" trust directory) and registry credentials.
    for tag in ("1.0", "evil"):
        digests[f"attacker {tag}"] = push_image(w.registry, w.a.ref(f"{repo}:{tag}"), b"malware").digest
        w.ok("ci", "sign", f"{w.a.host}/{repo}:{tag}", "--collection", w.collection, "--role", "targets/ci")
    for tag in ("1.0", "evil"):
        assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:{tag}").strip().endswith(digests["attacker 1.0"])
    return ci, digests


def test_scenario8_leaked_key_revoked(world):
    w = world
    repo = "leak/web"
    ci, d = _ci_key_leaks(w, repo)
    hexes = {name: digest.split(":")[1] for name, digest in d.items()}
    # The dry run shows the plan and changes nothing.
    plan = w.ok("owner", "key", "revoke", w.collection, ci, "--dry-run")
    assert "dry run: nothing published" in plan
    assert f"would be reverted targets/ci 1.0: sha256:{hexes['attacker 1.0']}" in plan
    assert f"-> sha256:{hexes['1.0']}" in plan
    assert "would be dropped targets/ci evil" in plan and "would be dropped targets/ci nightly" in plan
    assert "2.0" not in plan.split("targets signed by")[0]
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:evil").strip().endswith(d["attacker evil"])

    out = w.ok("owner", "key", "revoke", w.collection, ci)
    assert f"revoked {ci}" in out and "would be" not in out
    assert f"reverted targets/ci 1.0: sha256:{hexes['attacker 1.0']}" in out and f"-> sha256:{hexes['1.0']}" in out
    assert f"dropped targets/ci evil: sha256:{hexes['attacker evil']}" in out
    assert f"dropped targets/ci nightly: sha256:{hexes['nightly']}" in out  # signed by CI alone: not provable
    # After refresh: the attacker's new tag is not signed; the moved tag is signed for its good
    # digest again (the registry still names the attacker's, so it is reported as moved) ...
    w.fails(10, "consumer", "verify", f"{w.a.host}/{repo}:evil", phrases=("evil is not signed",))
    w.fails(11, "consumer", "verify", f"{w.a.host}/{repo}:1.0", phrases=(d["1.0"], d["attacker 1.0"]))
    # ... and verifies once the registry tag is restored; untouched content still verifies.
    w.ok("owner", "copy", f"{w.a.host}/{repo}@{d['1.0']}", f"{w.a.host}/{repo}:1.0")
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:1.0").strip().endswith(d["1.0"])
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:2.0").strip().endswith(d["2.0"])
    # The leaked key signs nothing any more, and history shows what it signed, version by version.
    again = w.run("ci", "sign", f"{w.a.host}/{repo}:evil", "--collection", w.collection, "--role", "targets/ci")
    assert again.returncode != 0
    w.fails(10, "consumer", "verify", f"{w.a.host}/{repo}:evil")
    history = w.ok("consumer", "history", w.collection, "evil")
    assert ci[:16] in history and d["attacker evil"] in history and "REMOVED" in history
    # Revoking it again is refused and changes nothing.
    w.fails(1, "owner", "key", "revoke", w.collection, ci, phrases=(f"no role of {w.collection} lists key",))


def test_scenario8_leaked_key_revoked_since_the_leak(world):
    """--since: the CI key was honest until it leaked; what it signed before stays trusted."""
    w = world
    repo = "since/web"
    ci, d = _ci_key_leaks(w, repo)
    # The owner finds the first version the attacker signed in the history of the moved tag.
    (line,) = [ln for ln in w.ok("consumer", "history", w.collection, "1.0").splitlines()
               if d["attacker 1.0"] in ln]
    leak = int(line.split("targets/ci v")[1].split()[0])
    # A version the role never reached is refused, and nothing changes.
    w.fails(1, "owner", "key", "revoke", w.collection, ci, "--since", "99",
            phrases=("--since 99 is not a version", "nothing was changed"))
    w.fails(2, "owner", "key", "revoke", w.collection, ci, "--since", "five", phrases=("invalid int value",))
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:evil").strip().endswith(d["attacker evil"])
    plan = w.ok("owner", "key", "revoke", w.collection, ci, "--since", str(leak), "--dry-run")
    assert f"trusted (--since {leak}): targets/ci version(s) {leak - 1}, signed by {ci[:16]}" in plan
    assert "would be dropped targets/ci evil" in plan and "nightly" not in plan.split("targets signed by")[0]

    out = w.ok("owner", "key", "revoke", w.collection, ci, "--since", str(leak))
    assert f"dropped targets/ci evil: {d['attacker evil']}" in out
    assert f"reverted targets/ci 1.0: {d['attacker 1.0']}" in out
    # The pre-leak CI tag survives; the attacker's tag does not.
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:nightly").strip().endswith(d["nightly"])
    w.fails(10, "consumer", "verify", f"{w.a.host}/{repo}:evil", phrases=("evil is not signed",))
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:2.0").strip().endswith(d["2.0"])


def test_scenario8_retired_key_keep_content(world):
    """--keep-content: the owner knows the key was retired, not stolen; its content stays trusted."""
    w = world
    repo = "retired/web"
    ci, d = _ci_key_leaks(w, repo)
    out = w.ok("owner", "key", "revoke", w.collection, ci, "--keep-content")
    assert f"kept (--keep-content) targets/ci evil: {d['attacker evil']}" in out
    assert "only keep it if the key was retired" in out
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:evil").strip().endswith(d["attacker evil"])
    assert w.ok("consumer", "verify", f"{w.a.host}/{repo}:nightly").strip().endswith(d["nightly"])
    assert w.run("ci", "sign", f"{w.a.host}/{repo}:2.0", "--collection", w.collection,
                 "--role", "targets/ci").returncode != 0


def test_scenario9_algorithm_deprecated(world):
    w = world
    old_key = w.ok("owner", "key", "generate", "--type", "ecdsa").strip()
    _init(w, "--targets-key", old_key)
    push_image(w.registry, w.a.ref("algo/web:1.0"), b"signed with ecdsa")
    w.ok("owner", "sign", f"{w.a.host}/algo/web:1.0", "--collection", w.collection)
    ref = f"{w.a.host}/algo/web:1.0"
    w.policy("consumer", {"registry": f"{w.a.host}/algo/*"})
    w.ok("consumer", "verify", ref)  # grace period: both algorithms accepted
    w.policy("consumer", {"registry": f"{w.a.host}/algo/*", "deny-algorithms": ["ecdsa"]})
    w.fails(3, "consumer", "verify", ref, phrases=("denied by 'ecdsa'",))
    # New signatures without rebuilding: an ed25519 targets key signs alongside.
    new_key = w.ok("owner", "key", "generate", "--type", "ed25519").strip()
    w.ok("owner", "key", "add", w.collection, "targets", "--key", new_key)
    assert w.ok("consumer", "verify", ref).strip().endswith(w.registry.resolve(w.a.ref("algo/web:1.0")).digest)


def test_index_children_signed_and_token_registry_refuses_anonymous(world, registries):
    w = world
    _init(w)
    image = push_image(w.registry, w.b.ref("net-monitor:1.0-image"), b"image")
    sbom = push_image(w.registry, w.b.ref("net-monitor:1.0-sbom"), b"sbom", "application/vnd.example.sbom.v1+json")
    index = push_index(w.registry, w.b.ref("net-monitor:1.0"), [image, sbom])
    out = w.ok("owner", "sign", f"{w.b.host}/net-monitor:1.0", "--collection", w.collection, "--index-children")
    assert image.digest in out and sbom.digest in out
    w.policy("consumer", {"registry": f"{w.b.host}/net-monitor"})
    assert w.ok("consumer", "verify", f"{w.b.host}/net-monitor:1.0").strip().endswith(index.digest)
    assert w.ok("consumer", "verify", f"{w.b.host}/net-monitor@{sbom.digest}").strip().endswith(sbom.digest)
    # Without credentials the token service grants nothing: a registry refusal (6), not a trust failure.
    env_less = w.run("consumer", "verify", f"{w.b.host}/net-monitor:1.0")
    assert env_less.returncode == 0
    r = subprocess.run(
        [str(BIN / "tufnotary"), "--server", w.stack.url, "--trust-dir", str(w.tmp / "consumer"), "verify",
         f"{w.b.host}/net-monitor:1.0"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")},
             "TUFNOTARY_REGISTRY_AUTH_FILE": str(w.tmp / "no-such-config.json")},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 6 and "refused anonymous access" in r.stderr, r.stderr
    assert "ci-password" not in r.stderr
    # A registry that is down: exit 5.
    w.policy("consumer", {"registry": "127.0.0.1:9/*"})
    w.fails(5, "consumer", "verify", "127.0.0.1:9/net-monitor:1.0", phrases=("cannot reach registry",))


def test_docker_credential_helpers_with_the_token_registry(world):
    """credHelpers and credsStore (Docker's credential helper protocol) against the token-auth
    registry: a password from one helper, an identity token (`<token>`) from another."""
    w = world
    _init(w)
    built = push_image(w.registry, w.b.ref("helpers/web:1.0"), b"signed with helper credentials")
    bin_dir = w.tmp / "bin"
    write_credential_helper(bin_dir, "ci-vault", {w.b.host: ("ci", w.b.users["ci"])})
    write_credential_helper(bin_dir, "desktop", {w.b.host: ("<token>", "identity-token-of-ci")})
    w.b.issuer.refresh_tokens["identity-token-of-ci"] = "ci"

    def helper_env(name: str, config: dict) -> dict[str, str]:
        path = w.tmp / f"{name}.docker-config.json"
        path.write_text(json.dumps(config))
        return {"TUFNOTARY_REGISTRY_AUTH_FILE": str(path), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    ref = f"{w.b.host}/helpers/web:1.0"
    owner = helper_env("owner", {"credHelpers": {w.b.host: "ci-vault"}, "credsStore": "desktop"})
    w.ok("owner", "sign", ref, "--collection", w.collection, env=owner)
    assert (bin_dir / "ci-vault.calls").read_text().splitlines() == [f"get {w.b.host}"]
    assert not (bin_dir / "desktop.calls").exists()  # credHelpers wins over credsStore

    w.policy("consumer", {"registry": f"{w.b.host}/helpers/*"})
    consumer = helper_env("consumer", {"credsStore": "desktop", "auths": {w.b.host: {}}})
    issued = len(w.b.issuer.issued)
    assert w.ok("consumer", "verify", ref, env=consumer).strip().endswith(built.digest)
    assert any(user == "ci" for user, _ in w.b.issuer.issued[issued:])  # through the refresh token

    # A revoked identity token: the registry refuses (6), naming what to do, never the token.
    del w.b.issuer.refresh_tokens["identity-token-of-ci"]
    out = w.fails(6, "consumer", "verify", ref, env=consumer, phrases=("token service refused the credentials",
                                                                       "docker login"))
    assert "identity-token-of-ci" not in out
    # A helper that is not installed: a local problem (1) that says what to do.
    missing = helper_env("missing", {"credsStore": "osxkeychain"})
    w.fails(1, "consumer", "verify", ref, env=missing,
            phrases=("docker-credential-osxkeychain", "is not on PATH: install it"))

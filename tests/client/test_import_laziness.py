"""Which modules a CLI command loads: each command imports only the code paths it runs.

Start-up cost of `tufnotary` is mostly imports (docs/client.md, "Start-up cost"), so a publish must
not load the OCI, registry, bundle or admin modules, a consumer command not the publisher's, and
`--help` nothing heavy at all. Each command runs in a fresh interpreter (this test process has
imported everything already) that reports its `sys.modules` after `main()` returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.client.conftest import COLLECTION, PASSPHRASE, Client
from tests.client.fake_server import FakeServer
from tufnotary.client.publisher import target_from_digest

_REPORT_MODULES = """
import json, sys
from tufnotary.client.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as e:  # --help
    status = e.code
with open(sys.argv[1], "w") as f:
    json.dump(sorted(sys.modules), f)
sys.exit(status)
"""

THIRD_PARTY = ("tuf", "urllib3", "cryptography", "securesystemslib")
# Client modules of other commands: OCI and registry workflows, bundles, administration, history.
NOT_FOR_PUBLISH = (
    "tufnotary.client.oci", "tufnotary.client.registry", "tufnotary.client.registryauth",
    "tufnotary.client.reference", "tufnotary.client.trustpolicy", "tufnotary.client.bundle",
    "tufnotary.client.admin", "tufnotary.client.history", "tufnotary.client.conformance",
)
NOT_FOR_LOOKUP = NOT_FOR_PUBLISH + (
    "tufnotary.client.publisher", "tufnotary.client.draft", "tufnotary.client.keys",
)


def loaded_by(tmp_path: Path, trust: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `tufnotary ARGV` in a fresh interpreter; its result and the modules it had loaded."""
    report = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFNOTARY_")}
    env |= {"TUFNOTARY_TRUST_DIR": str(trust), "TUFNOTARY_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_MODULES, str(report), *argv],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    return proc, set(json.loads(report.read_text()))


def test_help_loads_no_tuf_http_or_crypto_module(tmp_path: Path) -> None:
    proc, modules = loaded_by(tmp_path, tmp_path / "trust", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "publish" in proc.stdout
    assert sorted(m for m in modules if m.split(".")[0] in THIRD_PARTY) == []
    assert sorted(m for m in modules if m.startswith("tufnotary.")) == [
        "tufnotary.client", "tufnotary.client.cli", "tufnotary.client.errors",
    ]


def test_express_publish_loads_no_python_tuf_signers_or_other_commands_modules(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    client.publisher.stage_add(COLLECTION, target_from_digest("app:v1", "sha256:" + "ab" * 32, 10))

    proc, modules = loaded_by(tmp_path, client.trust.root, "--server", fake_server.url, "publish", COLLECTION)

    assert proc.returncode == 0, proc.stderr
    assert "targets version 2 (1 added" in proc.stdout
    assert "app:v1" in client.consumer.list_targets(COLLECTION).targets
    # python-tuf, securesystemslib (and through it logging), tempfile, http.client (and through it the
    # email package and, over plain HTTP, ssl): each costs every publish 5-30 ms
    assert sorted(m for m in modules if m.split(".")[0] in ("tuf", "securesystemslib", "email")) == []
    assert sorted(modules.intersection({"logging", "tempfile", "http.client", "ssl", "encodings.idna",
                                        "dataclasses", "inspect"})) == []
    # shutil (with zlib, bz2, lzma) only sized argparse's help; hashlib loads the system's OpenSSL for hash bins
    assert sorted(modules.intersection({"shutil", "hashlib"})) == []
    # what only a 401 needs: parsing its challenge, basic credentials (base64 loads binascii and zlib)
    assert sorted(modules.intersection({"tufnotary.client.challenge", "base64", "binascii", "zlib"})) == []
    # an ed25519 key is read and used without cryptography's serialization package or other key types
    assert sorted(modules.intersection({"cryptography.hazmat.primitives.serialization",
                                        "cryptography.hazmat.primitives.asymmetric.ec",
                                        "cryptography.hazmat.primitives.asymmetric.rsa"})) == []
    assert sorted(modules.intersection(NOT_FOR_PUBLISH)) == []
    assert "tomllib" not in modules  # no config file in the trust directory: nothing to parse


def test_full_publish_loads_no_oci_registry_bundle_or_admin_module(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    client.publisher.stage_add(COLLECTION, target_from_digest("app:v1", "sha256:" + "ab" * 32, 10))
    client.trust.role_metadata_path(COLLECTION, "targets").unlink()  # no express publish without it

    proc, modules = loaded_by(tmp_path, client.trust.root, "--server", fake_server.url, "publish", COLLECTION)

    assert proc.returncode == 0, proc.stderr
    assert "targets version 2 (1 added" in proc.stdout
    assert "tuf.ngclient" in modules  # it refreshed the collection first
    assert sorted(modules.intersection(NOT_FOR_PUBLISH)) == []


def test_add_and_remove_load_no_tuf_http_or_crypto_module(client: Client, tmp_path: Path) -> None:
    client.publisher.init(COLLECTION)
    trust = client.trust.root

    added, add_modules = loaded_by(tmp_path, trust, "add", COLLECTION, "app:v1", "--digest",
                                   "sha256:" + "ab" * 32, "--length", "10")
    removed, remove_modules = loaded_by(tmp_path, trust, "remove", COLLECTION, "old:v0")

    assert added.returncode == 0, added.stderr
    assert removed.returncode == 0, removed.stderr
    assert client.publisher.staged(COLLECTION).changes == {
        "app:v1": {"length": 10, "hashes": {"sha256": "ab" * 32}}, "old:v0": None,
    }
    for modules in (add_modules, remove_modules):
        assert sorted(m for m in modules if m.split(".")[0] in THIRD_PARTY) == []


def test_lookup_loads_no_publisher_module(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    client.publisher.stage_add(COLLECTION, target_from_digest("app:v1", "sha256:" + "ab" * 32, 10))
    client.publisher.publish(COLLECTION)

    proc, modules = loaded_by(tmp_path, client.trust.root, "--server", fake_server.url, "lookup",
                              COLLECTION, "app:v1")

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hashes"] == {"sha256": "ab" * 32}
    assert sorted(modules.intersection(NOT_FOR_LOOKUP)) == []

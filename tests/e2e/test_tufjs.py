"""tuf-js (sigstore's TypeScript TUF client), an implementation independent of python-tuf, verifies
what the real server serves: targets, delegations, root rotations and hash bins; and refuses
altered target bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.tuf_http import new_collection, post, static_files

CLIENT_DIR = Path(__file__).parent / "tufjs"


@pytest.fixture(scope="session")
def tufjs() -> list[str]:
    node = shutil.which("node")
    assert node, "node is missing: run `make test`, which installs it"
    assert (CLIENT_DIR / "node_modules" / "tuf-js").is_dir(), "tuf-js is missing: run `make test`"
    return [node, str(CLIENT_DIR / "client.mjs")]


def run_tufjs(tufjs, root: bytes, base_url: str, workdir: Path, paths: list[str], target_url: str = "-"):
    metadata, targets = workdir / "tufjs-metadata", workdir / "tufjs-targets"
    metadata.mkdir(parents=True, exist_ok=True)
    targets.mkdir(exist_ok=True)
    if not (metadata / "root.json").exists():
        (metadata / "root.json").write_bytes(root)
    result = subprocess.run([*tufjs, str(metadata), base_url, str(targets), target_url, *paths],
                            capture_output=True, text=True, timeout=60)
    return result


def test_tufjs_verifies_and_downloads(stack, collection, tmp_path, tufjs):
    repo = new_collection(stack, collection)
    first_root = repo.sign("root")
    old = repo.signers["root"]
    repo.rotate("root")
    repo.bump("root")
    repo.delegate("releases", ["releases/*"])
    repo.add_target("releases/app-1.0.tar", b"release bytes", role="releases")
    repo.add_target("top.txt", b"top")
    repo.bump("targets")
    post(stack, collection, {
        "root": repo.sign("root", signers=old + repo.signers["root"]),
        "targets": repo.sign("targets"),
        "releases": repo.sign("releases"),
    })
    served = tmp_path / "served"
    (served / "releases").mkdir(parents=True)
    (served / "releases" / "app-1.0.tar").write_bytes(b"release bytes")
    (served / "top.txt").write_bytes(b"top")
    with static_files(served) as target_url:
        result = run_tufjs(tufjs, first_root, stack.base(collection), tmp_path,
                           ["top.txt", "releases/app-1.0.tar", "unknown"], target_url)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)["targets"]
        assert answer["unknown"] is None
        assert answer["top.txt"]["length"] == 3
        assert Path(answer["releases/app-1.0.tar"]["downloaded"]).read_bytes() == b"release bytes"
        assert json.loads((tmp_path / "tufjs-metadata" / "root.json").read_bytes())["signed"]["version"] == 2

        (served / "top.txt").write_bytes(b"TOP")
        altered = run_tufjs(tufjs, first_root, stack.base(collection), tmp_path / "again", ["top.txt"], target_url)
        assert altered.returncode == 1
        assert "tuf-js" in altered.stderr


def test_tufjs_follows_hash_bins(stack, collection, tmp_path, tufjs):
    from datetime import timedelta

    from tuf.api.metadata import Delegations, Metadata, SuccinctRoles, Targets

    from tests.tuf_factory import new_signer

    repo = new_collection(stack, collection)
    signer = new_signer()
    succinct = SuccinctRoles([], 1, 4, "bins")
    repo.md("targets").signed.delegations = Delegations(keys={}, succinct_roles=succinct)
    repo.md("targets").signed.add_key(signer.public_key)
    repo.bump("targets")
    uploads = {"targets": repo.sign("targets")}
    for n in range(40):
        path = f"pkg/{n}.whl"
        name = succinct.get_role_for_target(path)
        if name not in repo.roles:
            repo.roles[name] = Metadata(Targets(expires=repo.now + timedelta(days=30)))
            repo.signers[name] = [signer]
        repo.add_target(path, str(n).encode(), role=name)
    uploads.update({name: repo.sign(name) for name in repo.roles if name.startswith("bins-")})
    post(stack, collection, uploads)
    result = run_tufjs(tufjs, repo.sign("root"), stack.base(collection), tmp_path, ["pkg/7.whl", "pkg/39.whl", "pkg/x"])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)["targets"]
    assert answer["pkg/7.whl"]["length"] == 1 and answer["pkg/39.whl"]["length"] == 2
    assert answer["pkg/x"] is None

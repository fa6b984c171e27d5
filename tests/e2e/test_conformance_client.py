"""`tufnotary-conformance` (the tuf-conformance client-under-test CLI) against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.tuf_http import get, new_collection, post, static_files

BIN = Path(sys.executable).parent / "tufnotary-conformance"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60)


def test_init_refresh_download_and_cache(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    repo.add_target("dir/artifact.txt", b"artifact v1")
    repo.bump("targets")
    post(stack, collection, {"targets": repo.sign("targets")})
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.sign("root"))
    metadata = tmp_path / "metadata"
    base = stack.base(collection)

    init = run("--metadata-dir", str(metadata), "init", str(root_file))
    assert init.returncode == 0, init.stderr
    assert (metadata / "root.json").read_bytes() == root_file.read_bytes()

    refresh = run("--metadata-dir", str(metadata), "--metadata-url", base, "refresh")
    assert refresh.returncode == 0, refresh.stderr
    for role in ("timestamp", "snapshot", "targets"):
        assert (metadata / f"{role}.json").read_bytes() == get(base + f"{role}.json")
    assert not (metadata / "root.json").is_symlink()
    assert not any(p.name[0].isdigit() for p in metadata.iterdir())  # unversioned names only

    served, targets = tmp_path / "served", tmp_path / "targets"
    (served / "dir").mkdir(parents=True)
    (served / "dir" / "artifact.txt").write_bytes(b"artifact v1")
    args = ["--metadata-dir", str(metadata), "--metadata-url", base, "--target-name", "dir/artifact.txt",
            "--target-dir", str(targets)]
    with static_files(served) as target_url:
        download = run(*args, "--target-base-url", target_url, "download")
        assert download.returncode == 0, download.stderr
        files = list(targets.iterdir())
        assert len(files) == 1 and files[0].read_bytes() == b"artifact v1"

        (served / "dir" / "artifact.txt").write_bytes(b"artifact EVIL")
        files[0].unlink()
        refused = run(*args, "--target-base-url", target_url, "download")
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert not any(targets.iterdir())

    # cached and matching: not fetched again (the target server is gone now)
    (targets / files[0].name).write_bytes(b"artifact v1")
    cached = run(*args, "--target-base-url", "http://127.0.0.1:9/", "download")
    assert cached.returncode == 0, cached.stderr


def test_failures_exit_1(stack, collection, tmp_path):
    repo = new_collection(stack, collection)
    metadata = tmp_path / "metadata"
    root_file = tmp_path / "root.json"
    root_file.write_bytes(json.dumps({"not": "a root"}).encode())
    assert run("--metadata-dir", str(metadata), "init", str(root_file)).returncode == 0  # no checks at init
    bad = run("--metadata-dir", str(metadata), "--metadata-url", stack.base(collection), "refresh")
    assert bad.returncode == 1
    root_file.write_bytes(repo.sign("root"))
    run("--metadata-dir", str(metadata), "init", str(root_file))
    unknown = run("--metadata-dir", str(metadata), "--metadata-url", stack.base(collection),
                  "--target-name", "nope", "--target-dir", str(tmp_path / "t"),
                  "--target-base-url", "http://127.0.0.1:9/", "download")
    assert unknown.returncode == 1 and "nope" in unknown.stderr
    missing = run("--metadata-dir", str(metadata), "init", str(tmp_path / "absent.json"))
    assert missing.returncode == 1

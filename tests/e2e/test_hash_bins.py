"""A big collection: 100,000 targets in 1,024 succinct hash bins (TAP 15), served to python-tuf's
ngclient by the real server on PostgreSQL, where one more target costs one bin."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

from tuf.api.metadata import Delegations, Metadata, SuccinctRoles, TargetFile, Targets

from tests.e2e.tuf_http import new_collection, post, updater
from tests.tuf_factory import new_signer

TARGETS = 100_000
BITS = 10  # 1,024 bins


def _target(n: int) -> TargetFile:
    path = f"images/app-{n}.tar"
    return TargetFile(1000 + n % 997, {"sha256": hashlib.sha256(path.encode()).hexdigest()}, path)


def test_100k_targets_in_1024_bins(pg_stack, tmp_path):
    stack, collection = pg_stack, "big/collection"
    repo = new_collection(stack, collection)
    bins_signer = new_signer()
    succinct = SuccinctRoles([], 1, BITS, "bins")
    targets = repo.md("targets").signed
    targets.delegations = Delegations(keys={}, succinct_roles=succinct)
    targets.add_key(bins_signer.public_key)
    repo.bump("targets")

    bins: dict[str, Metadata[Targets]] = {
        name: Metadata(Targets(expires=repo.now + timedelta(days=30))) for name in succinct.get_roles()
    }
    for n in range(TARGETS):
        target = _target(n)
        bins[succinct.get_role_for_target(target.path)].signed.targets[target.path] = target
    for name, md in bins.items():
        repo.roles[name] = md
        repo.signers[name] = [bins_signer]
    names = list(bins)
    # targets with its delegation first, then the bins in four publishes of 256
    post(stack, collection, {"targets": repo.sign("targets")})
    for start in range(0, len(names), 256):
        post(stack, collection, {name: repo.sign(name) for name in names[start:start + 256]})

    # one more target: the publish carries one bin, not the collection
    extra = _target(TARGETS)
    one_bin = succinct.get_role_for_target(extra.path)
    bins[one_bin].signed.targets[extra.path] = extra
    repo.bump(one_bin)
    started = time.monotonic()
    versions = post(stack, collection, {one_bin: repo.sign(one_bin)})["versions"]
    one_bin_seconds = time.monotonic() - started
    assert versions == {one_bin: 2, "snapshot": 7, "timestamp": 7}
    print(f"publish of 1 target into {TARGETS} targets in {len(names)} bins: {one_bin_seconds:.3f}s")

    client = updater(stack.base(collection), repo.sign("root"), tmp_path)
    client.refresh()
    for n in (0, 4242, 99_999, TARGETS):
        info = client.get_targetinfo(_target(n).path)
        assert info is not None and info.hashes == _target(n).hashes
    assert client.get_targetinfo("images/not-signed.tar") is None
    fetched = {p.name for p in (tmp_path / "client-metadata").iterdir()}
    assert len([f for f in fetched if f.startswith("bins-")]) <= 5  # only the bins it looked in

"""A 100,000-target collection in 256 hash bins (TAP 15) on the real stack: one bulk publish,
then a one-target change that uploads a single bin and verifies through ngclient."""

from __future__ import annotations

import hashlib
import time

from tuf.api.metadata import Metadata, Snapshot

from tests.client.conftest import make_client
from tufnotary.client.publisher import target_from_digest

TARGETS = 100_000
BINS = 256


def digest(path: str) -> str:
    return "sha256:" + hashlib.sha256(path.encode()).hexdigest()


def test_hundred_thousand_targets_publish_touches_only_changed_bins(sqlite_stack, collection, tmp_path):
    """~20 s: run once, on SQLite; test_hash_bins does 100,000 targets on PostgreSQL."""
    stack = sqlite_stack
    # a 12 MB publish of 256 bins: allow a loaded machine more than the 5 s of the small tests
    owner = make_client(tmp_path / "owner", stack.url, timeout=120)
    owner.publisher.init(collection, bins=BINS)
    paths = [f"images/app-{i}:v1" for i in range(TARGETS)]

    started = time.monotonic()
    owner.publisher.stage_add_many(collection, [target_from_digest(p, digest(p), 1234) for p in paths])
    bulk = owner.publisher.publish(collection)
    bulk_seconds = time.monotonic() - started
    assert len(bulk.added) == TARGETS and len(bulk.roles) == BINS

    started = time.monotonic()
    owner.publisher.stage_add(collection, target_from_digest("images/new:v2", digest("new"), 99))
    small = owner.publisher.publish(collection)
    small_seconds = time.monotonic() - started
    bin_name = small.roles[0]
    assert small.roles == [bin_name] and bin_name.startswith("bins-")
    assert small.versions[bin_name] == 3  # empty at init, bulk publish, this change

    consumer = make_client(tmp_path / "consumer", stack.url)
    consumer.consumer.pin_root(collection, owner.trust.pinned_root_path(collection))
    info = consumer.consumer.lookup(collection, "images/new:v2")
    assert info.length == 99
    assert consumer.consumer.lookup(collection, paths[54_321]).hashes["sha256"] == digest(paths[54_321])[7:]
    snapshot = Metadata[Snapshot].from_bytes(
        (consumer.trust.metadata_dir(collection) / "snapshot.json").read_bytes()
    ).signed
    assert len([m for m in snapshot.meta if m.startswith("bins-")]) == BINS
    print(f"bulk publish of {TARGETS} targets: {bulk_seconds:.1f}s; one-target publish: {small_seconds:.1f}s")
    assert small_seconds < bulk_seconds

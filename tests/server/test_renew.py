"""Timestamp (and server-managed snapshot) renewal ahead of expiry, over a real store and signer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tuf.api.metadata import Metadata

from tests.server.test_api import COLLECTION, online_key, upload
from tests.tuf_factory import CollectionFactory
from tufnotary.server.config import ServerConfig
from tufnotary.server.errors import VersionConflictError
from tufnotary.server.publish import build_snapshot, build_timestamp, publish, utcnow
from tufnotary.server.renewer import renew, renew_all
from tufnotary.server.storage import NewFile

CONFIG = ServerConfig()


@pytest.fixture
def published(http):
    repo = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    assert upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets")}).status_code == 200
    return repo


def signer_of(app):
    return app.extensions["tufnotary"].signer


def verified(store, role):
    root = Metadata.from_bytes(store.get(COLLECTION, "root").data)
    md = Metadata.from_bytes(store.get(COLLECTION, role).data)
    root.signed.verify_delegate(role, md.signed_bytes, md.signatures)
    return md.signed


def test_nothing_due_nothing_written(app, store, published):
    assert renew(store, signer_of(app), CONFIG, COLLECTION) == {}
    assert store.get(COLLECTION, "timestamp").version == 1


def test_timestamp_renewed_past_half_its_lifetime(app, store, published):
    later = utcnow() + timedelta(hours=13)
    assert renew(store, signer_of(app), CONFIG, COLLECTION, now=later) == {"timestamp": 2}
    timestamp = verified(store, "timestamp")
    assert timestamp.expires == later + CONFIG.timestamp_expiry
    assert timestamp.snapshot_meta.version == 1


def test_snapshot_renewed_with_its_timestamp(app, store, published):
    later = utcnow() + timedelta(days=4)
    assert renew(store, signer_of(app), CONFIG, COLLECTION, now=later) == {"snapshot": 2, "timestamp": 2}
    snapshot = verified(store, "snapshot")
    assert snapshot.meta["targets.json"].version == 1
    assert verified(store, "timestamp").snapshot_meta.version == 2


def test_client_managed_snapshot_is_not_renewed_by_the_server(http, app, store):
    repo = CollectionFactory(online_keys={"timestamp": online_key(http, "timestamp")})
    repo.snapshot_for({"targets": 1})
    response = upload(http, {"root": repo.sign("root"), "targets": repo.sign("targets"), "snapshot": repo.sign("snapshot")})
    assert response.status_code == 200, response.json
    later = utcnow() + timedelta(days=4)
    assert renew(store, signer_of(app), CONFIG, COLLECTION, now=later) == {"timestamp": 2}
    assert store.get(COLLECTION, "snapshot").version == 1


def test_renewal_loses_to_a_concurrent_publish(app, store, published):
    stale = store.renewal_state([COLLECTION])

    class Racing:
        """Store view that lets a publish land between renew's read and its commit."""

        def renewal_state(self, collections):
            return stale

        def commit_many(self, commits):
            return store.commit_many(commits)

    published.bump("targets")
    publish(store, signer_of(app), CONFIG, COLLECTION, {"targets": published.sign("targets")})
    with pytest.raises(VersionConflictError):
        renew(Racing(), signer_of(app), CONFIG, COLLECTION, now=utcnow() + timedelta(hours=13))
    assert store.get(COLLECTION, "timestamp").version == 2  # the publish's, untouched


def test_renew_all_skips_conflicts_and_counts(app, store, published):
    assert renew_all(store, signer_of(app), ServerConfig(timestamp_expiry=timedelta(days=1))) == 0
    short = ServerConfig(timestamp_expiry=timedelta(days=10))  # stored one expires in 1 day < 10/2
    assert renew_all(store, signer_of(app), short) == 1
    assert store.get(COLLECTION, "timestamp").version == 2


def _sign_without_storing(app, role: str, version: int) -> None:
    """What a server that crashed between signing and committing leaves behind: a signature the
    signer counted (its high-water mark moved) for a version the store never got."""
    signer = signer_of(app)
    key = signer.get_public_key(COLLECTION, role)
    build = {"timestamp": lambda: build_timestamp(version, utcnow() + timedelta(hours=1), b"{}", 1),
             "snapshot": lambda: build_snapshot(version, utcnow() + timedelta(days=1), {"targets": 1})}[role]
    signer.sign(key, build().signed_bytes, collection=COLLECTION, role=role)


def test_publish_moves_past_a_signed_but_unstored_version(app, http, store, published):
    _sign_without_storing(app, "snapshot", 2)
    _sign_without_storing(app, "timestamp", 2)
    published.bump("targets")
    response = upload(http, {"targets": published.sign("targets")})
    assert response.status_code == 200, response.json
    assert response.json["versions"] == {"targets": 2, "snapshot": 3, "timestamp": 3}
    assert verified(store, "timestamp").snapshot_meta.version == 3


def test_renewal_moves_past_a_signed_but_unstored_version(app, store, published):
    _sign_without_storing(app, "timestamp", 2)
    later = utcnow() + timedelta(hours=13)
    assert renew(store, signer_of(app), CONFIG, COLLECTION, now=later) == {"timestamp": 3}
    assert verified(store, "timestamp").version == 3


def test_renewal_switches_to_the_listed_key_when_the_stored_ones_is_retired(app, store, published):
    """The stored timestamp's key is the renewer's first choice (no look-up per collection); when the
    signer refuses it, the signer's key that the root lists is used, as a publish would pick it."""
    signer = signer_of(app)
    old = signer.get_public_key(COLLECTION, "timestamp")
    pending = signer.rotate_key(COLLECTION, "timestamp")
    published.root.signed.add_key(pending, "timestamp")  # the root lists both, threshold 1
    published.bump("root")
    store.commit(COLLECTION, [NewFile("root", 2, published.sign("root"))], {"root": 1})
    assert signer.retire_key(old.keyid)
    later = utcnow() + timedelta(hours=13)
    assert renew(store, signer, CONFIG, COLLECTION, now=later) == {"timestamp": 2}
    timestamp = Metadata.from_bytes(store.get(COLLECTION, "timestamp").data)
    assert list(timestamp.signatures) == [pending.keyid]
    assert verified(store, "timestamp").version == 2

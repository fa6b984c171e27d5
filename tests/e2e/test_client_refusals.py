"""ngclient must refuse what an attacker between it and the server (or a compromised server) serves,
and the real server must keep timestamps fresh by itself."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from tuf.api.exceptions import BadVersionNumberError, ExpiredMetadataError
from tuf.api.metadata import Metadata

from tests.e2e.tuf_http import MitmProxy, get, new_collection, post, updater
from tests.stack import start_stack
from tufnotary.server.publish import build_snapshot, build_timestamp
from tufnotary.server.remote_signer import RemoteSigner


@pytest.fixture
def proxy(stack):
    mitm = MitmProxy(stack.url)
    yield mitm
    mitm.close()


def _publish_targets(stack, collection, repo, name: str) -> None:
    repo.add_target(name, name.encode())
    repo.bump("targets")
    post(stack, collection, {"targets": repo.sign("targets")})


def test_replayed_older_timestamp_is_refused(stack, collection, proxy, tmp_path):
    repo = new_collection(stack, collection)
    _publish_targets(stack, collection, repo, "v2")
    old_timestamp = get(stack.base(collection) + "timestamp.json")
    _publish_targets(stack, collection, repo, "v3")
    base = proxy.url + f"/v2/{collection}/_trust/tuf/"
    updater(base, repo.sign("root"), tmp_path).refresh()  # trusts timestamp v3

    proxy.overrides["timestamp.json"] = old_timestamp  # validly signed, but older
    with pytest.raises(BadVersionNumberError):
        updater(base, repo.sign("root"), tmp_path).refresh()


def test_snapshot_listing_a_rolled_back_targets_is_refused(stack, collection, proxy, tmp_path):
    """A compromised server holds the signer's client certificate: it can get a new snapshot signed
    that lists an older targets version. Clients that saw the newer one must refuse."""
    repo = new_collection(stack, collection)
    _publish_targets(stack, collection, repo, "v2")
    base = proxy.url + f"/v2/{collection}/_trust/tuf/"
    updater(base, repo.sign("root"), tmp_path).refresh()  # trusts snapshot 2 -> targets 2

    signer = RemoteSigner(stack.signer_address.replace("127.0.0.1", "localhost"), str(stack.certs.ca_cert),
                          str(stack.certs.client_cert), str(stack.certs.client_key))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    forged = build_snapshot(3, now + timedelta(days=1), {"targets": 1})
    key = signer.get_public_key(collection, "snapshot")
    forged.signatures[key.keyid] = signer.sign(key, forged.signed_bytes)
    forged_bytes = forged.to_bytes()
    ts = build_timestamp(3, now + timedelta(hours=1), forged_bytes, 3)
    ts_key = signer.get_public_key(collection, "timestamp")
    ts.signatures[ts_key.keyid] = signer.sign(ts_key, ts.signed_bytes)
    signer.close()
    proxy.overrides["timestamp.json"] = ts.to_bytes()
    proxy.overrides["3.snapshot.json"] = forged_bytes
    with pytest.raises(BadVersionNumberError, match="targets"):
        updater(base, repo.sign("root"), tmp_path).refresh()


# ---- freshness, with a 6-second timestamp lifetime
SHORT_LIFETIME = {"TUFNOTARY_SERVER_TIMESTAMP_EXPIRY_DAYS": str(6 / 86400)}


@pytest.fixture(scope="module")
def short_lived_stacks(tmp_path_factory):
    """Two stacks whose timestamps live 6 s: one renews every ~0.5 s, one never renews."""
    stacks = {}
    for name, interval in (("renewing", "0.5"), ("stale", "0")):
        workdir = tmp_path_factory.mktemp(name)
        stacks[name] = start_stack(
            workdir, f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}",
            {**SHORT_LIFETIME, "TUFNOTARY_SERVER_RENEW_INTERVAL": interval},
        )
    yield stacks
    for running in stacks.values():
        running.stop()


def _timestamp_version(stack, collection) -> int:
    return Metadata.from_bytes(get(stack.base(collection) + "timestamp.json")).signed.version


def test_expired_timestamp_is_refused(short_lived_stacks, collection, tmp_path):
    stack = short_lived_stacks["stale"]
    repo = new_collection(stack, collection)
    updater(stack.base(collection), repo.sign("root"), tmp_path / "fresh").refresh()
    time.sleep(7)
    with pytest.raises(ExpiredMetadataError):
        updater(stack.base(collection), repo.sign("root"), tmp_path / "late").refresh()


def test_the_server_renews_timestamps_before_they_expire(short_lived_stacks, collection, tmp_path):
    stack = short_lived_stacks["renewing"]
    repo = new_collection(stack, collection)
    assert _timestamp_version(stack, collection) == 1
    deadline = time.monotonic() + 20
    while _timestamp_version(stack, collection) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _timestamp_version(stack, collection) >= 3
    time.sleep(7)  # longer than one lifetime: only renewal keeps the client working
    updater(stack.base(collection), repo.sign("root"), tmp_path).refresh()

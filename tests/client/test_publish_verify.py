"""Publisher and consumer library against the fake server: init, stage, publish, verify, attacks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from tests.client.conftest import COLLECTION, Client, make_client
from tests.client.fake_server import FakeServer
from tufnotary.client.errors import (
    AlreadyInitializedError,
    ContentMismatchError,
    MetadataExpiredError,
    NotInitializedError,
    RollbackError,
    RootMismatchError,
    ServerError,
    ServerUnreachableError,
    TargetNotFoundError,
    UsageError,
)
from tufnotary.client.publisher import (
    ThresholdNotMetError,
    target_from_digest,
    target_from_file,
)
from tufnotary.client.staging import parse_custom

DIGEST = "sha256:" + "ab" * 32


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def publish_file(client: Client, target: str, path: Path) -> None:
    client.publisher.stage_add(COLLECTION, target_from_file(target, path))
    client.publisher.publish(COLLECTION)


def test_init_pins_root_v1_with_local_and_server_keys(client: Client, fake_server: FakeServer) -> None:
    result = client.publisher.init(COLLECTION)
    pinned = client.trust.read_pinned_root(COLLECTION)
    assert pinned == fake_server.collections[COLLECTION].files["root"][1]
    root = Metadata[Root].from_bytes(pinned).signed
    assert root.version == 1 and root.consistent_snapshot is True
    coll = fake_server.collections[COLLECTION]
    assert root.roles["root"].keyids == [result.root_keyid]
    assert root.roles["targets"].keyids == [result.targets_keyid]
    assert root.roles["timestamp"].keyids == [coll.timestamp_signer.public_key.keyid]
    assert root.roles["snapshot"].keyids == [coll.snapshot_signer.public_key.keyid]
    assert all(r.threshold == 1 for r in root.roles.values())
    in_365_days = datetime.now(timezone.utc) + timedelta(days=365)
    assert abs(root.expires - in_365_days) < timedelta(minutes=5)
    targets = fake_server.stored_targets(COLLECTION).signed
    assert targets.version == 1 and targets.targets == {}
    assert abs(targets.expires - (in_365_days - timedelta(days=275))) < timedelta(minutes=5)
    assert client.trust.read_keys(COLLECTION).to_dict() == {
        "root": [result.root_keyid],
        "targets": [result.targets_keyid],
    }


def test_init_uses_given_keys(client: Client) -> None:
    root_key = client.keys.generate("rsa")
    targets_key = client.keys.generate("ecdsa")
    result = client.publisher.init(COLLECTION, root_key.keyid, targets_key.keyid)
    assert (result.root_keyid, result.targets_keyid) == (root_key.keyid, targets_key.keyid)
    assert len(client.keys.list()) == 2


def test_init_refuses_an_initialised_collection(client: Client) -> None:
    client.publisher.init(COLLECTION)
    with pytest.raises(AlreadyInitializedError):
        client.publisher.init(COLLECTION)


def test_invalid_collection_name_is_a_usage_error(client: Client) -> None:
    with pytest.raises(UsageError, match="invalid collection name"):
        client.publisher.init("../Escape")


def test_staging_needs_an_initialised_collection(client: Client, tmp_path: Path) -> None:
    with pytest.raises(NotInitializedError, match="tufnotary init"):
        client.publisher.stage_add(COLLECTION, target_from_file("a", write(tmp_path / "a", b"a")))


def test_publish_signs_targets_v2_with_the_staged_target(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    artifact = write(tmp_path / "app.tgz", b"release 1.0")
    client.publisher.stage_add(COLLECTION, target_from_file("charts/app.tgz", artifact))
    assert list(client.publisher.staged(COLLECTION).changes) == ["charts/app.tgz"]

    result = client.publisher.publish(COLLECTION)

    assert (result.targets_version, result.added) == (2, ["charts/app.tgz"])
    stored = fake_server.stored_targets(COLLECTION)
    root = Metadata[Root].from_bytes(client.trust.read_pinned_root(COLLECTION)).signed
    root.verify_delegate("targets", stored.signed_bytes, stored.signatures)
    info = stored.signed.targets["charts/app.tgz"]
    assert info.length == len(b"release 1.0")
    assert set(info.hashes) == {"sha256", "sha512"}
    assert client.publisher.staged(COLLECTION).changes == {}


def test_a_full_publish_refreshes_and_uploads_over_two_connections_without_asking_for_keys(
    client: Client, fake_server: FakeServer
) -> None:
    client.publisher.init(COLLECTION)
    client.publisher.stage_add(COLLECTION, target_from_digest("app:v1", DIGEST, 10))
    fresh = make_client(client.trust.root, fake_server.url)  # a new command: no open connection
    fake_server.requests.clear()
    fake_server.connections.clear()

    fresh.publisher.publish(COLLECTION)

    base = f"/v2/{COLLECTION}/_trust/tuf/"
    assert fake_server.requests == [
        ("GET", base + "2.root.json"),  # 404: root v1 is still current
        ("GET", base + "timestamp.json"),
        ("GET", base + "1.snapshot.json"),
        # no 1.targets.json: ngclient verified the copy init kept (`TrustDir.remember_published`)
        ("POST", base),  # no snapshot.key: the key init was given is remembered and still listed
    ]
    # the refresh over ngclient's (urllib3) connection, the upload over the server client's
    assert len(fake_server.connections) == 2
    assert "app:v1" in client.consumer.list_targets(COLLECTION).targets


def test_a_remembered_server_key_the_root_does_not_list_is_asked_for_again(
    client: Client, fake_server: FakeServer
) -> None:
    client.publisher.init(COLLECTION)
    server_key = client.trust.read_server_keyids(COLLECTION)["snapshot"]
    client.trust.write_server_keyid(COLLECTION, "snapshot", "ff" * 32)  # e.g. from before a rotation
    client.publisher.stage_add(COLLECTION, target_from_digest("app:v1", DIGEST, 10))
    fake_server.requests.clear()

    result = client.publisher.publish(COLLECTION)

    assert ("GET", f"/v2/{COLLECTION}/_trust/tuf/snapshot.key") in fake_server.requests
    assert "snapshot" not in result.roles  # the server signs snapshot: its key is listed
    assert client.trust.read_server_keyids(COLLECTION) == {"snapshot": server_key}


def test_verify_accepts_the_signed_file_only(client: Client, tmp_path: Path) -> None:
    client.publisher.init(COLLECTION)
    artifact = write(tmp_path / "app.tgz", b"release 1.0")
    publish_file(client, "app.tgz", artifact)

    info = client.consumer.verify(COLLECTION, "app.tgz", artifact)
    assert info.length == 11

    altered = write(tmp_path / "altered.tgz", b"release 1.1")
    with pytest.raises(ContentMismatchError, match="does not match the trusted app.tgz"):
        client.consumer.verify(COLLECTION, "app.tgz", altered)
    with pytest.raises(TargetNotFoundError, match="other.tgz is not signed"):
        client.consumer.verify(COLLECTION, "other.tgz", artifact)


def test_verify_fails_when_the_server_serves_an_expired_timestamp(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    artifact = write(tmp_path / "app.tgz", b"release 1.0")
    publish_file(client, "app.tgz", artifact)
    fake_server.expire_timestamp(COLLECTION)
    with pytest.raises(MetadataExpiredError, match="expired"):
        client.consumer.verify(COLLECTION, "app.tgz", artifact)


def test_verify_detects_a_rolled_back_timestamp(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    artifact = write(tmp_path / "app.tgz", b"release 1.0")
    publish_file(client, "app.tgz", artifact)
    client.consumer.verify(COLLECTION, "app.tgz", artifact)  # now trusts timestamp v2
    fake_server.rollback_timestamp(COLLECTION)
    with pytest.raises(RollbackError, match="rollback detected"):
        client.consumer.verify(COLLECTION, "app.tgz", artifact)


def test_remove_and_publish_unsigns_the_target(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    keep = write(tmp_path / "keep", b"keep")
    drop = write(tmp_path / "drop", b"drop")
    client.publisher.stage_add(COLLECTION, target_from_file("keep", keep))
    client.publisher.stage_add(COLLECTION, target_from_file("drop", drop))
    client.publisher.publish(COLLECTION)
    client.consumer.verify(COLLECTION, "drop", drop)

    client.publisher.stage_remove(COLLECTION, "drop")
    client.publisher.stage_remove(COLLECTION, "never-added")
    result = client.publisher.publish(COLLECTION)

    assert (result.targets_version, result.removed, result.not_present) == (3, ["drop"], ["never-added"])
    assert set(fake_server.stored_targets(COLLECTION).signed.targets) == {"keep"}
    with pytest.raises(TargetNotFoundError):
        client.consumer.verify(COLLECTION, "drop", drop)
    assert set(client.consumer.list_targets(COLLECTION).targets) == {"keep"}


def test_digest_target_with_custom_data_is_looked_up(client: Client) -> None:
    client.publisher.init(COLLECTION)
    custom = parse_custom('{"mediaType": "application/vnd.oci.image.manifest.v1+json"}')
    client.publisher.stage_add(COLLECTION, target_from_digest("net-monitor:v1", DIGEST, 528, custom))
    client.publisher.publish(COLLECTION)
    info = client.consumer.lookup(COLLECTION, "net-monitor:v1")
    assert (info.length, info.hashes, info.custom) == (528, {"sha256": "ab" * 32}, custom)


@pytest.mark.parametrize("digest", ["md5:abcd", "sha256:xyz", "sha256:" + "ab" * 31])
def test_malformed_digest_is_a_usage_error(digest: str) -> None:
    with pytest.raises(UsageError, match="invalid digest"):
        target_from_digest("t", digest, 1)


def test_consumer_with_a_root_file_in_a_fresh_trust_dir_verifies(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    artifact = write(tmp_path / "app.tgz", b"release 1.0")
    publish_file(client, "app.tgz", artifact)
    root_file = write(tmp_path / "root.json", client.trust.read_pinned_root(COLLECTION))

    consumer = make_client(tmp_path / "consumer-trust", fake_server.url).consumer
    with pytest.raises(NotInitializedError, match="--root"):
        consumer.verify(COLLECTION, "app.tgz", artifact)
    consumer.pin_root(COLLECTION, root_file)
    consumer.verify(COLLECTION, "app.tgz", artifact)
    consumer.pin_root(COLLECTION, root_file)  # the same root again is fine


def test_a_different_root_is_not_pinned_over_the_trusted_one(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    other = make_client(tmp_path / "other", fake_server.url)
    other.publisher.init("other/collection")
    foreign_root = write(tmp_path / "foreign.json", other.trust.read_pinned_root("other/collection"))
    with pytest.raises(RootMismatchError, match="refusing"):
        client.consumer.pin_root(COLLECTION, foreign_root)


def test_refused_publish_reports_the_server_error_and_keeps_staged_changes(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    client.publisher.init(COLLECTION)
    client.publisher.stage_add(COLLECTION, target_from_file("a", write(tmp_path / "a", b"a")))
    fake_server.refuse_next_upload("SIGNER_UNAVAILABLE", "the signer is down")
    with pytest.raises(ServerError, match="the signer is down") as caught:
        client.publisher.publish(COLLECTION)
    assert caught.value.server_code == "SIGNER_UNAVAILABLE"
    assert list(client.publisher.staged(COLLECTION).changes) == ["a"]
    assert client.publisher.publish(COLLECTION).added == ["a"]


def test_publish_without_a_trusted_local_targets_key_is_refused_locally(
    client: Client, fake_server: FakeServer
) -> None:
    result = client.publisher.init(COLLECTION)
    # Only keys the trusted root lists for targets may sign it: here none is local any more.
    (client.trust.private_dir / f"{result.targets_keyid}.pem").unlink()
    uploads_before = len(fake_server.requests)
    with pytest.raises(ThresholdNotMetError, match=rf"targets: 0 of 1 signature\(s\) required by root; missing 1 from key\(s\) {result.targets_keyid}.*--save FILE"):
        client.publisher.publish(COLLECTION)
    assert not any(m == "POST" for m, _ in fake_server.requests[uploads_before:])


def test_unreachable_server(tmp_path: Path) -> None:
    stopped = FakeServer()
    url = stopped.url
    stopped.stop()
    client = make_client(tmp_path / "trust", url)
    with pytest.raises(ServerUnreachableError, match="cannot reach server"):
        client.publisher.init(COLLECTION)
    assert client.keys.list() == []


def test_delete_removes_the_collection_remotely_and_locally(
    client: Client, fake_server: FakeServer
) -> None:
    client.publisher.init(COLLECTION)
    client.publisher.delete(COLLECTION)
    assert COLLECTION not in fake_server.collections
    assert not client.trust.collection_dir(COLLECTION).exists()
    client.publisher.init(COLLECTION)


def test_init_refuses_an_online_key_whose_id_is_not_its_tuf_key_id(
    client: Client, fake_server: FakeServer
) -> None:
    fake_server.lie_about_keyids = True
    with pytest.raises(ServerError, match="not the TUF key id"):
        client.publisher.init(COLLECTION)
    assert client.keys.list() == []
    assert not client.trust.has_pinned_root(COLLECTION)

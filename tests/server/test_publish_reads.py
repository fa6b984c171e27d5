"""What a publish and a renewal read from the store: versions of every role, bytes only of the roles
they need (a collection of many delegated roles must not be read whole to publish one of them)."""

from __future__ import annotations

from datetime import timedelta

from tests.server.test_api import COLLECTION, online_key, upload
from tests.tuf_factory import CollectionFactory
from tufnotary.server.config import ServerConfig
from tufnotary.server.publish import publish, utcnow
from tufnotary.server.renewer import renew

ROLES = [f"team-{i}" for i in range(6)]


def record_loads(store, monkeypatch) -> list[str]:
    """The roles whose bytes the store reads lazily from now on."""
    loaded: list[str] = []
    real = store._loader

    def spying(collection, collection_id, role, version, digest):
        load = real(collection, collection_id, role, version, digest)
        return lambda: (loaded.append(role), load())[1]

    monkeypatch.setattr(store, "_loader", spying)
    return loaded


def test_publish_of_one_delegated_role_reads_only_its_bytes(app, http, store, monkeypatch):
    repo = CollectionFactory(online_keys={r: online_key(http, r) for r in ("timestamp", "snapshot")})
    for name in ROLES:
        repo.delegate(name, [f"{name}/*"])
        repo.add_target(f"{name}/a.txt", name.encode(), role=name)
    first = {"root": repo.sign("root"), "targets": repo.sign("targets")}
    first.update({name: repo.sign(name) for name in ROLES})
    assert upload(http, first).status_code == 200

    loaded = record_loads(store, monkeypatch)
    repo.add_target("team-3/b.txt", b"b", role="team-3")
    repo.bump("team-3")
    signer = app.extensions["tufnotary"].signer
    versions = publish(store, signer, ServerConfig(), COLLECTION, {"team-3": repo.sign("team-3")})
    assert versions == {"team-3": 2, "snapshot": 2, "timestamp": 2}
    assert loaded == ["team-3"]  # its previous bytes, for the audit's target changes

    loaded.clear()
    assert renew(store, signer, ServerConfig(), COLLECTION, now=utcnow() + timedelta(hours=13)) == {"timestamp": 3}
    assert loaded == []  # root, snapshot and timestamp came with the versions

"""Craft TUF metadata for tests with python-tuf's Metadata API: keys, roles, delegations, signatures.

A `CollectionFactory` is a publisher's view of one collection. It can sign honestly or be told
to misbehave (sign with the wrong key, skip a version, expire...), so tests build both what a
correct publisher sends and what an attacker would.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
)
from tuf.api.serialization.json import JSONSerializer

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


def new_signer() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


class CollectionFactory:
    """Root, targets and delegated roles of one collection, with the private keys to sign them."""

    def __init__(self, now: datetime | None = None, online_keys: dict[str, Key] | None = None) -> None:
        self.now = now or datetime.now(timezone.utc).replace(microsecond=0)
        self.signers: dict[str, list[Signer]] = {
            role: [new_signer()] for role in ("root", "targets", "snapshot", "timestamp")
        }
        self.root: Metadata[Root] = Metadata(
            Root(expires=self.now + timedelta(days=365), consistent_snapshot=True)
        )
        for role in ("root", "targets", "snapshot", "timestamp"):
            key = (online_keys or {}).get(role) or self.signers[role][0].public_key
            self.root.signed.add_key(key, role)
        self.roles: dict[str, Metadata[Targets]] = {
            "targets": Metadata(Targets(expires=self.now + timedelta(days=90)))
        }
        self.snapshot: Metadata[Snapshot] = Metadata(Snapshot(expires=self.now + timedelta(days=7)))

    # ---- building
    def add_target(self, path: str, data: bytes, role: str = "targets") -> TargetFile:
        target = TargetFile.from_data(path, data, ["sha256"])
        self.roles[role].signed.targets[path] = target
        return target

    def delegate(
        self,
        name: str,
        paths: list[str],
        parent: str = "targets",
        threshold: int = 1,
        signers: list[Signer] | None = None,
        terminating: bool = False,
    ) -> list[Signer]:
        signers = signers or [new_signer()]
        parent_md = self.roles[parent].signed
        if parent_md.delegations is None:
            parent_md.delegations = Delegations(keys={}, roles={})
        assert parent_md.delegations.roles is not None
        parent_md.delegations.roles[name] = DelegatedRole(name, [], threshold, terminating, paths)
        for s in signers:
            parent_md.add_key(s.public_key, name)
        self.signers[name] = signers
        self.roles[name] = Metadata(Targets(expires=self.now + timedelta(days=90)))
        return signers

    def rotate(self, role: str, signers: list[Signer] | None = None, threshold: int = 1) -> list[Signer]:
        """Replace the keys of top-level `role` in root (root version bumped by the caller)."""
        signers = signers or [new_signer()]
        for keyid in list(self.root.signed.roles[role].keyids):
            self.root.signed.revoke_key(keyid, role)
        for s in signers:
            self.root.signed.add_key(s.public_key, role)
        self.root.signed.roles[role].threshold = threshold
        self.signers[role] = signers
        return signers

    def set_online_key(self, role: str, key: Key) -> None:
        for keyid in list(self.root.signed.roles[role].keyids):
            self.root.signed.revoke_key(keyid, role)
        self.root.signed.add_key(key, role)

    def md(self, role: str) -> Metadata:
        if role == "root":
            return self.root
        if role == "snapshot":
            return self.snapshot
        return self.roles[role]

    def bump(self, role: str) -> None:
        self.md(role).signed.version += 1

    # ---- signing and serialising
    def sign(self, role: str, signers: list[Signer] | None = None, append: bool = False) -> bytes:
        md = self.md(role)
        if not append:
            md.signatures.clear()
        for signer in signers if signers is not None else self.signers[role]:
            md.sign(signer, append=True)
        return md.to_bytes(JSONSerializer(compact=True))

    def snapshot_for(self, versions: dict[str, int]) -> None:
        self.snapshot.signed.meta = {f"{r}.json": MetaFile(version=v) for r, v in versions.items()}

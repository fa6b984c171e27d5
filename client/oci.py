"""OCI artifacts in TUF collections: sign, verify, copy, promote and audit registry references.

A collection signs, per tag, the manifest (or index) the tag names: target `TAG` ->
`{length, hashes: {sha256: <manifest digest>}, custom: {mediaType, signedAt}}`; with
`--index-children` each manifest an index references is signed too, as target `sha256:<hex>`
(so `verify REPO@sha256:<hex>` checks it). Which collection, server, root, required roles and
denied algorithms apply to a reference comes from the trust policy (`trustpolicy.py`), or from
an explicit `--collection` with the trust directory's pinned root. Verification fails closed:
the registry's digest for the tag, computed by `registry.py` over the bytes it served, must
equal the signed one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tuf.api.metadata import TargetFile

from tufnotary.client.errors import (
    NotInitializedError,
    RegistryError,
    RootMismatchError,
    TagMovedError,
    UsageError,
    VerificationError,
)
from tufnotary.client.bundle import Bundle, BundleConsumer, archival_trust, export_bundle, read_bundle, root_version
from tufnotary.client.policy import AlgorithmPolicy
from tufnotary.client.reference import Reference
from tufnotary.client.registry import Manifest, RegistryClient
from tufnotary.client.trustdir import TrustDir
from tufnotary.client.trustpolicy import Scope, TrustPolicy

if TYPE_CHECKING:
    from tufnotary.client.consumer import Consumer
    from tufnotary.client.publisher import Publisher

ROOT_FILES = ("root.json", "1.root.json")
POLICY_HINT = (
    "add a [[scope]] whose registry matches it to the trust policy file ({path}) with 'server', "
    "'collection' and 'root' (or 'root-sha256'), or pass --collection to use the root pinned in "
    "the trust directory"
)


@dataclass(frozen=True)
class TrustBinding:
    """Where the signatures of one reference live, and what a consumer requires of them."""

    server: str
    collection: str
    require_roles: tuple[str, ...] = ()
    policy: AlgorithmPolicy = field(default_factory=AlgorithmPolicy)
    scope: Scope | None = None


@dataclass(frozen=True)
class SignResult:
    reference: Reference
    manifest: Manifest
    collection: str
    role: str
    targets: list[TargetFile]
    version: int


@dataclass(frozen=True)
class VerifyResult:
    pinned: str  # registry/repository@sha256:... to pull by digest
    binding: TrustBinding
    target: str
    info: TargetFile


@dataclass(frozen=True)
class AuditRow:
    tag: str
    status: str  # "signed", "moved", "unsigned", "missing" (signed, no such tag in the registry)
    registry_digest: str | None
    signed_digest: str | None


def signed_digest(info: TargetFile) -> str:
    value = info.hashes.get("sha256")
    if value is None:
        raise VerificationError(f"{info.path} is signed without a sha256 hash: it cannot name an OCI manifest")
    return f"sha256:{value}"


def target_for(name: str, manifest: Manifest, now: datetime, extra: dict[str, object] | None = None) -> TargetFile:
    custom: dict[str, object] = {"mediaType": manifest.media_type,
                                 "signedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), **(extra or {})}
    return TargetFile(manifest.length, {"sha256": manifest.digest.split(":", 1)[1]}, name,
                      {"custom": custom})


def target_name(ref: Reference) -> str:
    """The target a reference is checked against: its tag, else its digest."""
    if ref.tag:
        return ref.tag
    assert ref.digest is not None
    return ref.digest


class Oci:
    """OCI workflows over one registry client, one trust directory and one trust policy."""

    def __init__(
        self,
        trust: TrustDir,
        registry: RegistryClient,
        policy: TrustPolicy,
        default_server: str,
        consumer_for: Callable[[str, AlgorithmPolicy], Consumer],
        publisher_for: Callable[[str], Publisher],
        global_policy: AlgorithmPolicy | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.trust = trust
        self.registry = registry
        self.policy = policy
        self.default_server = default_server
        self.consumer_for = consumer_for
        self.publisher_for = publisher_for
        self.global_policy = global_policy or AlgorithmPolicy()
        self.now = now

    # --- trust bindings -------------------------------------------------------------------

    def bind(self, ref: Reference, collection: str | None = None,
             require_roles: Sequence[str] = ()) -> TrustBinding:
        """The binding for `ref`: an explicit collection, else the most specific policy scope."""
        scope = self.policy.match(ref)
        if collection is None and scope is None:
            raise UsageError(f"no trust policy matches {ref.name}: "
                             + POLICY_HINT.format(path=self.policy.path))
        server = (scope.server if scope and scope.server else None) or self.default_server
        name = collection or scope.collection_for(ref)  # type: ignore[union-attr]
        roles = tuple(dict.fromkeys([*(scope.require_roles if scope else ()), *require_roles]))
        deny = scope.deny if scope else AlgorithmPolicy()
        return TrustBinding(server, name, roles, deny, scope)

    def consumer(self, binding: TrustBinding) -> Consumer:
        consumer = self.consumer_for(binding.server, self.merged_policy(binding))
        self.ensure_root(consumer, binding, lambda: [self._fetch(binding, f) for f in ROOT_FILES])
        return consumer

    def merged_policy(self, binding: TrustBinding) -> AlgorithmPolicy:
        return AlgorithmPolicy(self.global_policy.deny + binding.policy.deny)

    def ensure_root(self, consumer: Consumer, binding: TrustBinding,
                    candidates: Callable[[], list[bytes]]) -> None:
        """Pin the root the scope names (file or SHA-256); never trust on first use unless asked.

        `candidates` gives root files to match a `root-sha256` against (the server's current
        and first roots, or a bundle's), first one first."""
        c, scope = binding.collection, binding.scope
        pinned = self.trust.has_pinned_root(c)
        if scope is not None and scope.root is not None:
            consumer.pin_root(c, scope.root)
            return
        if scope is not None and scope.root_sha256 is not None:
            if pinned:
                if scope.root_sha256 not in self._known_root_hashes(c):
                    raise RootMismatchError(
                        f"the root pinned for {c} in {self.trust.root} is not the one with SHA-256 "
                        f"{scope.root_sha256} that {scope.where} names (root-sha256)"
                    )
                return
            for data in candidates():
                if hashlib.sha256(data).hexdigest() == scope.root_sha256:
                    pin_root_bytes(consumer, c, data)
                    return
            raise RootMismatchError(
                f"no root of {c} with SHA-256 {scope.root_sha256} ({scope.where}) is available "
                f"from {binding.server}: refusing to trust any other"
            )
        if pinned:
            return
        if scope is not None and scope.trust_on_first_use:
            first = [d for d in candidates() if root_version(d) == 1]
            if not first:
                raise RootMismatchError(f"no first root of {c} to trust on first use")
            pin_root_bytes(consumer, c, first[0])
            return
        where = scope.where if scope else f"the trust policy file ({self.policy.path})"
        raise NotInitializedError(
            f"no root is pinned for {c}: set 'root' (a root.json file) or 'root-sha256' in {where}; "
            "trust on first use only with 'trust-on-first-use = true'"
        )

    def _known_root_hashes(self, collection: str) -> set[str]:
        meta = self.trust.metadata_dir(collection)
        files = [meta / "root.json", *sorted((meta / "root_history").glob("*.root.json"))]
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}

    def _fetch(self, binding: TrustBinding, filename: str) -> bytes:
        return self.publisher_for(binding.server).server.fetch(binding.collection, filename)

    # --- bundles --------------------------------------------------------------------------

    def export_bundle(self, collection: str, server: str | None = None) -> Bundle:
        """A bundle of `collection`'s current metadata, as ngclient verified it just now."""
        server = server or self.default_server
        consumer = self.consumer_for(server, self.global_policy)
        state = consumer.state(collection)
        fetcher = self.publisher_for(server).server
        return export_bundle(state, server, lambda v: fetcher.fetch(collection, f"{v}.root.json"),
                             self.now())

    def verify_bundle(self, ref: Reference, path: Path, collection: str | None = None,
                      require_roles: Sequence[str] = (), as_of: datetime | None = None) -> VerifyResult:
        """Verify `ref` against metadata from a bundle file only (the registry is still asked)."""
        bundle = read_bundle(path)
        binding = self.bind(ref, collection, require_roles)
        if bundle.collection != binding.collection:
            raise VerificationError(f"{path} is a bundle of {bundle.collection}, but {ref.name} is "
                                    f"signed in {binding.collection}")
        policy = self.merged_policy(binding)
        consumer = BundleConsumer(self.trust, bundle, str(path), policy)
        self.ensure_root(consumer, binding, lambda: list(reversed(bundle.roots())))
        name = target_name(ref)
        if as_of is None:
            info = consumer.lookup(binding.collection, name, binding.require_roles)
        else:
            with archival_trust(self.trust, binding.collection) as trust:
                info = BundleConsumer(trust, bundle, str(path), policy, as_of).lookup(
                    binding.collection, name, binding.require_roles)
        return self.check_registry(ref, binding, info)

    # --- sign -----------------------------------------------------------------------------

    def sign(self, ref: Reference, collection: str | None = None, role: str | None = None,
             index_children: bool = False) -> SignResult:
        """Resolve `ref`, stage its tag (and an index's children), publish in one go."""
        if not ref.tag:
            raise UsageError(f"{ref} has no tag: sign a tag (REPOSITORY:TAG), the name consumers verify")
        binding = self.bind(ref, collection)
        manifest = self.registry.resolve(ref)
        now = self.now()
        targets = [target_for(ref.tag, manifest, now)]
        if index_children:
            if not manifest.is_index:
                raise UsageError(f"{ref} is a {manifest.media_type}, not an index: drop --index-children")
            for child in manifest.children():
                child_manifest = self.registry.resolve(ref.with_digest(child.digest))
                extra: dict[str, object] = {"index": manifest.digest}
                if child.platform:
                    extra["platform"] = child.platform
                targets.append(target_for(child.digest, child_manifest, now, extra))
        publisher = self.publisher_for(binding.server)
        publisher.stage_add_many(binding.collection, targets, role)
        result = publisher.publish(binding.collection, role)
        return SignResult(ref, manifest, binding.collection, role or "targets", targets,
                          result.targets_version)

    # --- verify ---------------------------------------------------------------------------

    def verify(self, ref: Reference, collection: str | None = None,
               require_roles: Sequence[str] = ()) -> VerifyResult:
        """Succeed only if the registry's manifest for `ref` is the one trusted metadata signs."""
        binding = self.bind(ref, collection, require_roles)
        name = target_name(ref)
        info = self.consumer(binding).lookup(binding.collection, name, binding.require_roles)
        return self.check_registry(ref, binding, info)

    def check_registry(self, ref: Reference, binding: TrustBinding, info: TargetFile) -> VerifyResult:
        want = signed_digest(info)
        if ref.digest and ref.digest != want:
            raise TagMovedError(f"{ref} names {ref.digest}, but {binding.collection} signs {want} "
                                f"for {info.path}")
        try:
            manifest = self.registry.resolve(ref)
        except RegistryError as e:
            if e.status == 404:
                raise RegistryError(f"{ref} is not in the registry ({e.message})", 404) from e
            raise
        if manifest.digest != want or manifest.length != info.length:
            raise TagMovedError(
                f"{ref} now names {manifest.digest} ({manifest.length} bytes) but {binding.collection} "
                f"signs {want} ({info.length} bytes) for {info.path}: the tag was moved to unsigned "
                "content; do not deploy it"
            )
        return VerifyResult(f"{ref.name}@{manifest.digest}", binding, info.path, info)

    # --- copy and promote ------------------------------------------------------------------

    def copy(self, src: Reference, dst: Reference) -> tuple[Manifest, list[str]]:
        """Copy `src` (manifest or index, with its blobs) to `dst`, digests unchanged."""
        if dst.tag is None and dst.digest is None:
            dst = dst.with_tag(src.tag) if src.tag else dst.with_digest(src.digest or "")
        manifest = self.registry.resolve(src)
        log: list[str] = []
        self.registry.copy(manifest, dst, log)
        copied = self.registry.resolve(dst)
        if copied.digest != manifest.digest:
            raise TagMovedError(f"{dst} names {copied.digest} after the copy, not {manifest.digest}")
        return manifest, log

    def promote(self, src: Reference, dst: Reference, role: str, collection: str | None = None,
                verify_source: bool = True) -> tuple[SignResult, list[str]]:
        """Verify `src` (its own signature), copy it to `dst`, sign `dst` with `role`."""
        if verify_source:
            self.verify(src, collection)
        manifest, log = self.copy(src, dst)
        dst = dst if dst.tag else dst.with_tag(src.tag)
        return self.sign(dst, collection, role), log

    # --- audit ----------------------------------------------------------------------------

    def audit(self, repo: Reference, collection: str | None = None) -> tuple[TrustBinding, list[AuditRow]]:
        """Every tag of `repo`: signed and matching, moved (both digests), or unsigned."""
        binding = self.bind(repo.with_tag("latest"), collection)
        listing = self.consumer(binding).list_targets(binding.collection)
        rows: list[AuditRow] = []
        tags = self.registry.tags(repo)
        for tag in tags:
            manifest = self.registry.resolve(repo.with_tag(tag))
            info = listing.targets.get(tag)
            if info is None:
                rows.append(AuditRow(tag, "unsigned", manifest.digest, None))
                continue
            want = signed_digest(info)
            status = "signed" if want == manifest.digest and info.length == manifest.length else "moved"
            rows.append(AuditRow(tag, status, manifest.digest, want))
        for path, info in sorted(listing.targets.items()):
            if path not in tags and not path.startswith("sha256:") and "sha256" in info.hashes:
                rows.append(AuditRow(path, "missing", None, signed_digest(info)))
        return binding, rows



def pin_root_bytes(consumer: Consumer, collection: str, data: bytes) -> None:
    """Pin root bytes through `Consumer.pin_root` (which checks them), via a private temp file."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "root.json"
        path.write_bytes(data)
        consumer.pin_root(collection, path)

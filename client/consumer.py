"""The consumer side: pin a root, then list, look up and verify targets through python-tuf's ngclient.

All verification is ngclient's TUF client workflow; this module only wires it to the trust
directory and turns its exceptions into `ClientError`s a user can act on. On top of it a
consumer may (1) deny algorithms: every role ngclient accepted for an answer is re-counted with
only allowed keys (`policy.py`), and (2) require named roles to sign the same target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from tufnotary.client.auth import ENV_HINT, TokenAuth
from tufnotary.client.errors import (
    ClientError,
    ContentMismatchError,
    MetadataExpiredError,
    RollbackError,
    RootMismatchError,
    ServerError,
    ServerUnreachableError,
    TargetNotFoundError,
    UsageError,
    VerificationError,
)
from tufnotary.client.fetcher import AuthFetcher
from tufnotary.client.http import USER_AGENT, metadata_base_url
from tufnotary.client.names import check_target_path
from tufnotary.client.policy import AlgorithmPolicy
from tufnotary.client.transport import Transport
from tufnotary.client.trusted import RoleNotPublishedError, TrustedState
from tufnotary.client.trustdir import TrustDir

MAX_FETCH_BYTES = 64 * 1024 * 1024


@contextmanager
def tuf_errors(collection: str, server: str) -> Iterator[None]:
    """Translate ngclient and urllib3 exceptions raised inside the block into ClientErrors."""
    try:
        yield
    except ClientError:
        raise
    except tuf_exc.ExpiredMetadataError as e:
        raise MetadataExpiredError(
            f"trusted metadata of {collection} has expired ({e}): the server is not serving "
            "fresh metadata; do not trust it"
        ) from e
    except tuf_exc.BadVersionNumberError as e:
        raise RollbackError(
            f"rollback detected for {collection}: the server sent metadata older than what "
            f"was already trusted ({e})"
        ) from e
    except tuf_exc.UnsignedMetadataError as e:
        raise VerificationError(
            f"metadata of {collection} is not signed by the trusted keys: {e}"
        ) from e
    except tuf_exc.RepositoryError as e:
        raise VerificationError(f"metadata of {collection} failed verification: {e}") from e
    except tuf_exc.DownloadHTTPError as e:
        if e.status_code in (401, 403):
            raise _refused(collection, server, e.status_code) from e
        if e.status_code == 404:
            raise ServerError(
                f"{collection} has no metadata on server {server} (HTTP 404)",
                "METADATA_NOT_FOUND",
                404,
            ) from e
        raise ServerError(
            f"server {server} answered HTTP {e.status_code} for {collection}",
            "HTTP_ERROR",
            e.status_code,
        ) from e
    except tuf_exc.SlowRetrievalError as e:
        raise ServerUnreachableError(f"server {server} timed out serving {collection}") from e
    except tuf_exc.DownloadError as e:
        if isinstance(e.__cause__, ClientError):  # our fetcher's own refusal (token, credentials)
            raise e.__cause__ from None
        raise ServerError(f"downloading metadata of {collection} failed: {e}", "DOWNLOAD") from e
    except urllib3.exceptions.HTTPError as e:
        reason = getattr(e, "reason", None) or e
        raise ServerUnreachableError(f"cannot reach server {server}: {reason}") from e


def _refused(collection: str, server: str, status: int) -> ServerError:
    """ngclient's download refused by the server's authorization: say how to log in."""
    return ServerError(
        f"server {server} refused to serve the metadata of {collection} (HTTP {status}): it needs "
        f"credentials with pull access; set {ENV_HINT}, or log in to {server} with 'docker login' "
        "(or a Docker credential helper)",
        "UNAUTHORIZED", status,
    )


@dataclass
class TargetListing:
    """The trusted targets of a collection, and its delegations."""

    targets: dict[str, TargetFile]
    delegations: dict[str, list[str]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # target path -> role that signs it
    bins: int = 0  # number of hash bins (TAP 15), 0 when none
    unpublished: list[str] = field(default_factory=list)  # delegated, not yet published
    expired: list[str] = field(default_factory=list)  # owners only: expired roles listed


class Consumer:
    """Reads and verifies one server's collections from a trust directory."""

    def __init__(
        self,
        trust: TrustDir,
        server: str,
        socket_timeout: int = 30,
        policy: AlgorithmPolicy | None = None,
        fetcher: FetcherInterface | None = None,
    ) -> None:
        self.trust = trust
        self.server = server
        self.socket_timeout = socket_timeout
        self.policy = policy or AlgorithmPolicy()
        # ngclient fetches through this: it answers the server's bearer challenges with tokens.
        self._fetcher = fetcher or AuthFetcher(
            TokenAuth(Transport(headers={"User-Agent": USER_AGENT}), server),
            socket_timeout=socket_timeout, app_user_agent=USER_AGENT,
        )

    def _updater(self, collection: str) -> Updater:
        bootstrap = self.trust.read_pinned_root(collection)
        with tuf_errors(collection, self.server):
            return Updater(
                metadata_dir=str(self.trust.metadata_dir(collection)),
                metadata_base_url=metadata_base_url(self.server, collection),
                fetcher=self._fetcher,
                config=UpdaterConfig(app_user_agent=USER_AGENT, max_delegations=100_000),
                bootstrap=bootstrap,
            )

    def state(self, collection: str, lenient: bool = False) -> TrustedState:
        """Refresh and return the verified state; `lenient` (owners) tolerates expired targets."""
        before = Metadata[Root].from_bytes(self.trust.read_pinned_root(collection)).signed.version
        updater = self._updater(collection)
        base = metadata_base_url(self.server, collection)

        def fetch(filename: str) -> bytes:
            return self._fetcher.download_bytes(base + filename, MAX_FETCH_BYTES)

        with tuf_errors(collection, self.server):
            try:
                updater.refresh()
            except tuf_exc.ExpiredMetadataError as e:
                # Only targets itself may be expired: root, timestamp and snapshot never.
                if not (lenient and str(e) == "New targets is expired"):
                    raise
        state = TrustedState(
            collection, updater, self.trust.metadata_dir(collection), fetch, before, lenient
        )
        if self.policy:
            with tuf_errors(collection, self.server):
                self._check_policy_top_level(state)
        return state

    def _check_policy_top_level(self, state: TrustedState) -> None:
        name = state.collection
        for previous, new in state.root_chain():
            what = f"root version {new.signed.version} of {name}"
            self.policy.check(previous.signed, "root", new, f"{what} (as the previous root requires)")
            self.policy.check(new.signed, "root", new, what)
        root = state.root.signed
        self.policy.check(root, "timestamp", state.timestamp, f"timestamp of {name}")
        self.policy.check(root, "snapshot", state.snapshot, f"snapshot of {name}")
        self.policy.check(root, "targets", state.targets(), f"targets of {name}")

    def _check_policy_chain(self, state: TrustedState, role: str) -> None:
        """Policy-check `role` and every delegated role between it and targets."""
        while role != Targets.type:
            self.policy.check(
                state.delegator(role), role, state.role(role), f"{role} of {state.collection}"
            )
            role = state.parent_of(role)

    def _check_policy_walk(self, state: TrustedState, target: str) -> None:
        """Policy-check each role ngclient's preorder walk visited to answer for `target`."""
        stack = [Targets.type]
        visited: set[str] = set()
        while stack:
            role = stack.pop()
            if role in visited:
                continue
            md = state.role(role)
            if role != Targets.type:
                self.policy.check(state.delegator(role), role, md, f"{role} of {state.collection}")
            if target in md.signed.targets:
                return
            visited.add(role)
            if md.signed.delegations is not None:
                children = []
                for child, terminating in md.signed.delegations.get_roles_for_target(target):
                    children.append(child)
                    if terminating:
                        stack = []
                        break
                stack.extend(reversed(children))

    def refresh(self, collection: str) -> Updater:
        """Run the TUF client workflow for the top-level roles; return the refreshed Updater."""
        return self.state(collection).updater

    def trusted_targets(self, collection: str) -> bytes:
        """Bytes of the verified current top-level targets.json (after a refresh)."""
        self.refresh(collection)
        # ngclient persists each top-level file only after verifying it.
        return (self.trust.metadata_dir(collection) / "targets.json").read_bytes()

    def pin_root(self, collection: str, root_file: Path) -> None:
        """Pin the root in `root_file` for `collection`, unless a different root is pinned.

        A root that differs from the pinned one is accepted only when the TUF root chain
        from the pinned root reaches it (that is, the pinned root already trusts it).
        """
        try:
            data = root_file.read_bytes()
            md = Metadata[Root].from_bytes(data)
        except OSError as e:
            raise UsageError(f"cannot read root file {root_file}: {e}") from e
        except DeserializationError as e:
            raise UsageError(f"{root_file} is not TUF root metadata: {e}") from e
        if not isinstance(md.signed, Root):
            raise UsageError(f"{root_file} is {md.signed.type} metadata, not root")
        with tuf_errors(collection, self.server):
            md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
        if not self.trust.has_pinned_root(collection):
            self.trust.pin_root(collection, data)
            return
        pinned = Metadata[Root].from_bytes(self.trust.read_pinned_root(collection))
        if pinned.signed == md.signed:
            return
        self.refresh(collection)
        history = self.trust.metadata_dir(collection) / "root_history"
        reached = history / f"{md.signed.version}.root.json"
        if not reached.exists() or Metadata[Root].from_bytes(reached.read_bytes()).signed != md.signed:
            raise RootMismatchError(
                f"{root_file} is not the root pinned for {collection} (version "
                f"{pinned.signed.version}) and the pinned root's chain does not lead to it; "
                "refusing to replace a pinned root"
            )

    def list_targets(self, collection: str, lenient: bool = False) -> TargetListing:
        """Targets signed by targets and every delegated role (bins included).

        `lenient` (owners only) lists a collection whose targets or delegated roles expired;
        the expired roles are in `TargetListing.expired`.
        """
        state = self.state(collection, lenient)
        listing = TargetListing({}, {})
        with tuf_errors(collection, self.server):
            for visit in state.walk():
                role, md = visit.role, visit.metadata
                if md is None:
                    listing.unpublished.append(role)
                    continue
                if self.policy:
                    self._check_policy_chain(state, role)
                for path, info in md.signed.targets.items():
                    listing.targets.setdefault(path, info)
                    listing.roles.setdefault(path, role)
                d = md.signed.delegations
                if d is None:
                    continue
                for name, delegated in (d.roles or {}).items():
                    listing.delegations[name] = list(delegated.paths or delegated.path_hash_prefixes or [])
                if d.succinct_roles is not None:
                    listing.bins = d.succinct_roles.number_of_bins
        listing.expired = list(state.expired)
        return listing

    def lookup(
        self, collection: str, target: str, require_roles: Sequence[str] = ()
    ) -> TargetFile:
        """Trusted target info of `target` (walking delegations), or TargetNotFoundError.

        Each role in `require_roles` must also sign `target` with the same length and hashes.
        """
        check_target_path(target)
        state = self.state(collection)
        with tuf_errors(collection, self.server):
            info = state.updater.get_targetinfo(target)
            if info is None:
                raise TargetNotFoundError(f"{target} is not signed in {collection}")
            if self.policy:
                self._check_policy_walk(state, target)
            for role in require_roles:
                self._check_required_role(state, role, target, info)
        return info

    def _check_required_role(
        self, state: TrustedState, role: str, target: str, info: TargetFile
    ) -> None:
        name = state.collection
        try:
            md = state.role(role)
        except RoleNotPublishedError as e:
            raise TargetNotFoundError(f"required role {role} has not signed anything in {name}") from e
        except ClientError as e:
            raise TargetNotFoundError(f"required role {role}: {e.message}") from e
        if self.policy:
            self._check_policy_chain(state, role)
        theirs = md.signed.targets.get(target)
        if theirs is None:
            raise TargetNotFoundError(f"required role {role} does not sign {target} in {name}")
        common = set(theirs.hashes) & set(info.hashes)
        if (
            theirs.length != info.length
            or not common
            or any(theirs.hashes[a] != info.hashes[a] for a in common)
        ):
            raise ContentMismatchError(
                f"required role {role} signs different content for {target} in {name} "
                f"than the trusted answer: do not trust it until the signers agree"
            )

    def verify(
        self, collection: str, target: str, path: Path, require_roles: Sequence[str] = ()
    ) -> TargetFile:
        """Check that the file at `path` is exactly the trusted `target`; raise if not."""
        info = self.lookup(collection, target, require_roles)
        try:
            with path.open("rb") as f:
                info.verify_length_and_hashes(f)
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e}") from e
        except tuf_exc.LengthOrHashMismatchError as e:
            raise ContentMismatchError(
                f"{path} does not match the trusted {target} in {collection}: {e}"
            ) from e
        return info

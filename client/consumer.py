"""The consumer side: pin a root, then list, look up and verify targets through python-tuf's ngclient.

All verification is ngclient's TUF client workflow; this module only wires it to the trust
directory and turns its exceptions into `ClientError`s a user can act on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

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
from tufnotary.client.http import USER_AGENT, metadata_base_url
from tufnotary.client.names import check_target_path
from tufnotary.client.trustdir import TrustDir


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
        raise ServerError(f"downloading metadata of {collection} failed: {e}", "DOWNLOAD") from e
    except urllib3.exceptions.HTTPError as e:
        reason = getattr(e, "reason", None) or e
        raise ServerUnreachableError(f"cannot reach server {server}: {reason}") from e


@dataclass
class TargetListing:
    """The targets of the top-level targets role, and the roles it delegates to."""

    targets: dict[str, TargetFile]
    delegations: dict[str, list[str]] = field(default_factory=dict)


class Consumer:
    """Reads and verifies one server's collections from a trust directory."""

    def __init__(self, trust: TrustDir, server: str, socket_timeout: int = 30) -> None:
        self.trust = trust
        self.server = server
        self.socket_timeout = socket_timeout

    def _updater(self, collection: str) -> Updater:
        bootstrap = self.trust.read_pinned_root(collection)
        with tuf_errors(collection, self.server):
            return Updater(
                metadata_dir=str(self.trust.metadata_dir(collection)),
                metadata_base_url=metadata_base_url(self.server, collection),
                fetcher=Urllib3Fetcher(socket_timeout=self.socket_timeout, app_user_agent=USER_AGENT),
                config=UpdaterConfig(app_user_agent=USER_AGENT),
                bootstrap=bootstrap,
            )

    def refresh(self, collection: str) -> Updater:
        """Run the TUF client workflow for the top-level roles; return the refreshed Updater."""
        updater = self._updater(collection)
        with tuf_errors(collection, self.server):
            updater.refresh()
        return updater

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

    def list_targets(self, collection: str) -> TargetListing:
        targets = Metadata[Targets].from_bytes(self.trusted_targets(collection)).signed
        delegations: dict[str, list[str]] = {}
        if targets.delegations is not None and targets.delegations.roles is not None:
            delegations = {
                name: list(role.paths or role.path_hash_prefixes or [])
                for name, role in targets.delegations.roles.items()
            }
        return TargetListing(dict(targets.targets), delegations)

    def lookup(self, collection: str, target: str) -> TargetFile:
        """Trusted target info of `target` (walking delegations), or TargetNotFoundError."""
        check_target_path(target)
        updater = self.refresh(collection)
        with tuf_errors(collection, self.server):
            info = updater.get_targetinfo(target)
        if info is None:
            raise TargetNotFoundError(f"{target} is not signed in {collection}")
        return info

    def verify(self, collection: str, target: str, path: Path) -> TargetFile:
        """Check that the file at `path` is exactly the trusted `target`; raise if not."""
        info = self.lookup(collection, target)
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

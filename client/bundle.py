"""Offline bundles: a collection's root chain and current metadata in one file, verified with no network.

A bundle is JSON: `{"mediaType": BUNDLE_TYPE, "collection", "server", "exported", "files":
{filename: base64}}` holding, under the exact names a TUF client asks for, every root version
(`N.root.json`), `timestamp.json`, and the snapshot, targets and delegated roles at the versions
that timestamp and snapshot name (`V.snapshot.json`, `V.targets.json`, `V.<role>.json`). The
exporter takes them from metadata ngclient just verified.

Verifying a bundle *is* the normal TUF client workflow (python-tuf's ngclient, through
`Consumer`) with a fetcher that reads the bundle instead of the network: the same root chain,
rollback protection against what the trust directory already trusts (the trusted state is
updated, as after any online refresh), expiry, hashes, delegations, required roles and denied
algorithms. With `as_of` (an archival check) expiry is judged at that time instead of now, in a
throwaway copy of the trust state that starts from the oldest root the trust directory pinned;
this sets the reference time of ngclient's `TrustedMetadataSet`, the client's second private
python-tuf access (ngclient has no public parameter for it).
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from tufnotary.client.consumer import Consumer
from tufnotary.client.errors import UsageError
from tufnotary.client.policy import AlgorithmPolicy
from tufnotary.client.trusted import TrustedState
from tufnotary.client.trustdir import TrustDir

BUNDLE_TYPE = "application/vnd.tufnotary.bundle.v1+json"
MAX_BUNDLE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    collection: str
    server: str
    exported: str
    files: dict[str, bytes]

    def to_bytes(self) -> bytes:
        doc = {
            "mediaType": BUNDLE_TYPE, "collection": self.collection, "server": self.server,
            "exported": self.exported,
            "files": {n: base64.b64encode(d).decode() for n, d in sorted(self.files.items())},
        }
        return json.dumps(doc, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> Bundle:
        try:
            doc = json.loads(data)
            if doc.get("mediaType") != BUNDLE_TYPE:
                raise ValueError(f"mediaType is not {BUNDLE_TYPE}")
            files = {str(n): base64.b64decode(v, validate=True) for n, v in doc["files"].items()}
            return cls(str(doc["collection"]), str(doc.get("server", "")), str(doc.get("exported", "")), files)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise UsageError(f"{source} is not a tufnotary bundle: {e}") from e

    def roots(self) -> list[bytes]:
        """Every root version in the bundle, in version order."""
        out, version = [], 1
        while f"{version}.root.json" in self.files:
            out.append(self.files[f"{version}.root.json"])
            version += 1
        return out


def read_bundle(path: Path) -> Bundle:
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise UsageError(f"{path} is larger than {MAX_BUNDLE_BYTES} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read bundle {path}: {e.strerror}") from e
    return Bundle.from_bytes(data, str(path))


def export_bundle(state: TrustedState, server: str, fetch_root: Callable[[int], bytes],
                  now: datetime | None = None) -> Bundle:
    """A bundle of the verified `state` (refreshed, every delegated role loaded)."""
    files: dict[str, bytes] = {}
    history = state.metadata_dir / "root_history"
    for version in range(1, state.root.signed.version + 1):
        local = history / f"{version}.root.json"
        files[f"{version}.root.json"] = local.read_bytes() if local.exists() else fetch_root(version)
    files["timestamp.json"] = (state.metadata_dir / "timestamp.json").read_bytes()
    snapshot_version = state.timestamp.signed.snapshot_meta.version
    files[f"{snapshot_version}.snapshot.json"] = (state.metadata_dir / "snapshot.json").read_bytes()
    for visit in state.walk():
        if visit.metadata is None:
            continue
        role = visit.role
        version = state.snapshot.signed.meta[f"{role}.json"].version
        files[f"{version}.{quote(role, safe='')}.json"] = (
            state.metadata_dir / f"{quote(role, safe='')}.json").read_bytes()
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Bundle(state.collection, server, when, files)


class BundleFetcher(FetcherInterface):
    """Serves metadata files from a bundle; anything else is a 404, as from a server."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.rsplit("/_trust/tuf/", 1)[-1]
        data = self.bundle.files.get(name)
        if data is None:
            raise tuf_exc.DownloadHTTPError(f"{name} is not in the bundle", 404)
        return iter([data])


class BundleConsumer(Consumer):
    """A Consumer whose metadata comes from a bundle, optionally judged at a past time."""

    def __init__(self, trust: TrustDir, bundle: Bundle, source: str, policy: AlgorithmPolicy,
                 as_of: datetime | None = None) -> None:
        super().__init__(trust, f"bundle:{source}", policy=policy)
        self._fetcher = BundleFetcher(bundle)
        self.as_of = as_of

    def _updater(self, collection: str) -> Updater:
        updater = super()._updater(collection)
        if self.as_of is not None:
            updater._trusted_set.reference_time = self.as_of  # noqa: SLF001 - see module docstring
        return updater


@contextmanager
def archival_trust(trust: TrustDir, collection: str) -> Iterator[TrustDir]:
    """A throwaway trust directory holding only the oldest root `trust` pinned for `collection`."""
    history = trust.metadata_dir(collection) / "root_history"
    roots = sorted(history.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0]))
    first = roots[0].read_bytes() if roots else trust.read_pinned_root(collection)
    with tempfile.TemporaryDirectory(prefix="tufnotary-asof-") as tmp:
        copy = TrustDir(Path(tmp))
        copy.pin_root(collection, first)
        yield copy


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time; a time without zone is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(f"invalid time {text!r}: use e.g. 2025-01-31T12:00:00Z") from e
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def root_version(data: bytes) -> int:
    return Metadata[Root].from_bytes(data).signed.version


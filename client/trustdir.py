"""Layout of the trust directory and the small per-collection state files kept in it.

    <trust-dir>/private/<keyid>.pem              encrypted PKCS#8 private keys (0600, dir 0700)
    <trust-dir>/public/<keyid>.json              the matching public keys (TUF key dicts)
    <trust-dir>/collections/<collection>/metadata/   ngclient cache; root.json is the pinned anchor;
                                                     targets-type roles this client published
                                                     are kept here too (`remember_published`)
    <trust-dir>/collections/<collection>/keys.json   local key ids that sign root and targets
    <trust-dir>/collections/<collection>/staged.json target changes not yet published (targets,
                                                     or routed to hash bins)
    <trust-dir>/collections/<collection>/staged/<role>.json   staged changes of a delegated role
    <trust-dir>/collections/<collection>/settings.json  publisher settings (expiry per role)
    <trust-dir>/collections/<collection>/server-keys.json  key ids the server last gave for its
                                                     online roles (`Publisher.server_signs_snapshot`)
    <trust-dir>/config.toml                      consumer policy (see `config.py`)
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from tufnotary.client.errors import ClientError, NotInitializedError
from tufnotary.client.names import check_collection


def write_file_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # What tempfile.mkstemp does (a new file no one else can have opened), without importing tempfile
    # and its random module into every command.
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ClientError(f"cannot read {path}: {e}") from e


# The records below are NamedTuples, not dataclasses: importing dataclasses (and the inspect, ast
# and dis modules it loads) was ~13 ms of every command that reads a trust directory.
class CollectionKeys(NamedTuple):
    """Which local keys sign the root and targets roles of one collection."""

    root: list[str]
    targets: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return {"root": self.root, "targets": self.targets}


class StagedChanges(NamedTuple):
    """Pending target changes: target path -> TUF target dict to add, or None to remove (a dict
    of its own: `StagedChanges({})` for none)."""

    changes: dict[str, dict[str, Any] | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "add": {p: t for p, t in self.changes.items() if t is not None},
            "remove": sorted(p for p, t in self.changes.items() if t is None),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagedChanges:
        changes: dict[str, dict[str, Any] | None] = dict(d.get("add", {}))
        changes.update({p: None for p in d.get("remove", [])})
        return cls(changes)


DEFAULT_EXPIRY_DAYS = {"root": 365.0, "targets": 90.0, "snapshot": 7.0}


class CollectionSettings(NamedTuple):
    """Publisher settings of one collection: metadata lifetime in days per role."""

    expiry_days: dict[str, float]

    def lifetime(self, role: str) -> timedelta:
        """How long a new version of `role` stays valid: its own setting, else that of root
        (for root) or targets (any other role), else the default."""
        key = role if role in self.expiry_days else ("root" if role == "root" else "targets")
        return timedelta(days=self.expiry_days.get(key, DEFAULT_EXPIRY_DAYS.get(key, 90.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"expiry_days": self.expiry_days}


class TrustDir:
    """Paths and state files under one trust directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    @property
    def private_dir(self) -> Path:
        return self.root / "private"

    @property
    def public_dir(self) -> Path:
        return self.root / "public"

    def collection_dir(self, collection: str) -> Path:
        return self.root / "collections" / check_collection(collection)

    def metadata_dir(self, collection: str) -> Path:
        return self.collection_dir(collection) / "metadata"

    def pinned_root_path(self, collection: str) -> Path:
        return self.metadata_dir(collection) / "root.json"

    def has_pinned_root(self, collection: str) -> bool:
        return self.pinned_root_path(collection).exists()

    def read_pinned_root(self, collection: str) -> bytes:
        path = self.pinned_root_path(collection)
        if not path.exists():
            raise NotInitializedError(
                f"no trusted root pinned for {collection} in {self.root}: run "
                f"'tufnotary init {collection}' as its publisher, or pass --root FILE"
            )
        return path.read_bytes()

    def pin_root(self, collection: str, data: bytes) -> None:
        write_file_atomic(self.pinned_root_path(collection), data)

    def role_metadata_path(self, collection: str, role: str) -> Path:
        """Where ngclient persists a verified role (its name URL-quoted, as ngclient does)."""
        return self.metadata_dir(collection) / f"{quote(role, safe='')}.json"

    def remember_published(self, collection: str, role: str, data: bytes) -> None:
        """Keep the bytes of a targets-type `role` this client signed and the server accepted
        where ngclient persists verified metadata: the next publish starts from them
        (`quickpublish.py`). ngclient verifies a persisted file before using it, against the
        version its verified snapshot lists, so this never makes a consumer trust anything."""
        if role in ("root", "timestamp", "snapshot"):
            raise ValueError(f"only targets-type roles are remembered, not {role}")
        write_file_atomic(self.role_metadata_path(collection, role), data)

    def read_keys(self, collection: str) -> CollectionKeys:
        path = self.collection_dir(collection) / "keys.json"
        if not path.exists():
            raise NotInitializedError(
                f"{collection} is not initialised for publishing in {self.root}: "
                f"run 'tufnotary init {collection}' first"
            )
        d = _read_json(path)
        try:
            return CollectionKeys(root=list(d["root"]), targets=list(d["targets"]))
        except (KeyError, TypeError) as e:
            raise ClientError(f"{path} is malformed: expected lists 'root' and 'targets'") from e

    def write_keys(self, collection: str, keys: CollectionKeys) -> None:
        data = json.dumps(keys.to_dict(), indent=2).encode() + b"\n"
        write_file_atomic(self.collection_dir(collection) / "keys.json", data)

    def is_owner(self, collection: str) -> bool:
        """True when this trust directory initialised `collection` (it publishes it)."""
        return (self.collection_dir(collection) / "keys.json").exists()

    def staged_path(self, collection: str, role: str | None = None) -> Path:
        if role is None:
            return self.collection_dir(collection) / "staged.json"
        return self.collection_dir(collection) / "staged" / f"{quote(role, safe='')}.json"

    def read_settings(self, collection: str) -> CollectionSettings:
        path = self.collection_dir(collection) / "settings.json"
        if not path.exists():
            return CollectionSettings({})
        d = _read_json(path)
        try:
            return CollectionSettings({str(k): float(v) for k, v in d["expiry_days"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ClientError(f"{path} is malformed: expected 'expiry_days': {{role: days}}") from e

    def write_settings(self, collection: str, settings: CollectionSettings) -> None:
        data = json.dumps(settings.to_dict(), indent=2, sort_keys=True).encode() + b"\n"
        write_file_atomic(self.collection_dir(collection) / "settings.json", data)

    def read_server_keyids(self, collection: str) -> dict[str, str]:
        """Online role -> the key id the server last gave for it ({} when none is known: a
        malformed file only means asking the server again)."""
        path = self.collection_dir(collection) / "server-keys.json"
        try:
            d = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(d, dict):
            return {}
        return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, str)}

    def write_server_keyid(self, collection: str, role: str, keyid: str) -> None:
        known = self.read_server_keyids(collection) | {role: keyid}
        data = json.dumps(known, indent=2, sort_keys=True).encode() + b"\n"
        write_file_atomic(self.collection_dir(collection) / "server-keys.json", data)

    def read_staged(self, collection: str, role: str | None = None) -> StagedChanges:
        path = self.staged_path(collection, role)
        if not path.exists():
            return StagedChanges({})
        try:
            return StagedChanges.from_dict(_read_json(path))
        except (AttributeError, TypeError, ValueError) as e:
            raise ClientError(f"{path} is malformed: {e}") from e

    def staged_roles(self, collection: str) -> list[str]:
        """Delegated roles with staged changes."""
        from urllib.parse import unquote

        d = self.collection_dir(collection) / "staged"
        return sorted(unquote(p.stem) for p in d.glob("*.json")) if d.is_dir() else []

    def write_staged(self, collection: str, staged: StagedChanges, role: str | None = None) -> None:
        path = self.staged_path(collection, role)
        if not staged.changes:
            path.unlink(missing_ok=True)
            return
        write_file_atomic(path, json.dumps(staged.to_dict(), indent=2).encode() + b"\n")

    def forget_collection(self, collection: str) -> None:
        """Remove all local state of `collection` (never the keys in private/)."""
        import shutil

        shutil.rmtree(self.collection_dir(collection), ignore_errors=True)

"""Keep every collection fresh: renew timestamps (and server-signed snapshots) before they expire.

Reads never sign: clients always get stored metadata, and a background thread per worker replaces
it ahead of expiry. Each pass claims due collections from the store in chunks (`claim_renewals`: an
indexed query over the expiries commits record, and a lease no other renewer on any worker or host
takes while it lasts), signs a whole chunk per role in one `SignBatch` call, and commits the chunk
in one transaction (`commit_many`: a publish that won the race for one collection costs only that
collection). A renewal that races a publish loses with a version conflict, which is harmless: the
publish's timestamp is as fresh.

The key that renews a role is the one that signed its stored version, if the stored root still
lists it for that role with threshold 1: asking the signer per collection would cost round trips the
renewal of 10,000 collections in seconds cannot pay. A collection whose root does not is skipped,
with a warning, until a publish fixes it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from securesystemslib.signer import Key, Signature
from tuf.api.metadata import Metadata, Root

from tufnotary.server import metrics
from tufnotary.server import publish as publishing
from tufnotary.server.audit import AuditEntry, publish_details
from tufnotary.server.canonical import signed_bytes
from tufnotary.server.config import ServerConfig
from tufnotary.server.errors import (
    MalformedMetadataError,
    OnlineKeyError,
    ServerError,
    SignerRefusedError,
    VersionConflictError,
)
from tufnotary.server.logs import new_request_id, reset_request_id, set_request_id
from tufnotary.server.publish import (
    OnlineSigner,
    build_snapshot,
    build_timestamp,
    online_key,
    renew_before,
    renewal_due,
    replaced,
    version_past,
)
from tufnotary.server.storage import Commit, MetaStore, NewFile, RenewalState

log = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=5)
"""How long a claim keeps other renewers off a collection: longer than any pass, which releases its
claims when it ends. Only the claims of a renewer that died run out this way."""
BATCH_SECONDS_PER_ITEM = 0.1
"""Deadline of a SignBatch call: the signer timeout plus this per payload (today's signer needs ~0.06)."""


class BatchSigner(OnlineSigner, Protocol):
    """What renewal needs from the signer (RemoteSigner implements it)."""

    def sign_batch(self, items: Sequence[tuple[Key, bytes, str, str]],
                   timeout: float | None = None) -> list[Signature | ServerError]: ...


@dataclass(frozen=True)
class _Signed:
    """What renewal reads of a stored file: its JSON fields. The file was validated when stored, and
    python-tuf's full parse of root, snapshot and timestamp costs more than the rest of a renewal."""

    fields: Mapping[str, Any]
    """The "signed" object."""
    keyids: tuple[str, ...]
    """The key ids of its signatures."""

    @classmethod
    def of(cls, data: bytes) -> _Signed:
        md = json.loads(data)
        return cls(md["signed"], tuple(s["keyid"] for s in md["signatures"]))

    @property
    def version(self) -> int:
        return int(self.fields["version"])

    @property
    def expires(self) -> datetime:
        return datetime.fromisoformat(self.fields["expires"])


@dataclass
class _Plan:
    """The renewal of one collection, filled in as the chunk goes through its stages."""

    collection: str
    state: RenewalState
    root: _Signed
    snapshot: _Signed
    timestamp: _Signed
    files: list[NewFile] = field(default_factory=list)
    error: ServerError | None = None
    snapshot_offline: bool = False


@dataclass
class Renewals:
    """What `renew_collections` did, per collection."""

    written: dict[str, dict[str, int]] = field(default_factory=dict)
    """Collections renewed (role -> version written) or looked at with nothing due ({})."""
    conflicts: dict[str, VersionConflictError] = field(default_factory=dict)
    """A publish (or another renewer) changed these meanwhile: nothing written, nothing to do."""
    failed: dict[str, ServerError] = field(default_factory=dict)
    """Not renewed, to retry later."""
    snapshot_offline: list[str] = field(default_factory=list)
    """Collections whose snapshot the signer holds no key for: not the server's to renew."""


def renew_collections(store: MetaStore, signer: BatchSigner, config: ServerConfig, collections: Sequence[str],
                      now: datetime) -> Renewals:
    """Renew what is due in `collections`: one read, one SignBatch per online role, one transaction.

    Raises only when the whole chunk fails (database or signer unreachable)."""
    out = Renewals()
    states = store.renewal_state(collections)
    plans: list[_Plan] = []
    for name in collections:
        state = states.get(name)
        if state is None or not {"root", "snapshot", "timestamp"} <= set(state.files):
            out.written[name] = {}  # deleted meanwhile, or not published yet: nothing to renew
            continue
        try:
            parsed = (_Signed.of(state.files[role].data) for role in ("root", "snapshot", "timestamp"))
            plans.append(_Plan(name, state, *parsed))
        except Exception as e:  # stored files were validated: this is damage, say so
            out.failed[name] = MalformedMetadataError(f"stored metadata does not parse: {e}")

    # Snapshots first: a renewed snapshot goes into the timestamp signed after it.
    snapshot_jobs = []
    for p in plans:
        if p.state.snapshot_online and renewal_due(p.snapshot.expires, config.snapshot_expiry, now):
            key = _stored_signing_key(p.root, "snapshot", p.snapshot)
            if key is None:  # signed by its owner under the root's rules
                p.snapshot_offline = True
                continue
            meta = {name.removesuffix(".json"): int(m["version"]) for name, m in p.snapshot.fields["meta"].items()}
            snapshot_jobs.append(_Job(p, "snapshot", key, p.snapshot.version + 1,
                                      lambda v, meta=meta: build_snapshot(v, now + config.snapshot_expiry, meta)))
    for job, result in _sign_all(signer, config, snapshot_jobs):
        if isinstance(result, SignerRefusedError) and (result.detail or {}).get("code") == "KEY_NOT_FOUND":
            job.plan.snapshot_offline = True  # stored before the store tracked who signed it
        elif isinstance(result, ServerError):
            job.plan.error = result
        else:
            job.plan.files.append(NewFile("snapshot", result[0], result[1],
                                          online_expires=now + config.snapshot_expiry))

    timestamp_jobs = []
    for p in plans:
        due = renewal_due(p.timestamp.expires, config.timestamp_expiry, now)
        if p.error is not None or not (p.files or due):
            continue
        key = _stored_signing_key(p.root, "timestamp", p.timestamp)
        if key is None:
            listed = p.root.fields["roles"]["timestamp"]
            p.error = OnlineKeyError(
                "the root does not list the key that signed the stored timestamp as the timestamp key with "
                "threshold 1: publish a root that lists the server's timestamp key (from timestamp.key)",
                {"role": "timestamp", "root_keys": listed["keyids"], "threshold": listed["threshold"]})
            continue
        snapshot_version, snapshot_bytes = ((p.files[0].version, p.files[0].data) if p.files else
                                            (p.snapshot.version, p.state.files["snapshot"].data))
        timestamp_jobs.append(_Job(p, "timestamp", key, p.timestamp.version + 1,
                                   lambda v, b=snapshot_bytes, sv=snapshot_version: build_timestamp(
                                       v, now + config.timestamp_expiry, b, sv)))
    for job, result in _sign_all(signer, config, timestamp_jobs):
        if isinstance(result, ServerError):
            job.plan.error = result
        else:
            job.plan.files.append(NewFile("timestamp", result[0], result[1],
                                          online_expires=now + config.timestamp_expiry))

    commits = []
    for p in plans:
        if p.snapshot_offline:
            out.snapshot_offline.append(p.collection)
        if p.error is not None:
            target = out.conflicts if isinstance(p.error, VersionConflictError) else out.failed
            target[p.collection] = p.error  # type: ignore[assignment]
        elif not p.files:
            out.written[p.collection] = {}
        else:
            details = publish_details(replaced(p.state.files, p.files), {f.role: (f.version, f.data) for f in p.files})
            commits.append(Commit(p.collection, p.files, {role: f.version for role, f in p.state.files.items()},
                                  AuditEntry("renew", p.collection, "tufnotary-server", None, details)))
    for c, conflict in zip(commits, store.commit_many(commits)):
        if conflict is None:
            out.written[c.collection] = {f.role: f.version for f in c.files}
        else:
            out.conflicts[c.collection] = conflict
    return out


@dataclass
class _Job:
    plan: _Plan
    role: str
    key: Key
    version: int
    build: Callable[[int], Metadata]


def _sign_all(signer: BatchSigner, config: ServerConfig,
              jobs: list[_Job]) -> list[tuple[_Job, tuple[int, bytes] | ServerError]]:
    """Sign every job in one SignBatch, then once more, in one more SignBatch, the jobs that can
    recover: a version the key already signed (a crash or failed commit between signing and
    storing) moves past the signer's mark, as `_sign_next` does for a publish; a key the signer
    refused (e.g. retired since) gives way to the signer's key the root lists, as a publish picks it."""
    results: list[tuple[_Job, tuple[int, bytes] | ServerError]] = []
    retry: list[_Job] = []
    for job, outcome in _sign_batch(signer, config, jobs):
        moved = version_past(outcome, job.version) if isinstance(outcome, VersionConflictError) else None
        if moved is not None:
            job.version = moved
            retry.append(job)
        elif isinstance(outcome, SignerRefusedError) and _switch_key(signer, job):
            retry.append(job)
        else:
            results.append((job, outcome))
    results.extend(_sign_batch(signer, config, retry))
    return results


def _switch_key(signer: BatchSigner, job: _Job) -> bool:
    """Point `job` at the signer's key for its role that the root lists, if that is another key.
    A few calls to the signer: only after a refusal, which is rare."""
    try:
        key = online_key(signer, job.plan.collection, Root.from_dict(copy.deepcopy(dict(job.plan.root.fields))),
                         job.role)
    except ServerError:
        return False
    if key is None or key.keyid == job.key.keyid:
        return False
    job.key = key
    return True


def _sign_batch(signer: BatchSigner, config: ServerConfig,
                jobs: list[_Job]) -> list[tuple[_Job, tuple[int, bytes] | ServerError]]:
    if not jobs:
        return []
    built = [job.build(job.version) for job in jobs]
    items = [(job.key, signed_bytes(md), job.plan.collection, job.role) for job, md in zip(jobs, built)]
    signatures = signer.sign_batch(items, timeout=config.signer_timeout + BATCH_SECONDS_PER_ITEM * len(items))
    results: list[tuple[_Job, tuple[int, bytes] | ServerError]] = []
    for job, md, signature in zip(jobs, built, signatures):
        if isinstance(signature, ServerError):
            results.append((job, signature))
        else:
            md.signatures[signature.keyid] = signature
            results.append((job, (job.version, md.to_bytes(publishing.SERIALIZER))))
    return results


def _stored_signing_key(root: _Signed, role: str, stored: _Signed) -> Key | None:
    """The key that signed the stored `role` file, if `root` lets it sign `role` alone."""
    listed = root.fields["roles"][role]
    if listed["threshold"] != 1:
        return None
    keys = root.fields["keys"]
    for keyid in stored.keyids:
        if keyid in listed["keyids"] and keyid in keys:
            return Key.from_dict(keyid, copy.deepcopy(keys[keyid]))
    return None


def renew(store: MetaStore, signer: BatchSigner, config: ServerConfig, collection: str,
          now: datetime | None = None) -> dict[str, int]:
    """Renew `collection` now if its timestamp (or server-signed snapshot) is due, claims aside.

    Returns the versions written ({} when nothing was due). Raises VersionConflictError when a
    publish or another renewer changed the collection meanwhile (that one's result is as fresh), or
    the error that stopped it."""
    done = renew_collections(store, signer, config, [collection], now or publishing.utcnow())
    if done.snapshot_offline:
        store.release_renewals([], snapshot_offline=done.snapshot_offline)
    if collection in done.conflicts:
        raise done.conflicts[collection]
    if collection in done.failed:
        raise done.failed[collection]
    return done.written.get(collection, {})


def renew_all(store: MetaStore, signer: BatchSigner, config: ServerConfig, now: datetime | None = None) -> int:
    """One pass: claim due collections `config.renew_batch` at a time and renew them; returns how
    many were renewed. Every claim is held to the end of the pass, so that no collection is looked
    at twice in it, then released: what failed is retried by the next pass, as before claims."""
    now = now or publishing.utcnow()
    renewed = 0
    claimed_all: list[str] = []
    offline: list[str] = []
    token = set_request_id(new_request_id("renew-"))  # follows the pass into the signer's logs
    try:
        while claimed := store.claim_renewals(renew_before(config.timestamp_expiry, now), renew_before(config.snapshot_expiry, now),
                                              now, CLAIM_LEASE, config.renew_batch):
            claimed_all.extend(claimed)
            try:
                outcome = renew_collections(store, signer, config, claimed, now)
            except ServerError as e:  # the signer or the database is down: the next pass tries again
                metrics.renewal_failures.labels(e.code).inc(len(claimed))
                log.warning("could not renew %d collection(s): %s %s", len(claimed), e.code, e.message)
                break
            for written in outcome.written.values():
                if written:
                    renewed += 1
                    metrics.renewals.inc()
            for name, error in outcome.failed.items():
                metrics.renewal_failures.labels(error.code).inc()
                log.warning("could not renew %s: %s %s", name, error.code, error.message)
            offline.extend(outcome.snapshot_offline)
    finally:
        try:
            store.release_renewals(claimed_all, offline)  # if this fails, the leases end by themselves
        finally:
            reset_request_id(token)
    return renewed


class Renewer(threading.Thread):
    def __init__(self, store: MetaStore, signer: BatchSigner, config: ServerConfig) -> None:
        super().__init__(name="tufnotary-renewer", daemon=True)
        self._store, self._signer, self._config = store, signer, config
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = self._config.renew_interval
        # Spread workers apart; claims keep them off each other's collections anyway.
        while not self._stop_event.wait(interval * random.uniform(0.5, 1.0)):
            try:
                count = renew_all(self._store, self._signer, self._config)
                if count:
                    log.info("renewed %d collection(s)", count)
            except ServerError as e:
                metrics.renewal_failures.labels(e.code).inc()
                log.warning("renewal pass failed: %s %s", e.code, e.message)
            except Exception:
                metrics.renewal_failures.labels("INTERNAL").inc()
                log.exception("renewal pass failed")

    def stop(self) -> None:
        self._stop_event.set()

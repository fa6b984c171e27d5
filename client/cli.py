"""The `tufnotary` command line: the only module that parses arguments, prompts, prints or exits.

Heavy modules (python-tuf, cryptography, urllib3) are imported inside the command functions
so that `tufnotary --help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tufnotary.client.errors import ClientError, PassphraseError

if TYPE_CHECKING:
    from tuf.ngclient import FetcherInterface

    from tufnotary.client.admin import Admin
    from tufnotary.client.config import ClientConfig
    from tufnotary.client.consumer import Consumer
    from tufnotary.client.http import ServerClient
    from tufnotary.client.keys import KeyStore
    from tufnotary.client.publisher import Publisher
    from tufnotary.client.trustdir import TrustDir

PASSPHRASE_ENV = "TUFNOTARY_PASSPHRASE"
TRUST_DIR_ENV = "TUFNOTARY_TRUST_DIR"
SERVER_ENV = "TUFNOTARY_SERVER"
CONFIG_ENV = "TUFNOTARY_CONFIG"


class TerminalPassphrases:
    """Passphrases from the environment, else asked on the terminal (twice for new keys).

    `TUFNOTARY_PASSPHRASE_<first 16 hex digits of the key id>` is the passphrase of that key
    (for a command that signs with several keys protected by different passphrases), else
    `TUFNOTARY_PASSPHRASE` for every key. The prompt names the key id. Within one command a
    passphrase is asked once per key, and once for all new keys.
    """

    def __init__(self) -> None:
        self._by_keyid: dict[str, str] = {}
        self._new: str | None = None

    def _ask(self, prompt: str) -> str:
        import getpass

        if not sys.stdin.isatty():
            raise PassphraseError(
                f"a passphrase is needed but there is no terminal: set {PASSPHRASE_ENV}"
            )
        return getpass.getpass(prompt)

    def __call__(self, keyid: str, new: bool) -> str:
        env = os.environ.get(f"{PASSPHRASE_ENV}_{keyid[:16]}", os.environ.get(PASSPHRASE_ENV))
        if env is not None:
            return env
        if keyid in self._by_keyid:
            return self._by_keyid[keyid]
        if new:
            if self._new is None:
                first = self._ask(f"Passphrase for new key {keyid[:16]}: ")
                if first != self._ask("Repeat passphrase: "):
                    raise PassphraseError("the two passphrases differ; no key was created")
                self._new = first
            passphrase = self._new
        else:
            passphrase = self._ask(f"Passphrase for key {keyid}: ")
        self._by_keyid[keyid] = passphrase
        return passphrase


class Context:
    """The library objects a command needs, built from the global options."""

    def __init__(self, args: argparse.Namespace) -> None:
        from tufnotary.client.trustdir import TrustDir

        self.args = args
        self.trust: TrustDir = TrustDir(args.trust_dir)
        self.server_url: str = args.server
        self.passphrases = TerminalPassphrases()  # one per command: each passphrase asked once
        self._server: ServerClient | None = None

    def keys(self) -> KeyStore:
        from tufnotary.client.keys import KeyStore

        return KeyStore(self.trust, self.passphrases)

    def server(self) -> ServerClient:
        """The command's one client of the metadata server (its connections and tokens)."""
        if self._server is None:
            from tufnotary.client.http import HttpConfig, ServerClient

            self._server = ServerClient(HttpConfig(server=self.server_url, read_timeout=self.args.timeout))
        return self._server

    def config(self) -> ClientConfig:
        from tufnotary.client.config import load_config

        if self.args.config is not None:
            return load_config(Path(self.args.config), required=True)
        return load_config(self.trust.root / "config.toml")

    def consumer(self, fetcher: FetcherInterface | None = None) -> Consumer:
        from tufnotary.client.consumer import Consumer

        return Consumer(
            self.trust, self.server_url, socket_timeout=int(self.args.timeout),
            policy=self.config().policy, fetcher=fetcher,
        )

    def admin(self) -> Admin:
        from tufnotary.client.admin import Admin

        return Admin(self.publisher())

    def save_path(self) -> Path | None:
        save = getattr(self.args, "save", None)
        return Path(save) if save else None

    def publisher(self) -> Publisher:
        from tufnotary.client.publisher import Publisher

        server = self.server()
        fetcher = server.metadata_fetcher(int(self.args.timeout))
        return Publisher(self.trust, self.keys(), server, self.consumer(fetcher))


def _out(line: str) -> None:
    print(line)


def _warn(line: str) -> None:
    print(f"tufnotary: warning: {line}", file=sys.stderr)


def _report_submit(result: Any, done: str) -> None:
    """Print what a published or saved draft did."""
    if result.saved is not None:
        _out(f"saved a signing request for {result.draft.summary} to {result.saved}")
        for keyid in result.signed_by:
            _out(f"signed with local key {keyid}")
        if result.missing:
            for missing in result.missing:
                _out(f"still needed: {missing.describe()}")
            _out(
                f"next: each holder runs 'tufnotary sign --add-signature {result.saved}', then "
                f"'tufnotary publish {result.draft.collection} --from {result.saved}'"
            )
        else:
            _out(f"every threshold is met: 'tufnotary publish {result.draft.collection} "
                 f"--from {result.saved}' uploads it")
        return
    versions = ", ".join(f"{r} {v}" for r, v in sorted(result.versions.items()))
    _out(f"{done} ({versions})" if versions else done)


def _target_summary(hashes: dict[str, str], length: int) -> str:
    algo = "sha256" if "sha256" in hashes else sorted(hashes)[0]
    return f"{length} bytes, {algo}:{hashes[algo]}"


def cmd_key_generate(ctx: Context) -> int:
    key = ctx.keys().generate(ctx.args.type, ctx.args.bits)
    _out(key.keyid)
    return 0


def cmd_key_export(ctx: Context) -> int:
    key = ctx.keys().public_key(ctx.args.keyid)
    _out(json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=2, sort_keys=True))
    return 0


def _keys_from(ctx: Context, refs: Sequence[str] | None) -> list[Any]:
    store = ctx.keys()
    return [store.resolve(ref) for ref in refs or []]


def cmd_key_add(ctx: Context) -> int:
    a = ctx.args
    keys = _keys_from(ctx, a.key)
    result = ctx.admin().key_add(a.collection, a.role, keys, a.threshold, ctx.save_path())
    _report_submit(result, f"added {', '.join(k.keyid for k in keys)} to {a.role} of {a.collection}")
    return 0


def cmd_key_remove(ctx: Context) -> int:
    a = ctx.args
    result = ctx.admin().key_remove(a.collection, a.role, a.keyid, a.threshold, ctx.save_path())
    _report_submit(result, f"removed {a.keyid} from {a.role} of {a.collection}")
    return 0


def cmd_key_rotate(ctx: Context) -> int:
    from tufnotary.client.errors import UsageError

    a = ctx.args
    if a.client_managed:
        if a.role != "snapshot":
            raise UsageError("--client-managed applies to snapshot only: the server always signs timestamp")
        new_key = ctx.keys().resolve(a.key) if a.key is not None else None
        result, olds, new = ctx.admin().make_snapshot_client_managed(a.collection, new_key, a.type, ctx.save_path())
        _report_submit(result, f"snapshot of {a.collection} is now signed by your key {new} (was {', '.join(olds)})")
        return 0
    if a.server_managed:
        result, olds, new = ctx.admin().rotate_server_managed(a.collection, a.role, ctx.save_path())
        _report_submit(result, f"rotated the server's {a.role} key of {a.collection}: {', '.join(olds)} -> {new}")
        return 0
    if a.role in ("timestamp", "snapshot"):
        raise UsageError(f"the server holds the {a.role} key: rotate it with --server-managed")
    if a.key is not None and a.type is not None:
        raise UsageError("give either --key (a key of your choice) or --type (a new key), not both")
    new_key = ctx.keys().resolve(a.key) if a.key is not None else None
    result, old, new = ctx.admin().rotate(
        a.collection, a.role, new_key, a.type, a.old, ctx.save_path()
    )
    _report_submit(result, f"rotated {a.role} of {a.collection}: {old} -> {new}")
    return 0


def cmd_key_revoke(ctx: Context) -> int:
    a = ctx.args
    replacement = ctx.keys().resolve(a.replace_with) if a.replace_with else None
    result = ctx.admin().revoke(a.collection, a.keyid, replacement, ctx.save_path(),
                                keep_content=a.keep_content, dry_run=a.dry_run, since=a.since)
    if result.submitted is None:
        _out(f"dry run: nothing published; revoking {a.keyid} in {a.collection} would change "
             f"roles {', '.join(result.roles)}")
    else:
        _report_submit(
            result.submitted, f"revoked {a.keyid} in {a.collection} (roles: {', '.join(result.roles)})"
        )
    if result.replacement:
        _out(f"new key {result.replacement} replaces it where the threshold needed a key")
    _report_reverts(result, a.keyid[:16])
    if not result.signed:
        _out(f"key {a.keyid} signed no target in the stored history")
    else:
        _out(f"targets signed by {a.keyid} (review them):")
    for t in result.signed:
        _out(f"  {t.path}  {_target_summary(t.hashes, 0).split(', ', 1)[1]}  "
             f"({t.role} version {t.version})")
    return 0


def _report_reverts(result: Any, key: str) -> None:
    """One line per target entry only the revoked key vouched for, and what revoke did with it."""
    def digest(info: Any) -> str:
        return _target_summary(info.hashes, info.length).split(", ", 1)[1] if info is not None else "absent"

    verb = {"revert": "reverted", "drop": "dropped", "restore": "restored"}
    if result.kept:
        head = "kept (--keep-content)"
    elif result.submitted is None:
        head = "would be"
    else:
        head = ""
    for r in result.plan.reverts:
        action = f"{head} {verb[r.action]}".strip() if not result.kept else head
        to = (f"-> {digest(r.restored)} ({r.role} version {r.trusted_version})" if r.restored is not None
              else "(no version signed by a still-trusted key lists it)" if r.current is not None else "")
        _out(f"{action} {r.role} {r.path}: {digest(r.current)} (version {r.introduced_in}, signed only "
             f"by {key}) {to}".rstrip())
    spared: dict[str, list[int]] = {}
    for role, version in result.plan.spared:
        spared.setdefault(role, []).append(version)
    for role, numbers in spared.items():
        _out(f"trusted (--since {result.plan.since}): {role} version(s) {_ranges(numbers)}, signed "
             f"by {key} before it was compromised")
    if result.plan.since > 1 and not spared:
        _out(f"--since {result.plan.since}: no earlier version was signed by {key} alone")
    for role, version in result.plan.delegations_changed:
        _warn(f"{role} version {version}, signed only by {key}, changed delegations: review them with "
              f"'tufnotary delegation list'")
    if result.plan.reverts and result.kept:
        _out("the content above stays trusted: only keep it if the key was retired, not leaked")
    elif not result.plan.reverts:
        _out(f"no target's current value was signed by {key} alone")


def _ranges(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def cmd_key_list(ctx: Context) -> int:
    for info in ctx.keys().list():
        _out(f"{info.keyid}  {info.keytype}  {info.scheme}")
    return 0


def cmd_init(ctx: Context) -> int:
    a = ctx.args
    expiry = {}
    if a.root_expiry_days is not None:
        expiry["root"] = a.root_expiry_days
    if a.targets_expiry_days is not None:
        expiry["targets"] = a.targets_expiry_days
    result = ctx.publisher().init(
        a.collection, a.root_key, a.targets_key, a.type, a.bins, expiry
    )
    _out(
        f"initialised {result.collection}: root key {result.root_keyid}, "
        f"targets key {result.targets_keyid}"
    )
    if result.bins_keyid:
        _out(f"{a.bins} hash bins (bins-*), signed by key {result.bins_keyid}")
    return 0


def cmd_add(ctx: Context) -> int:
    # Staging is local: no publisher (python-tuf, HTTP, keys) is built for it.
    from tufnotary.client.errors import UsageError
    from tufnotary.client.staging import parse_custom, stage, target_from_digest, target_from_file

    a = ctx.args
    custom = parse_custom(a.custom)
    if a.file is not None:
        if a.digest is not None or a.length is not None:
            raise UsageError("give either FILE or --digest with --length, not both")
        info = target_from_file(a.target, Path(a.file), custom)
    elif a.digest is not None and a.length is not None:
        info = target_from_digest(a.target, a.digest, a.length, custom)
    else:
        raise UsageError("give FILE, or --digest ALGO:HEX together with --length N")
    stage(ctx.trust, a.collection, {info.path: info.entry()}, a.role)
    _out(f"staged add {info.path} ({_target_summary(info.hashes, info.length)})"
         + (f" for {a.role}" if a.role else ""))
    return 0


def cmd_remove(ctx: Context) -> int:
    from tufnotary.client.names import check_target_path
    from tufnotary.client.staging import stage

    stage(ctx.trust, ctx.args.collection, {check_target_path(ctx.args.target): None}, ctx.args.role)
    _out(f"staged remove {ctx.args.target}")
    return 0


def _print_staged(ctx: Context) -> None:
    publisher = ctx.publisher()
    c = ctx.args.collection
    any_staged = False
    for role in [None, *ctx.trust.staged_roles(c)]:
        staged = publisher.staged(c, role)
        suffix = f"  [{role}]" if role else ""
        for path, change in sorted(staged.changes.items()):
            any_staged = True
            if change is None:
                _out(f"remove {path}{suffix}")
            else:
                _out(f"add    {path} ({_target_summary(change['hashes'], change['length'])}){suffix}")
    if not any_staged:
        _out(f"no staged changes for {c}")


def cmd_status(ctx: Context) -> int:
    from datetime import datetime, timezone

    _print_staged(ctx)
    if not ctx.trust.is_owner(ctx.args.collection) and not ctx.trust.has_pinned_root(
        ctx.args.collection
    ):
        return 0
    warn_days = ctx.args.warn_days
    if warn_days is None:
        warn_days = ctx.config().expiry_warning_days
    rows = ctx.admin().status(ctx.args.collection, warn_days, ctx.args.all_bins)
    now = datetime.now(timezone.utc)
    _out(f"{'role':<24} {'version':>7}  {'expires':<20}  signatures")
    for r in rows:
        days = (r.expires - now).total_seconds() / 86400
        when = f"{r.expires:%Y-%m-%dT%H:%M:%SZ}"
        signers = ", ".join(k[:16] for k in r.signed_by) or "none"
        _out(f"{r.role:<24} {r.version:>7}  {when:<20}  {len(r.signed_by)} of {r.threshold} "
             f"needed: {signers}")
        bump = f"run 'tufnotary bump-expiry {ctx.args.collection} {r.role.split(' ')[0].removesuffix('-*')} --days N'"
        fix = {
            "timestamp": "the server renews it; check the server and signer",
            "snapshot": f"if you sign snapshot (--client-managed), {bump}; otherwise the server renews it: "
                        "check the server and signer",
        }.get(r.role, bump)
        if r.expired:
            _warn(f"{r.role} of {ctx.args.collection} EXPIRED {-days:.1f} days ago: clients "
                  f"refuse it; {fix}")
        elif r.warn:
            _warn(f"{r.role} of {ctx.args.collection} expires in {days:.1f} days "
                  f"(warning window {warn_days:g} days): {fix}")
    return 0


def cmd_publish(ctx: Context) -> int:
    from tufnotary.client.errors import UsageError

    a = ctx.args
    if a.from_file is not None:
        if a.role is not None or a.save is not None:
            raise UsageError("--from publishes a signing request as it is: no --role or --save")
        done = ctx.publisher().publish_request(a.collection, Path(a.from_file))
        _report_submit(done, f"published {done.draft.summary}")
        return 0
    result = None
    if a.role is None and a.save is None:
        from tufnotary.client import quickpublish

        result = quickpublish.publish(ctx.trust, a.collection, ctx.server(), ctx.passphrases)
    if result is None:
        result = ctx.publisher().publish(a.collection, a.role, ctx.save_path())
    if result.saved is not None:
        _report_submit(result.submitted, "")
        return 0
    role = a.role or "targets"
    changed = [r for r in result.roles if r != role]
    _out(
        f"published {result.collection}: {role} version {result.targets_version} "
        f"({len(result.added)} added, {len(result.removed)} removed)"
        + (f"; re-signed {len(changed)} hash bin(s)" if changed and a.role is None else "")
    )
    for path in result.not_present:
        _out(f"note: {path} was staged for removal but was not signed")
    return 0


def cmd_sign(ctx: Context) -> int:
    from tufnotary.client.draft import Draft
    from tufnotary.client.errors import UsageError

    a = ctx.args
    if a.ref is not None:
        return cmd_sign_ref(ctx)
    if a.prepare is not None:
        collection, role = a.prepare
        draft, _ = ctx.publisher().prepare_publish(
            collection, None if role == "targets" else role
        )
        if a.out:
            Path(a.out).write_text(draft.to_json())
        else:
            sys.stdout.write(draft.to_json())
        for missing in draft.missing():
            print(f"tufnotary: needs {missing.describe()}", file=sys.stderr)
        return 0
    if a.add_signature is None:
        raise UsageError("give --prepare COLLECTION ROLE or --add-signature FILE")
    path = Path(a.add_signature)
    try:
        draft = Draft.from_json(path.read_text(), str(path))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    used = draft.sign_with(ctx.keys(), set(a.key) if a.key else None)
    path.write_text(draft.to_json())
    if not used:
        _out(f"no local key can add a signature to {path}")
    for keyid in used:
        _out(f"signed {path} with key {keyid}")
    missing = draft.missing()
    for m in missing:
        _out(f"still needed: {m.describe()}")
    if not missing:
        _out(f"every threshold is met: run 'tufnotary publish {draft.collection} --from {path}'")
    return 0


def cmd_delegation_add(ctx: Context) -> int:
    a = ctx.args
    keys = _keys_from(ctx, a.key)
    result = ctx.admin().delegation_add(
        a.collection, a.role, keys, a.threshold, a.paths, a.terminating, a.parent, ctx.save_path()
    )
    _report_submit(result, f"delegated {', '.join(a.paths)} to {a.role} in {a.collection}")
    return 0


def cmd_delegation_remove(ctx: Context) -> int:
    a = ctx.args
    result = ctx.admin().delegation_remove(a.collection, a.role, ctx.save_path())
    _report_submit(result, f"removed the delegation to {a.role} in {a.collection}")
    return 0


def cmd_delegation_list(ctx: Context) -> int:
    rows = ctx.admin().delegation_list(ctx.args.collection)
    if not rows:
        _out(f"{ctx.args.collection} has no delegations")
    for d in rows:
        keys = ", ".join(k[:16] for k in d.keyids)
        if d.bins:
            _out(f"{d.role}-*  ({d.bins} hash bins) from {d.parent}: threshold {d.threshold} of "
                 f"[{keys}]")
            continue
        version = f"version {d.version}" if d.version is not None else "not published"
        _out(f"{d.role}  from {d.parent}: paths {', '.join(d.paths)}; threshold {d.threshold} of "
             f"[{keys}]{'; terminating' if d.terminating else ''}; {version}")
    return 0


def cmd_bump_expiry(ctx: Context) -> int:
    a = ctx.args
    result = ctx.admin().bump_expiry(a.collection, a.role, a.days, ctx.save_path())
    _report_submit(result, f"{a.role} of {a.collection} now expires in {a.days:g} days")
    return 0


def _consumer_with_root(ctx: Context) -> Consumer:
    consumer = ctx.consumer()
    if ctx.args.root is not None:
        consumer.pin_root(ctx.args.collection, Path(ctx.args.root))
    return consumer


def cmd_list(ctx: Context) -> int:
    c = ctx.args.collection
    owner = ctx.trust.is_owner(c)
    listing = _consumer_with_root(ctx).list_targets(c, lenient=owner)
    for role in listing.expired:
        _warn(
            f"{role} of {c} has EXPIRED: consumers refuse it, and this listing is shown only "
            f"because you own the collection. Repair: 'tufnotary bump-expiry {c} {role} --days 90'"
        )
    for path, info in sorted(listing.targets.items()):
        role = listing.roles.get(path, "targets")
        _out(f"{path}  {_target_summary(info.hashes, info.length)}"
             + (f"  [{role}]" if role != "targets" and not listing.bins else ""))
    for role, paths in sorted(listing.delegations.items()):
        _out(f"delegated role {role}: {', '.join(paths)}")
    if listing.bins:
        _out(f"hash bins: {listing.bins}")
    for role in listing.unpublished:
        _out(f"note: delegated role {role} has not published metadata yet")
    return 0


def cmd_lookup(ctx: Context) -> int:
    info = _consumer_with_root(ctx).lookup(ctx.args.collection, ctx.args.target,
                                           ctx.args.require_role or ())
    doc: dict[str, Any] = {"name": info.path, "length": info.length, "hashes": info.hashes}
    if info.custom is not None:
        doc["custom"] = info.custom
    _out(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def cmd_verify(ctx: Context) -> int:
    a = ctx.args
    if a.target is None and a.file is None:
        return cmd_verify_ref(ctx)
    if a.target is None or a.file is None or a.bundle or a.as_of or a.oci_collection:
        from tufnotary.client.errors import UsageError

        raise UsageError("give REF (an OCI reference, with --bundle/--as-of/--collection), or "
                         "COLLECTION TARGET FILE")
    info = _consumer_with_root(ctx).verify(a.collection, a.target, Path(a.file),
                                           a.require_role or ())
    _out(f"OK: {a.file} is {a.target} in {a.collection} ({_target_summary(info.hashes, info.length)})"
         + (f", signed by {', '.join(a.require_role)}" if a.require_role else ""))
    return 0


def _change_summary(record: dict[str, Any]) -> str:
    details = record.get("details") or {}
    if not isinstance(details, dict):
        return str(details)
    parts = []
    if details.get("roles"):
        parts.append(" ".join(f"{role} v{v}" for role, v in sorted(details["roles"].items())))
    if details.get("role"):
        parts.append(f"{details['role']} key {str(details.get('keyid', ''))[:16]}")
    for role, changes in sorted((details.get("targets") or {}).items()):
        for c in changes:
            digests = {k: str(c.get(k) or "")[:12] for k in ("old_sha256", "new_sha256")}
            arrow = {"added": f"+ {digests['new_sha256']}", "removed": f"- {digests['old_sha256']}",
                     "changed": f"{digests['old_sha256']} -> {digests['new_sha256']}"}.get(c.get("change"), "")
            parts.append(f"[{role}] {c.get('path')} {c.get('change')} {arrow}".rstrip())
    return "; ".join(parts)


def cmd_changefeed(ctx: Context) -> int:
    """Who changed what and when: the server's audit records of a collection (or of all)."""
    a = ctx.args
    page = ctx.server().changefeed(a.collection, since=a.since, limit=a.limit)
    if a.json:
        _out(json.dumps(page, indent=2, sort_keys=True))
        return 0
    for record in page["records"]:
        where = "" if a.collection else f" {record.get('collection')}"
        _out(f"{record.get('seq')} {record.get('time')} {record.get('action')}{where} by "
             f"{record.get('subject')} from {record.get('client') or '-'}: {_change_summary(record)}")
    if page.get("more"):
        _out(f"(more: --since {page.get('next')})")
    return 0


def cmd_delete(ctx: Context) -> int:
    from tufnotary.client.errors import UsageError

    if not ctx.args.yes:
        raise UsageError(f"deleting {ctx.args.collection} cannot be undone: add --yes to confirm")
    ctx.publisher().delete(ctx.args.collection)
    _out(f"deleted {ctx.args.collection}")
    return 0


# --- OCI references (docs/oci.md) ------------------------------------------------------------

TRUST_POLICY_ENV = "TUFNOTARY_TRUST_POLICY"
INSECURE_REGISTRIES_ENV = "TUFNOTARY_INSECURE_REGISTRIES"


def _oci(ctx: Context) -> Any:
    """The OCI workflows object (`oci.Oci`) for this command's options."""
    from tufnotary.client.http import HttpConfig, ServerClient
    from tufnotary.client.oci import Oci
    from tufnotary.client.policy import AlgorithmPolicy
    from tufnotary.client.publisher import Publisher
    from tufnotary.client.registry import RegistryClient
    from tufnotary.client.trustpolicy import POLICY_FILE, load_trust_policy

    from tufnotary.client.consumer import Consumer

    a = ctx.args
    ctx.args.detailed_status = True
    if a.trust_policy:
        policy = load_trust_policy(Path(a.trust_policy), required=True)
    else:
        policy = load_trust_policy(ctx.trust.root / POLICY_FILE)
    insecure = list(a.insecure_registry or [])
    insecure += [h for h in os.environ.get(INSECURE_REGISTRIES_ENV, "").split(",") if h.strip()]
    registry = RegistryClient(insecure=insecure, timeout=a.timeout)
    keys = ctx.keys()

    def consumer_for(server: str, deny: AlgorithmPolicy, fetcher: Any = None) -> Consumer:
        return Consumer(ctx.trust, server, socket_timeout=int(a.timeout), policy=deny, fetcher=fetcher)

    def publisher_for(server: str) -> Publisher:
        http = ServerClient(HttpConfig(server=server, read_timeout=a.timeout))
        consumer = consumer_for(server, ctx.config().policy, http.metadata_fetcher(int(a.timeout)))
        return Publisher(ctx.trust, keys, http, consumer)

    return Oci(ctx.trust, registry, policy, ctx.server_url, consumer_for, publisher_for,
               ctx.config().policy)


def _ref(text: str) -> Any:
    from tufnotary.client.reference import parse_reference

    return parse_reference(text)


def cmd_sign_ref(ctx: Context) -> int:
    a = ctx.args
    result = _oci(ctx).sign(_ref(a.ref), a.collection, a.role, a.index_children)
    m = result.manifest
    _out(f"signed {result.reference} = {m.digest} ({m.media_type}, {m.length} bytes) in "
         f"{result.collection} ({result.role} version {result.version})")
    for t in result.targets[1:]:
        _out(f"  and index child {t.path}")
    return 0


def cmd_verify_ref(ctx: Context) -> int:
    a = ctx.args
    oci = _oci(ctx)
    ref = _ref(a.collection)
    if a.root is not None:
        if a.oci_collection is None:
            from tufnotary.client.errors import UsageError

            raise UsageError("with REF, --root needs --collection (or pin the root in the trust "
                             "policy: 'root = FILE')")
        ctx.consumer().pin_root(a.oci_collection, Path(a.root))
    if a.bundle:
        from tufnotary.client.bundle import parse_time

        as_of = parse_time(a.as_of) if a.as_of else None
        result = oci.verify_bundle(ref, Path(a.bundle), a.oci_collection, a.require_role or (), as_of)
    else:
        if a.as_of:
            from tufnotary.client.errors import UsageError

            raise UsageError("--as-of judges a bundle's expiry at a past time: use it with --bundle")
        result = oci.verify(ref, a.oci_collection, a.require_role or ())
    roles = result.binding.require_roles
    print(f"tufnotary: {ref} is {result.target} in {result.binding.collection}"
          + (f", signed by {', '.join(roles)}" if roles else ""), file=sys.stderr)
    _out(result.pinned)
    return 0


def cmd_copy(ctx: Context) -> int:
    manifest, log = _oci(ctx).copy(_ref(ctx.args.src), _ref(ctx.args.dst))
    for line in log:
        _out(line)
    _out(f"copied {ctx.args.src} to {ctx.args.dst}: {manifest.digest}")
    return 0


def cmd_promote(ctx: Context) -> int:
    a = ctx.args
    result, log = _oci(ctx).promote(_ref(a.src), _ref(a.dst), a.role, a.collection,
                                    verify_source=not a.no_verify_source)
    for line in log:
        _out(line)
    _out(f"promoted {a.src} to {result.reference} = {result.manifest.digest}, signed by {result.role} "
         f"in {result.collection} (version {result.version})")
    return 0


def cmd_audit(ctx: Context) -> int:
    from tufnotary.client.errors import TagMovedError, TargetNotFoundError
    from tufnotary.client.reference import parse_repository

    repo = parse_repository(ctx.args.repository)
    binding, rows = _oci(ctx).audit(repo, ctx.args.collection)
    _out(f"{repo.name} against {binding.collection} on {binding.server}:")
    for r in rows:
        if r.status == "signed":
            _out(f"  {r.tag:<24} signed     {r.registry_digest}")
        elif r.status == "moved":
            _out(f"  {r.tag:<24} MOVED      registry {r.registry_digest} signed {r.signed_digest}")
        elif r.status == "unsigned":
            _out(f"  {r.tag:<24} UNSIGNED   {r.registry_digest}")
        else:
            _out(f"  {r.tag:<24} not in registry (signed {r.signed_digest})")
    moved = [r.tag for r in rows if r.status == "moved"]
    unsigned = [r.tag for r in rows if r.status == "unsigned"]
    if moved:
        raise TagMovedError(f"{len(moved)} tag(s) of {repo.name} name other content than signed: "
                            f"{', '.join(moved)}" + (f"; unsigned: {', '.join(unsigned)}" if unsigned else ""))
    if unsigned:
        raise TargetNotFoundError(f"{len(unsigned)} tag(s) of {repo.name} are not signed: {', '.join(unsigned)}")
    return 0


def cmd_history(ctx: Context) -> int:
    from tufnotary.client.history import audit_index, history, with_audit

    a = ctx.args
    consumer = _consumer_with_root(ctx)
    state = consumer.state(a.collection, lenient=ctx.trust.is_owner(a.collection))
    entries = history(state, a.target)
    if not entries:
        _out(f"{a.target or 'no target'} was never signed in {a.collection}")
        return 0
    index, why = audit_index(ctx.server(), a.collection)
    if index is None:
        _warn(f"who published each version, and when, is unavailable: {why}")
    else:
        entries = with_audit(entries, index)
    for e in entries:
        what = f"{e.digest} ({e.length} bytes)" if e.digest else "REMOVED"
        signers = ", ".join(k[:16] for k in e.signers) or "no trusted key"
        extra = f"; unverified signatures by {', '.join(k[:16] for k in e.unverified)}" if e.unverified else ""
        if e.recorded is not None:
            who = e.recorded.subject if e.recorded.authenticated else "anonymous (no authenticated subject)"
            when = f"recorded {e.recorded.time} by {who}"
        else:
            when = "recorded: subject unavailable" if index is None else "recorded: not in the audit log"
        if e.signed_at:
            when += f" (signedAt {e.signed_at})"
        _out(f"{e.target}  {e.role} v{e.version}  {what}  {when}  signed by {signers}{extra}"
             + ("" if e.meets_threshold else "  [BELOW THRESHOLD]"))
    return 0


def cmd_bundle_export(ctx: Context) -> int:
    from tufnotary.client.trustdir import write_file_atomic

    a = ctx.args
    bundle = _oci(ctx).export_bundle(a.collection)
    write_file_atomic(Path(a.output), bundle.to_bytes())
    _out(f"wrote {a.output}: {a.collection}, {len(bundle.files)} metadata files, root version "
         f"{len(bundle.roots())}")
    return 0


def _registry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-policy", metavar="FILE", default=os.environ.get(TRUST_POLICY_ENV),
                   help=f"registry trust policy (env {TRUST_POLICY_ENV}; default "
                        "<trust-dir>/trust-policy.toml)")
    p.add_argument("--insecure-registry", action="append", metavar="HOST[:PORT]",
                   help=f"allow plain HTTP to this registry (env {INSECURE_REGISTRIES_ENV}, "
                        "comma-separated); loopback registries always use plain HTTP")


def _verify_ref_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", dest="oci_collection", metavar="C",
                   help="with REF: the collection (default: trust policy)")
    p.add_argument("--bundle", metavar="FILE", help="with REF: metadata from this offline bundle")
    p.add_argument("--as-of", metavar="TIME", help="with --bundle: judge expiry at TIME (archival)")
    _registry_options(p)


def _add_oci_commands(sub: Any) -> None:
    p = sub.add_parser("copy", help="copy an OCI artifact (blobs, manifests) to another repository "
                       "or registry; digests unchanged")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    _registry_options(p)
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser("promote", help="verify SRC, copy it to DST and sign DST with a role")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--role", required=True, metavar="ROLE", help="e.g. targets/prod")
    p.add_argument("--collection", metavar="C", help="default: trust policy")
    p.add_argument("--no-verify-source", action="store_true",
                   help="copy and sign SRC without verifying it first")
    _registry_options(p)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("audit", help="every tag of a repository: signed, moved or unsigned")
    p.add_argument("repository", metavar="REGISTRY/REPO")
    p.add_argument("--collection", metavar="C", help="default: trust policy")
    _registry_options(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("history", help="every signed digest of a target, from stored metadata versions")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("target", metavar="TARGET", nargs="?")
    p.add_argument("--root", metavar="FILE", help="root.json to pin on first use")
    p.set_defaults(func=cmd_history)

    bundle = sub.add_parser("bundle", help="offline bundles for air-gapped verification")
    b_sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND")
    p = b_sub.add_parser("export", help="write COLLECTION's root chain and current metadata to FILE")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    _registry_options(p)
    p.set_defaults(func=cmd_bundle_export)


KEY_TYPE_CHOICES = ["ed25519", "ecdsa", "ecdsa-p256", "ecdsa-p384", "rsa"]


def _save_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--save", metavar="FILE",
        help="do not publish: write a signing request (signed with the local keys) for other "
             "key holders ('tufnotary sign --add-signature FILE', then 'publish --from FILE')",
    )


class _Unbuilt:
    """Stands in for the parser of a command this invocation does not run: accepts every
    building call and builds nothing (see `build_parser`)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_defaults(self, **kwargs: Any) -> None:
        pass

    def add_subparsers(self, **kwargs: Any) -> _Unbuilt:
        return self

    def add_parser(self, name: str, **kwargs: Any) -> _Unbuilt:
        return self


class _OnlyCommand:
    """The top-level subparsers action, building the parser of one command only."""

    def __init__(self, sub: Any, command: str) -> None:
        self._sub, self._command = sub, command
        self.built = False

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name != self._command:
            return _Unbuilt()
        self.built = True
        return self._sub.add_parser(name, **kwargs)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, sized to the terminal without importing shutil: argparse makes one per
    `add_argument` (to check it) and the first imports shutil, and with it zlib, bz2 and lzma, for
    `shutil.get_terminal_size` (~4% of an express publish's instructions). The width is found as that
    function finds it: $COLUMNS, else the terminal of stdout, else 80."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose parsers (and its subcommands' parsers) format help with `_HelpFormatter`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(**kwargs)


# Global options that take a value (`--server URL`); see `command_named_in`.
_GLOBAL_VALUE_OPTIONS = ("--server", "--trust-dir", "--config", "--timeout")


def command_named_in(argv: Sequence[str]) -> str | None:
    """The command word of `argv` (the first word after the global options), or None when
    `argv` holds anything else first (-h, an abbreviated or unknown option)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_VALUE_OPTIONS:
            skip = True
        elif word.startswith(tuple(f"{o}=" for o in _GLOBAL_VALUE_OPTIONS)):
            continue
        else:
            return None if word.startswith("-") else word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with `command`, only that command's parser below the global options.

    Building all ~40 command parsers costs about as much as a command's own work on the local
    side (~10 ms), so `main` builds just the one named on the command line, and every parser for
    `--help`, an unknown command or anything it cannot tell (then argparse says what is wrong)."""
    parser = _ArgumentParser(
        prog="tufnotary", description="Publish and verify TUF trust metadata for collections."
    )
    parser.add_argument(
        "--server",
        default=os.environ.get(SERVER_ENV, "http://127.0.0.1:4443"),
        help=f"metadata server URL (env {SERVER_ENV}; default %(default)s)",
    )
    parser.add_argument(
        "--trust-dir",
        default=os.environ.get(TRUST_DIR_ENV, str(Path("~/.tufnotary").expanduser())),
        help=f"trust directory (env {TRUST_DIR_ENV}; default %(default)s)",
    )
    parser.add_argument(
        "--config", metavar="FILE", default=os.environ.get(CONFIG_ENV),
        help=f"consumer configuration (env {CONFIG_ENV}; default <trust-dir>/config.toml)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    sub: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command is not None:
        sub = _OnlyCommand(sub, command)

    key = sub.add_parser("key", help="local signing keys, and the keys of a collection's roles")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="KEYCOMMAND")
    gen = key_sub.add_parser("generate", help="create a key; prints its key id")
    gen.add_argument("--type", choices=KEY_TYPE_CHOICES, default="ed25519")
    gen.add_argument("--bits", type=int, default=3072, help="RSA key size (>= 3072)")
    gen.set_defaults(func=cmd_key_generate)
    key_sub.add_parser("list", help="list local keys").set_defaults(func=cmd_key_list)
    p = key_sub.add_parser("export", help="print a local public key as TUF key JSON")
    p.add_argument("keyid", metavar="KEYID")
    p.set_defaults(func=cmd_key_export)

    key_ref = "a local key id, a TUF public key JSON file, or a PEM public key file"
    p = key_sub.add_parser("add", help="add keys to a role (e.g. for m-of-n or a new algorithm)")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("role", metavar="ROLE", help="root, targets, a delegated role, or 'bins'")
    p.add_argument("--key", action="append", required=True, metavar="KEY", help=key_ref)
    p.add_argument("--threshold", type=int, help="new signature threshold of the role")
    _save_option(p)
    p.set_defaults(func=cmd_key_add)

    p = key_sub.add_parser("remove", help="remove one key from one role")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("role", metavar="ROLE")
    p.add_argument("keyid", metavar="KEYID")
    p.add_argument("--threshold", type=int, help="new signature threshold of the role")
    _save_option(p)
    p.set_defaults(func=cmd_key_remove)

    p = key_sub.add_parser("rotate", help="replace a role's key (root: signed by old and new keys)")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("role", metavar="ROLE", help="root, targets, a delegated role, or 'bins'")
    p.add_argument("--key", metavar="KEY", help=f"the new key: {key_ref}")
    p.add_argument("--type", choices=KEY_TYPE_CHOICES, help="type of a new generated key")
    p.add_argument("--old", metavar="KEYID", help="the key to replace when the role has several "
                   "(e.g. a lost root key)")
    p.add_argument("--server-managed", action="store_true",
                   help="timestamp/snapshot: have the server make a new key and publish a root listing it")
    p.add_argument("--client-managed", action="store_true",
                   help="snapshot: sign it yourself from now on (with --key or a new key); back with --server-managed")
    _save_option(p)
    p.set_defaults(func=cmd_key_rotate)

    p = key_sub.add_parser("revoke", help="remove a leaked key from every role, re-sign, publish, "
                           "and list every target it signed")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("keyid", metavar="KEYID")
    p.add_argument("--replace-with", metavar="KEY",
                   help=f"key added where a threshold needs one ({key_ref}); default: a new key")
    p.add_argument("--keep-content", action="store_true",
                   help="keep targets only this key signed (it was retired, not leaked); default: "
                        "revert each to its last value a still-trusted key signed, or drop it")
    p.add_argument("--dry-run", action="store_true", help="show what revoke would change; publish nothing")
    p.add_argument("--since", type=int, metavar="VERSION",
                   help="role version from which the key is compromised; earlier versions it "
                        "signed stay trusted (default: all of them are undone)")
    _save_option(p)
    p.set_defaults(func=cmd_key_revoke)

    def collection_parser(name: str, help: str, parent: Any = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help)
        p.add_argument("collection", metavar="COLLECTION")
        return p

    p = collection_parser("init", "create a collection on the server and pin its root")
    p.add_argument("--root-key", metavar="KEY", help="existing key for root")
    p.add_argument("--targets-key", metavar="KEY", help="existing key for targets")
    p.add_argument("--type", choices=KEY_TYPE_CHOICES, default="ed25519",
                   help="type of keys created by init (default %(default)s)")
    p.add_argument("--bins", type=int, default=0, metavar="N",
                   help="delegate all targets to N hash bins (TAP 15), a power of two")
    p.add_argument("--root-expiry-days", type=float, metavar="DAYS", help="default 365")
    p.add_argument("--targets-expiry-days", type=float, metavar="DAYS",
                   help="targets and delegated roles; default 90")
    p.set_defaults(func=cmd_init)

    p = collection_parser("add", "stage a target (a file, or a digest and length)")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("file", metavar="FILE", nargs="?")
    p.add_argument("--digest", metavar="ALGO:HEX", help="e.g. sha256:<hex> of an OCI manifest")
    p.add_argument("--length", type=int, metavar="N", help="length in bytes (with --digest)")
    p.add_argument("--custom", metavar="JSON", help="custom data stored with the target")
    p.add_argument("--role", metavar="ROLE", help="stage for this delegated role")
    p.set_defaults(func=cmd_add)

    p = collection_parser("remove", "stage the removal of a target")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--role", metavar="ROLE", help="stage for this delegated role")
    p.set_defaults(func=cmd_remove)

    p = collection_parser("status", "staged changes; each role's version, expiry and signers")
    p.add_argument("--warn-days", type=float, metavar="DAYS",
                   help="warn about roles expiring within DAYS (default: config, else 30)")
    p.add_argument("--all-bins", action="store_true", help="one line per hash bin")
    p.set_defaults(func=cmd_status)

    p = collection_parser("publish", "sign and upload staged changes (or a signing request)")
    p.add_argument("--role", metavar="ROLE", help="publish the changes staged for this role")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="upload a signing request whose thresholds are met")
    _save_option(p)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("sign", help="sign an OCI reference (REF), or a threshold signing ceremony")
    p.add_argument("ref", metavar="REF", nargs="?",
                   help="REGISTRY/REPOSITORY:TAG: resolve it, stage tag -> digest and publish")
    p.add_argument("--collection", metavar="C", help="with REF: the collection (default: trust policy)")
    p.add_argument("--role", metavar="ROLE", help="with REF: sign with this delegated role")
    p.add_argument("--index-children", action="store_true",
                   help="with REF naming an index: also sign every manifest it references")
    _registry_options(p)
    p.add_argument("--prepare", nargs=2, metavar=("COLLECTION", "ROLE"),
                   help="print a signing request for the changes staged for ROLE")
    p.add_argument("--out", metavar="FILE", help="with --prepare: write to FILE, not stdout")
    p.add_argument("--add-signature", metavar="FILE",
                   help="sign FILE in place with every qualifying local key")
    p.add_argument("--key", action="append", metavar="KEYID",
                   help="with --add-signature: sign only with these local keys")
    p.set_defaults(func=cmd_sign)

    delegation = sub.add_parser("delegation", help="delegate target paths to other signers")
    d_sub = delegation.add_subparsers(dest="delegation_command", required=True, metavar="SUBCOMMAND")
    p = collection_parser("add", "delegate paths to a new role", d_sub)
    p.add_argument("role", metavar="ROLE")
    p.add_argument("--key", action="append", required=True, metavar="KEY", help=key_ref)
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument("--paths", nargs="+", required=True, metavar="GLOB")
    p.add_argument("--terminating", action="store_true",
                   help="clients stop searching other roles for these paths")
    p.add_argument("--parent", default="targets", metavar="ROLE", help="delegating role")
    _save_option(p)
    p.set_defaults(func=cmd_delegation_add)
    p = collection_parser("remove", "remove a delegation", d_sub)
    p.add_argument("role", metavar="ROLE")
    _save_option(p)
    p.set_defaults(func=cmd_delegation_remove)
    collection_parser("list", "list delegations", d_sub).set_defaults(func=cmd_delegation_list)

    p = collection_parser("bump-expiry", "renew a role's expiry, re-sign and publish")
    p.add_argument("role", metavar="ROLE", help="root, targets, a delegated role, or 'bins'")
    p.add_argument("--days", type=float, required=True)
    _save_option(p)
    p.set_defaults(func=cmd_bump_expiry)

    for name, help, func in (
        ("list", "list trusted targets", cmd_list),
        ("lookup", "show the trusted info of a target", cmd_lookup),
        ("verify", "check a local file against the trusted target", cmd_verify),
    ):
        if name == "verify":
            p = sub.add_parser(name, help="check an OCI reference (REF) against its signed digest, "
                               "or a local file against a trusted target")
            p.add_argument("collection", metavar="REF|COLLECTION")
        else:
            p = collection_parser(name, help)
        if name == "lookup":
            p.add_argument("target", metavar="TARGET")
        if name == "verify":
            p.add_argument("target", metavar="TARGET", nargs="?")
            p.add_argument("file", metavar="FILE", nargs="?")
            _verify_ref_options(p)
        if name != "list":
            p.add_argument("--require-role", action="append", metavar="ROLE",
                           help="this role must sign the same target and hashes too")
        p.add_argument("--root", metavar="FILE", help="root.json to pin on first use")
        p.set_defaults(func=func)

    _add_oci_commands(sub)

    p = collection_parser("delete", "delete a collection on the server and locally")
    p.add_argument("--yes", action="store_true", help="confirm the deletion")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("changefeed", help="the server's audit records: who published, rotated or deleted "
                       "what, when, from where (every collection without COLLECTION: needs catalog access)")
    p.add_argument("collection", metavar="COLLECTION", nargs="?")
    p.add_argument("--since", type=int, default=0, metavar="SEQ", help="records after this one")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N records (<= 1000)")
    p.add_argument("--json", action="store_true", help="the server's JSON page")
    p.set_defaults(func=cmd_changefeed)
    if isinstance(sub, _OnlyCommand) and not sub.built:
        return build_parser()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(command_named_in(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    try:
        return int(args.func(Context(args)))
    except ClientError as e:
        message = " ".join(e.message.split())
        print(f"tufnotary: error: {message}", file=sys.stderr)
        if getattr(args, "detailed_status", False):
            from tufnotary.client.errors import detailed_exit_status

            return detailed_exit_status(e)
        return e.exit_status
    except OSError as e:
        print(f"tufnotary: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tufnotary: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The `tufnotary` console script: `main()` in a process that runs one command and exits.

    Such a process need not collect cyclic garbage every 700 allocations (start-up imports alone
    make hundreds of thousands), nor free every object at exit: together ~10% of a small publish.
    Garbage cycles are still collected, every 100,000 allocations.
    """
    gc.set_threshold(100_000, 50, 1000)
    exit_now(main())


def exit_now(status: int) -> NoReturn:
    """Exit with `status` as `sys.exit` does (atexit handlers run, output flushed) but without
    tearing the interpreter down. While another non-daemon thread runs, under a profiler or
    debugger (which report at exit), or when the output cannot be flushed (a closed pipe), it
    leaves the exit to `sys.exit`."""
    threading = sys.modules.get("threading")
    if threading is not None and any(
        t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()
    ):
        sys.exit(status)
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)
    atexit._run_exitfuncs()  # e.g. logging's flush; they run once: the call clears them
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(status)
    os._exit(status)


if __name__ == "__main__":
    run()

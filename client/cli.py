"""The `tufnotary` command line: the only module that parses arguments, prompts, prints or exits.

Heavy modules (python-tuf, cryptography, urllib3) are imported inside the command functions
so that `tufnotary --help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tufnotary.client.errors import ClientError, PassphraseError

if TYPE_CHECKING:
    from tufnotary.client.consumer import Consumer
    from tufnotary.client.keys import KeyStore
    from tufnotary.client.publisher import Publisher
    from tufnotary.client.trustdir import TrustDir

PASSPHRASE_ENV = "TUFNOTARY_PASSPHRASE"
TRUST_DIR_ENV = "TUFNOTARY_TRUST_DIR"
SERVER_ENV = "TUFNOTARY_SERVER"


class TerminalPassphrases:
    """Passphrases from $TUFNOTARY_PASSPHRASE, else asked on the terminal (twice for new keys).

    Within one command a passphrase is asked once per key, and once for all new keys.
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
        env = os.environ.get(PASSPHRASE_ENV)
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

    def keys(self) -> KeyStore:
        from tufnotary.client.keys import KeyStore

        return KeyStore(self.trust, TerminalPassphrases())

    def consumer(self) -> Consumer:
        from tufnotary.client.consumer import Consumer

        return Consumer(self.trust, self.server_url, socket_timeout=int(self.args.timeout))

    def publisher(self) -> Publisher:
        from tufnotary.client.http import HttpConfig, ServerClient
        from tufnotary.client.publisher import Publisher

        server = ServerClient(HttpConfig(server=self.server_url, read_timeout=self.args.timeout))
        return Publisher(self.trust, self.keys(), server, self.consumer())


def _out(line: str) -> None:
    print(line)


def _target_summary(hashes: dict[str, str], length: int) -> str:
    algo = "sha256" if "sha256" in hashes else sorted(hashes)[0]
    return f"{length} bytes, {algo}:{hashes[algo]}"


def cmd_key_generate(ctx: Context) -> int:
    key = ctx.keys().generate(ctx.args.type)
    _out(key.keyid)
    return 0


def cmd_key_list(ctx: Context) -> int:
    for info in ctx.keys().list():
        _out(f"{info.keyid}  {info.keytype}  {info.scheme}")
    return 0


def cmd_init(ctx: Context) -> int:
    result = ctx.publisher().init(
        ctx.args.collection, ctx.args.root_key, ctx.args.targets_key, ctx.args.type
    )
    _out(
        f"initialised {result.collection}: root key {result.root_keyid}, "
        f"targets key {result.targets_keyid}"
    )
    return 0


def cmd_add(ctx: Context) -> int:
    from tufnotary.client.errors import UsageError
    from tufnotary.client.publisher import parse_custom, target_from_digest, target_from_file

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
    ctx.publisher().stage_add(a.collection, info)
    _out(f"staged add {info.path} ({_target_summary(info.hashes, info.length)})")
    return 0


def cmd_remove(ctx: Context) -> int:
    ctx.publisher().stage_remove(ctx.args.collection, ctx.args.target)
    _out(f"staged remove {ctx.args.target}")
    return 0


def cmd_status(ctx: Context) -> int:
    staged = ctx.publisher().staged(ctx.args.collection)
    if not staged.changes:
        _out(f"no staged changes for {ctx.args.collection}")
    for path, change in sorted(staged.changes.items()):
        if change is None:
            _out(f"remove {path}")
        else:
            _out(f"add    {path} ({_target_summary(change['hashes'], change['length'])})")
    return 0


def cmd_publish(ctx: Context) -> int:
    result = ctx.publisher().publish(ctx.args.collection)
    _out(
        f"published {result.collection}: targets version {result.targets_version} "
        f"({len(result.added)} added, {len(result.removed)} removed)"
    )
    for path in result.not_present:
        _out(f"note: {path} was staged for removal but was not signed")
    return 0


def _consumer_with_root(ctx: Context) -> Consumer:
    consumer = ctx.consumer()
    if ctx.args.root is not None:
        consumer.pin_root(ctx.args.collection, Path(ctx.args.root))
    return consumer


def cmd_list(ctx: Context) -> int:
    listing = _consumer_with_root(ctx).list_targets(ctx.args.collection)
    for path, info in sorted(listing.targets.items()):
        _out(f"{path}  {_target_summary(info.hashes, info.length)}")
    for role, paths in sorted(listing.delegations.items()):
        _out(f"delegated role {role}: {', '.join(paths)}")
    return 0


def cmd_lookup(ctx: Context) -> int:
    info = _consumer_with_root(ctx).lookup(ctx.args.collection, ctx.args.target)
    doc: dict[str, Any] = {"name": info.path, "length": info.length, "hashes": info.hashes}
    if info.custom is not None:
        doc["custom"] = info.custom
    _out(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def cmd_verify(ctx: Context) -> int:
    a = ctx.args
    info = _consumer_with_root(ctx).verify(a.collection, a.target, Path(a.file))
    _out(f"OK: {a.file} is {a.target} in {a.collection} ({_target_summary(info.hashes, info.length)})")
    return 0


def cmd_delete(ctx: Context) -> int:
    from tufnotary.client.errors import UsageError

    if not ctx.args.yes:
        raise UsageError(f"deleting {ctx.args.collection} cannot be undone: add --yes to confirm")
    ctx.publisher().delete(ctx.args.collection)
    _out(f"deleted {ctx.args.collection}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    key = sub.add_parser("key", help="manage local signing keys")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="KEYCOMMAND")
    gen = key_sub.add_parser("generate", help="create a key; prints its key id")
    gen.add_argument("--type", choices=["ed25519", "ecdsa", "rsa"], default="ed25519")
    gen.set_defaults(func=cmd_key_generate)
    key_sub.add_parser("list", help="list local keys").set_defaults(func=cmd_key_list)

    def collection_parser(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("collection", metavar="COLLECTION")
        return p

    p = collection_parser("init", "create a collection on the server and pin its root")
    p.add_argument("--root-key", metavar="KEYID", help="existing local key for root")
    p.add_argument("--targets-key", metavar="KEYID", help="existing local key for targets")
    p.add_argument("--type", choices=["ed25519", "ecdsa", "rsa"], default="ed25519",
                   help="type of keys created by init (default %(default)s)")
    p.set_defaults(func=cmd_init)

    p = collection_parser("add", "stage a target (a file, or a digest and length)")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("file", metavar="FILE", nargs="?")
    p.add_argument("--digest", metavar="ALGO:HEX", help="e.g. sha256:<hex> of an OCI manifest")
    p.add_argument("--length", type=int, metavar="N", help="length in bytes (with --digest)")
    p.add_argument("--custom", metavar="JSON", help="custom data stored with the target")
    p.set_defaults(func=cmd_add)

    p = collection_parser("remove", "stage the removal of a target")
    p.add_argument("target", metavar="TARGET")
    p.set_defaults(func=cmd_remove)

    collection_parser("status", "show staged changes").set_defaults(func=cmd_status)
    collection_parser("publish", "sign and upload staged changes").set_defaults(func=cmd_publish)

    for name, help, func in (
        ("list", "list trusted targets", cmd_list),
        ("lookup", "show the trusted info of a target", cmd_lookup),
        ("verify", "check a local file against the trusted target", cmd_verify),
    ):
        p = collection_parser(name, help)
        if name != "list":
            p.add_argument("target", metavar="TARGET")
        if name == "verify":
            p.add_argument("file", metavar="FILE")
        p.add_argument("--root", metavar="FILE", help="root.json to pin on first use")
        p.set_defaults(func=func)

    p = collection_parser("delete", "delete a collection on the server and locally")
    p.add_argument("--yes", action="store_true", help="confirm the deletion")
    p.set_defaults(func=cmd_delete)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(Context(args)))
    except ClientError as e:
        message = " ".join(e.message.split())
        print(f"tufnotary: error: {message}", file=sys.stderr)
        return e.exit_status
    except OSError as e:
        print(f"tufnotary: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tufnotary: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

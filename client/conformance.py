"""`tufnotary-conformance`: the tuf-conformance client-under-test CLI on top of python-tuf's ngclient.

Protocol (theupdateframework/tuf-conformance, CLIENT-CLI.md): options come before the command;
`--metadata-dir D init ROOT`, `--metadata-dir D --metadata-url U refresh`,
`... --target-name P [--target-name P2 ...] --target-base-url TU --target-dir T download`.
Exit 0 on success, 1 on any failure. Metadata lives in D under unversioned names, byte for byte
as received. The time is the C library's (datetime.now), so the suite can run this under faketime.
This module is an entry point: like `cli.py`, it prints and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def _materialize_root(metadata_dir: Path) -> None:
    """ngclient keeps root.json as a symlink into root_history/; the protocol wants the file itself."""
    root = metadata_dir / "root.json"
    if root.is_symlink():
        data = root.read_bytes()
        tmp = metadata_dir / ".root.json.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, root)


def _updater(args: argparse.Namespace, with_targets: bool = False):
    from tuf.ngclient import Updater, UpdaterConfig

    if not args.metadata_url:
        raise ValueError("--metadata-url is required")
    return Updater(
        str(args.metadata_dir),
        args.metadata_url,
        str(args.target_dir) if with_targets else None,
        args.target_base_url if with_targets else None,
        config=UpdaterConfig(prefix_targets_with_hash=False),
        bootstrap=None,  # trust what `init` (or a previous refresh) stored in the metadata dir
    )


def init(args: argparse.Namespace) -> None:
    args.metadata_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.trusted_root, args.metadata_dir / "root.json")


def refresh(args: argparse.Namespace) -> None:
    updater = _updater(args)
    try:
        updater.refresh()
    finally:
        _materialize_root(args.metadata_dir)


def download(args: argparse.Namespace) -> None:
    if not args.target_name or not args.target_dir or not args.target_base_url:
        raise ValueError("download needs --target-name, --target-dir and --target-base-url")
    args.target_dir.mkdir(parents=True, exist_ok=True)
    updater = _updater(args, with_targets=True)
    try:
        updater.refresh()
        for name in args.target_name:
            info = updater.get_targetinfo(name)
            if info is None:
                raise LookupError(f"target {name!r} is not in the trusted metadata")
            if updater.find_cached_target(info) is None:
                updater.download_target(info)
    finally:
        _materialize_root(args.metadata_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tufnotary-conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--metadata-dir", type=Path, required=True)
    parser.add_argument("--metadata-url")
    parser.add_argument("--target-name", action="append")
    parser.add_argument("--target-dir", type=Path)
    parser.add_argument("--target-base-url")
    sub = parser.add_subparsers(dest="command", required=True)
    init_cmd = sub.add_parser("init", help="store the initial trusted root (no network)")
    init_cmd.add_argument("trusted_root", type=Path)
    init_cmd.set_defaults(func=init)
    sub.add_parser("refresh", help="update top-level metadata").set_defaults(func=refresh)
    sub.add_parser("download", help="download and verify targets").set_defaults(func=download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Exception as e:  # the protocol has one failure status; say why on one line
        print(f"tufnotary-conformance: {args.command} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

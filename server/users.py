"""The users file of the server's own token issuer: bcrypt password hashes and the access each
user may be granted.

    # tufnotary-server users file
    [users.alice]
    password_bcrypt = "$2b$12$..."
    access = ["repository:wabbit-networks/*:pull,push", "registry:catalog:*"]

The file is re-read when it changes, so `tufnotary-server user add` needs no restart.
Nothing here logs or returns a password or a hash.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tufnotary.server.tokens import Grant

# Checked when the user is unknown, so that the answer takes as long as for a known user.
_DUMMY_HASH = bcrypt.hashpw(b"tufnotary dummy password", bcrypt.gensalt(12))
_USER_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


@dataclass(frozen=True)
class User:
    name: str
    password_bcrypt: bytes
    access: tuple[Grant, ...]

    def __repr__(self) -> str:  # never show the hash
        return f"User({self.name!r}, access={[g.scope() for g in self.access]})"


def check_user_name(name: str) -> str:
    if not name or len(name) > 128 or not set(name) <= _USER_NAME_CHARS:
        raise ValueError(f"invalid user name {name[:64]!r}: use letters, digits, '.', '_', '@' and '-'")
    return name


def parse_users(text: str, where: str = "users file") -> dict[str, User]:
    try:
        data = tomllib.loads(text)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    users = {}
    for name, entry in (data.get("users") or {}).items():
        check_user_name(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("password_bcrypt"), str):
            raise ValueError(f"{where}: user {name} needs password_bcrypt")
        hashed = entry["password_bcrypt"].encode()
        if not hashed.startswith((b"$2a$", b"$2b$", b"$2y$")):
            raise ValueError(f"{where}: user {name}: password_bcrypt is not a bcrypt hash")
        access = entry.get("access", [])
        if not isinstance(access, list):
            raise ValueError(f"{where}: user {name}: access must be a list of scopes")
        try:
            grants = tuple(Grant.parse(str(scope)) for scope in access)
        except ValueError as e:
            raise ValueError(f"{where}: user {name}: {e}") from e
        users[name] = User(name, hashed, grants)
    return users


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_users(users: Iterable[User]) -> str:
    lines = ["# tufnotary-server users: bcrypt password hashes and the scopes each user may be granted", ""]
    for user in sorted(users, key=lambda u: u.name):
        lines += [f"[users.{_toml_string(user.name)}]",
                  f"password_bcrypt = {_toml_string(user.password_bcrypt.decode())}",
                  "access = [" + ", ".join(_toml_string(g.scope()) for g in user.access) + "]", ""]
    return "\n".join(lines)


def hash_password(password: str, rounds: int = 12) -> bytes:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds))


def write_user(path: Path, name: str, password: str, access: Sequence[str], rounds: int = 12) -> None:
    """Add or replace `name` in the users file at `path` (created 0600 if missing)."""
    check_user_name(name)
    grants = tuple(Grant.parse(scope) for scope in access)
    users = parse_users(path.read_text(), str(path)) if path.exists() else {}
    users[name] = User(name, hash_password(password, rounds), grants)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_users(users.values()))
    os.replace(tmp, path)


def remove_user(path: Path, name: str) -> bool:
    users = parse_users(path.read_text(), str(path))
    if users.pop(name, None) is None:
        return False
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_users(users.values()))
    os.replace(tmp, path)
    return True


class UsersFile:
    """The users of a file, re-read whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self._load()

    def _load(self) -> dict[str, User]:
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._users = parse_users(self.path.read_text(), str(self.path))
                self._stamp = stamp
            return self._users

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs, else None (in about the same time either way)."""
        user = self._load().get(name)
        hashed = user.password_bcrypt if user else _DUMMY_HASH
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            ok = False
        return user if ok and user is not None else None

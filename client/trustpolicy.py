"""The trust policy: which server, collection, root, roles and algorithms a registry scope trusts.

`<trust-dir>/trust-policy.toml` (or `--trust-policy FILE`, env `TUFNOTARY_TRUST_POLICY`):

    [[scope]]
    registry = "registry.example.com/networking/*"   # host/path/* (or an exact host/repo, or "*")
    server = "https://notary.example.com"            # default: the global --server
    collection = "wabbit-networks/{path}"            # naming rule; default "{repository}"
    root = "roots/wabbit-networks.root.json"         # pinned root file (relative to this file)
    # root-sha256 = "<hex>"                          # ... or the SHA-256 of a root file the server serves
    require-roles = ["targets/prod"]                 # each must sign the same digest
    deny-algorithms = ["rsa<3072"]                   # on top of config.toml's
    # trust-on-first-use = true                      # pin whatever root the server serves first (not advised)

The most specific matching scope wins (an exact repository over `path/*`, a longer prefix over a
shorter one, `*` last). Collection rules may use `{repository}` (the repository path without the
host), `{name}` (its last component) and `{path}` (the part under the scope's `*`), so that
collections are named independently of the registry host: the same collection can back
`dev.example.com/team/web` and `prod.example.com/web`. This module only reads the file it is given.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tufnotary.client.errors import UsageError
from tufnotary.client.names import check_collection
from tufnotary.client.policy import AlgorithmPolicy
from tufnotary.client.reference import Reference

POLICY_ENV = "TUFNOTARY_TRUST_POLICY"
POLICY_FILE = "trust-policy.toml"
_KEYS = {"registry", "server", "collection", "root", "root-sha256", "require-roles",
         "deny-algorithms", "trust-on-first-use"}
_PLACEHOLDER_RE = re.compile(r"\{(repository|name|path)\}")


@dataclass(frozen=True)
class Scope:
    pattern: str
    where: str  # "FILE, scope N" for messages
    server: str | None = None
    collection: str = "{repository}"
    root: Path | None = None
    root_sha256: str | None = None
    require_roles: tuple[str, ...] = ()
    deny: AlgorithmPolicy = field(default_factory=AlgorithmPolicy)
    trust_on_first_use: bool = False

    def specificity(self, ref: Reference) -> int | None:
        """How specifically this scope matches `ref` (None: no match)."""
        name = ref.name
        if self.pattern == "*":
            return 0
        if self.pattern.endswith("/*"):
            prefix = self.pattern[:-1]
            return len(prefix) if name.startswith(prefix) else None
        return 10_000 if name == self.pattern else None

    def collection_for(self, ref: Reference) -> str:
        if self.pattern.endswith("/*"):
            prefix = self.pattern[:-1]
            path = ref.name[len(prefix):]
        elif self.pattern == "*":
            path = ref.repository
        else:
            path = ref.repository.rsplit("/", 1)[-1]
        values = {"repository": ref.repository, "name": ref.repository.rsplit("/", 1)[-1], "path": path}
        name = _PLACEHOLDER_RE.sub(lambda m: values[m[1]], self.collection)
        try:
            return check_collection(name)
        except UsageError as e:
            raise UsageError(f"{self.where}: collection rule {self.collection!r} gives {name!r} for "
                             f"{ref.name}: {e.message}") from e


@dataclass(frozen=True)
class TrustPolicy:
    scopes: tuple[Scope, ...] = ()
    path: Path | None = None

    def match(self, ref: Reference) -> Scope | None:
        best: tuple[int, Scope] | None = None
        for scope in self.scopes:
            s = scope.specificity(ref)
            if s is not None and (best is None or s > best[0]):
                best = (s, scope)
        return best[1] if best else None


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _scope(d: Any, where: str, base: Path) -> Scope:
    if not isinstance(d, dict):
        raise UsageError(f"{where}: a [[scope]] must be a table")
    unknown = set(d) - _KEYS
    if unknown:
        raise UsageError(f"{where}: unknown settings {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(_KEYS))}")
    pattern = d.get("registry")
    if not isinstance(pattern, str) or not pattern or (
        "*" in pattern and pattern != "*" and not pattern.endswith("/*")
    ) or pattern.count("*") > 1:
        raise UsageError(f"{where}: registry must be 'HOST/PATH/*', 'HOST/REPOSITORY' or '*'")
    for key in ("server", "collection", "root", "root-sha256"):
        if key in d and not isinstance(d[key], str):
            raise UsageError(f"{where}: {key} must be a string")
    sha = d.get("root-sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha.lower()):
        raise UsageError(f"{where}: root-sha256 must be 64 hex digits")
    if "root" in d and sha is not None:
        raise UsageError(f"{where}: give root or root-sha256, not both")
    tofu = d.get("trust-on-first-use", False)
    if not isinstance(tofu, bool):
        raise UsageError(f"{where}: trust-on-first-use must be true or false")
    collection = d.get("collection", "{repository}")
    if re.sub(_PLACEHOLDER_RE, "x", collection).count("{"):
        raise UsageError(f"{where}: collection may use only {{repository}}, {{name}} and {{path}}")
    return Scope(
        pattern=pattern.lower(),
        where=where,
        server=d.get("server"),
        collection=collection,
        root=(base / d["root"]).resolve() if "root" in d else None,
        root_sha256=sha.lower() if sha else None,
        require_roles=_strings(d.get("require-roles", []), "require-roles", where),
        deny=AlgorithmPolicy.parse(list(_strings(d.get("deny-algorithms", []), "deny-algorithms",
                                                 where)), where),
        trust_on_first_use=tofu,
    )


def load_trust_policy(path: Path, required: bool = False) -> TrustPolicy:
    """Read `path`; a missing file is an empty policy unless `required`."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise UsageError(f"trust policy file {path} does not exist") from None
        return TrustPolicy((), path)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read trust policy file {path}: {e}") from e
    unknown = set(data) - {"scope"}
    if unknown:
        raise UsageError(f"{path}: unknown settings {', '.join(sorted(unknown))}; use [[scope]] tables")
    scopes = data.get("scope", [])
    if not isinstance(scopes, list):
        raise UsageError(f"{path}: scope must be an array of tables ([[scope]])")
    return TrustPolicy(
        tuple(_scope(d, f"{path}, scope {i + 1}", path.parent) for i, d in enumerate(scopes)), path
    )

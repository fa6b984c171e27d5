"""Drafts of a publish, and the signing-request file that carries one between key holders.

A `Draft` is the set of roles one atomic publish will upload, each with the signature
requirements it must meet (a root needs a threshold of the previous root's keys *and* of its
own; any other role a threshold of its delegator's keys). Publishing commands build a draft,
sign it with whatever local keys qualify, and upload it only when every requirement is met.
Otherwise the draft is written as a signing request that other holders sign offline:

    {
      "tufnotary-signing-request": 1,
      "collection": "wabbit-networks/net-monitor",
      "summary": "rotate the targets key",
      "clear_staged": [null, "targets/prod"],     # staged changes to drop once published
      "roles": {
        "root": {
          "metadata": {"signed": {...}, "signatures": [...]},   # standard TUF metadata
          "requirements": [
            {"by": "root version 1", "threshold": 1, "keys": {"<keyid>": {<TUF key>}}},
            {"by": "the new root (version 2)", "threshold": 1, "keys": {...}}
          ]
        },
        "targets": {...}
      }
    }

No secret is in it: only public keys and signatures. Signatures are counted with python-tuf's
`get_verification_result`, distinct keys only (as the server counts them).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from securesystemslib.signer import Key, Signer, SSlibKey
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Targets

from tufnotary.client.errors import ClientError, UsageError

FORMAT_VERSION = 1
_SIGNER_SET = "signer-set"


class LocalSigners(Protocol):
    def has_private(self, keyid: str) -> bool: ...

    def signer(self, keyid: str) -> Signer: ...


@dataclass
class Requirement:
    """`threshold` distinct keys of `keys` must sign; `by` says who requires it."""

    by: str
    threshold: int
    keys: dict[str, Key]

    def result(self, md: Metadata[Any], signed_bytes: bytes) -> tuple[set[str], set[str]]:
        """(key ids with a valid signature, key ids without) over `md`, whose canonical signed
        bytes the caller passes: encoding them is the costly part for a role of many targets,
        so a draft encodes each role once per pass, not once per requirement and signature."""
        role = DelegatedRole(_SIGNER_SET, list(self.keys), self.threshold, False, paths=[])
        delegator = Targets(delegations=Delegations(dict(self.keys), {_SIGNER_SET: role}))
        result = delegator.get_verification_result(_SIGNER_SET, signed_bytes, md.signatures)
        return set(result.signed), set(result.unsigned)

    def distinct(self, signed: set[str]) -> int:
        """How many distinct keys (by key material, as the server counts them) `signed` holds."""
        return len({json.dumps([self.keys[k].keytype, self.keys[k].scheme, self.keys[k].keyval],
                               sort_keys=True) for k in signed})

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "threshold": self.threshold,
            "keys": {keyid: key.to_dict() for keyid, key in self.keys.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Requirement:
        return cls(
            str(d["by"]),
            int(d["threshold"]),
            {k: SSlibKey.from_dict(k, dict(v)) for k, v in d["keys"].items()},
        )


@dataclass
class Missing:
    role: str
    by: str
    have: int
    threshold: int
    unsigned: list[str]

    def describe(self) -> str:
        return (
            f"{self.role}: {self.have} of {self.threshold} signature(s) required by {self.by}; "
            f"missing {self.threshold - self.have} from key(s) {', '.join(self.unsigned)}"
        )


@dataclass
class DraftRole:
    metadata: Metadata[Any]
    requirements: list[Requirement]


@dataclass
class Draft:
    collection: str
    summary: str
    roles: dict[str, DraftRole] = field(default_factory=dict)
    clear_staged: list[str | None] = field(default_factory=list)
    # A server snapshot key the new root lists that the server does not serve as current yet
    # (a rotation in progress): with it, the server still signs snapshot.
    server_snapshot_key: str | None = None

    def add(self, role: str, md: Metadata[Any], requirements: Iterable[Requirement]) -> None:
        md.signatures.clear()
        self.roles[role] = DraftRole(md, list(requirements))

    def sign_with(self, keys: LocalSigners, only: set[str] | None = None) -> list[str]:
        """Add a signature of every local key some requirement lists; return the key ids used."""
        used: list[str] = []
        signers: dict[str, Signer] = {}
        for draft_role in self.roles.values():
            md = draft_role.metadata
            data = md.signed_bytes  # once per role: every signature is over these bytes
            wanted: dict[str, None] = {}
            for req in draft_role.requirements:
                signed, unsigned = req.result(md, data)
                wanted.update(dict.fromkeys(k for k in sorted(unsigned) if k not in signed))
            for keyid in wanted:
                if (only is not None and keyid not in only) or not keys.has_private(keyid):
                    continue
                if keyid not in signers:
                    signers[keyid] = keys.signer(keyid)
                signature = signers[keyid].sign(data)  # what Metadata.sign(append=True) does
                md.signatures[signature.keyid] = signature
                if keyid not in used:
                    used.append(keyid)
        return used

    def missing(self) -> list[Missing]:
        out = []
        for role, draft_role in self.roles.items():
            data = draft_role.metadata.signed_bytes
            for req in draft_role.requirements:
                signed, unsigned = req.result(draft_role.metadata, data)
                have = req.distinct(signed)
                if have < req.threshold:
                    out.append(Missing(role, req.by, have, req.threshold, sorted(unsigned)))
        return out

    def uploads(self) -> dict[str, bytes]:
        return {role: r.metadata.to_bytes() for role, r in self.roles.items()}

    def to_json(self) -> str:
        doc = {
            "tufnotary-signing-request": FORMAT_VERSION,
            "collection": self.collection,
            "summary": self.summary,
            "clear_staged": self.clear_staged,
            "roles": {
                role: {
                    "metadata": r.metadata.to_dict(),
                    "requirements": [req.to_dict() for req in r.requirements],
                }
                for role, r in self.roles.items()
            },
        }
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "signing request") -> Draft:
        try:
            doc = json.loads(text)
            if doc.get("tufnotary-signing-request") != FORMAT_VERSION:
                raise UsageError(
                    f"{source} is not a tufnotary signing request (version {FORMAT_VERSION})"
                )
            draft = cls(str(doc["collection"]), str(doc.get("summary", "")))
            draft.clear_staged = list(doc.get("clear_staged", []))
            for role, r in doc["roles"].items():
                md = Metadata.from_dict(copy.deepcopy(r["metadata"]))
                reqs = [Requirement.from_dict(req) for req in r["requirements"]]
                draft.roles[role] = DraftRole(md, reqs)
        except ClientError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UsageError(f"{source} is not a valid tufnotary signing request: {e}") from e
        return draft

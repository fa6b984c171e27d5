"""Consumer algorithm policy (`deny-algorithms`): which signatures count toward thresholds.

python-tuf's ngclient counts every valid signature. A consumer that has deprecated an
algorithm re-counts, after ngclient accepted the metadata, only the signatures of allowed keys,
with python-tuf's own `get_verification_result`: this module never checks a signature itself.

A rule is a key type or scheme name (`rsa`, `ecdsa`, `ed25519`, `rsassa-pss-sha256`,
`ecdsa-sha2-nistp256`, ...), optionally `NAME<BITS` to deny only keys smaller than BITS
(`rsa<3072`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root, Targets

from tufnotary.client.errors import UsageError, VerificationError

_RULE_RE = re.compile(r"([a-z0-9-]+)(?:\s*<\s*([0-9]+))?")


class PolicyViolationError(VerificationError):
    """Metadata meets its threshold only with signatures of denied algorithms."""

    code = "ALGORITHM_DENIED"


def key_bits(key: Key) -> int | None:
    """Size in bits of an RSA or ECDSA public key (None for others or unparsable keys)."""
    public = key.keyval.get("public") if isinstance(key.keyval, dict) else None
    if not isinstance(public, str) or "BEGIN PUBLIC KEY" not in public:
        return None
    try:
        loaded = load_pem_public_key(public.encode())
    except ValueError:
        return None
    if isinstance(loaded, rsa.RSAPublicKey):
        return loaded.key_size
    if isinstance(loaded, ec.EllipticCurvePublicKey):
        return loaded.curve.key_size
    return None


@dataclass(frozen=True)
class DenyRule:
    name: str
    below_bits: int | None = None

    def matches(self, key: Key) -> bool:
        if self.name not in (key.keytype, key.scheme) and not key.keytype.startswith(
            f"{self.name}-"
        ) and not key.scheme.startswith(f"{self.name}-"):
            return False
        if self.below_bits is None:
            return True
        bits = key_bits(key)
        return bits is None or bits < self.below_bits

    def __str__(self) -> str:
        return self.name if self.below_bits is None else f"{self.name}<{self.below_bits}"


def describe_key(key: Key) -> str:
    bits = key_bits(key)
    return f"{key.scheme}" + (f" {bits}-bit" if bits and key.keytype == "rsa" else "")


@dataclass(frozen=True)
class AlgorithmPolicy:
    deny: tuple[DenyRule, ...] = ()

    @classmethod
    def parse(cls, rules: list[str], source: str = "deny-algorithms") -> AlgorithmPolicy:
        parsed = []
        for text in rules:
            match = _RULE_RE.fullmatch(text.strip().lower())
            if match is None:
                raise UsageError(
                    f"{source}: invalid deny-algorithms entry {text!r}: use a key type or scheme "
                    "such as 'rsa', 'ecdsa-sha2-nistp256', optionally with '<BITS' ('rsa<3072')"
                )
            parsed.append(DenyRule(match[1], int(match[2]) if match[2] else None))
        return cls(tuple(parsed))

    def __bool__(self) -> bool:
        return bool(self.deny)

    def denied_by(self, key: Key) -> DenyRule | None:
        return next((rule for rule in self.deny if rule.matches(key)), None)

    def check(self, delegator: Root | Targets, role: str, md: Metadata[Any], what: str) -> None:
        """Raise PolicyViolationError unless allowed keys alone meet `role`'s threshold."""
        result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
        allowed = {
            json.dumps([k.keytype, k.scheme, k.keyval], sort_keys=True)
            for k in result.signed.values()
            if self.denied_by(k) is None
        }
        if len(allowed) >= result.threshold:
            return
        denied = sorted(
            f"{keyid[:16]} ({describe_key(k)}, denied by '{self.denied_by(k)}')"
            for keyid, k in result.signed.items()
            if self.denied_by(k) is not None
        )
        raise PolicyViolationError(
            f"{what} has {len(allowed)} signature(s) from allowed algorithms but needs "
            f"{result.threshold}; signatures not counted: {', '.join(denied) or 'none'}. "
            "The publisher must sign with a key of an allowed algorithm (see docs/runbooks/"
            "algorithm-deprecation.md)"
        )

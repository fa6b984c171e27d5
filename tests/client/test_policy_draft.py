"""Pure pieces: deny-algorithms rules and config, the signing-request format, per-key passphrases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Targets

from tufnotary.client.config import load_config
from tufnotary.client.draft import Draft, Requirement
from tufnotary.client.errors import UsageError
from tufnotary.client.policy import AlgorithmPolicy, PolicyViolationError

from cryptography.hazmat.primitives.asymmetric import rsa


def _rsa(bits: int) -> CryptoSigner:
    from securesystemslib.signer import SSlibKey

    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), scheme="rsassa-pss-sha256"))


def _root_with_targets_keys(*signers: CryptoSigner, threshold: int = 1) -> Root:
    root = Root(expires=datetime.now(timezone.utc) + timedelta(days=1))
    for s in signers:
        root.add_key(s.public_key, "targets")
    root.roles["targets"].threshold = threshold
    return root


def test_policy_rules_match_types_schemes_and_sizes() -> None:
    policy = AlgorithmPolicy.parse(["rsa<3072", "ecdsa-sha2-nistp256"])
    p256 = CryptoSigner.generate_ecdsa().public_key
    ed = CryptoSigner.generate_ed25519().public_key
    assert policy.denied_by(p256) is not None and policy.denied_by(ed) is None
    assert str(policy.denied_by(_rsa(2048).public_key)) == "rsa<3072"
    assert policy.denied_by(_rsa(3072).public_key) is None
    assert AlgorithmPolicy.parse(["ecdsa"]).denied_by(p256) is not None
    with pytest.raises(UsageError, match="invalid deny-algorithms entry"):
        AlgorithmPolicy.parse(["rsa<<1"])


def test_policy_counts_only_allowed_signatures_toward_the_threshold() -> None:
    old, new = CryptoSigner.generate_ecdsa(), CryptoSigner.generate_ed25519()
    root = _root_with_targets_keys(old, new)
    md = Metadata(Targets())
    md.sign(old)
    policy = AlgorithmPolicy.parse(["ecdsa-sha2-nistp256"])
    with pytest.raises(PolicyViolationError, match="0 signature\\(s\\) from allowed algorithms but needs 1"):
        policy.check(root, "targets", md, "targets")
    md.sign(new, append=True)
    policy.check(root, "targets", md, "targets")
    AlgorithmPolicy().check(root, "targets", md, "targets")


def test_config_file(tmp_path: Path) -> None:
    assert not load_config(tmp_path / "absent.toml").policy
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "absent.toml", required=True)
    path = tmp_path / "config.toml"
    path.write_text('deny-algorithms = ["rsa<4096"]\nexpiry-warning-days = 14\n')
    config = load_config(path)
    assert config.expiry_warning_days == 14 and str(config.policy.deny[0]) == "rsa<4096"
    path.write_text('deny_algorithms = ["rsa"]\n')
    with pytest.raises(UsageError, match="unknown settings deny_algorithms"):
        load_config(path)


class _Keys:
    def __init__(self, *signers: CryptoSigner) -> None:
        self.signers = {s.public_key.keyid: s for s in signers}

    def has_private(self, keyid: str) -> bool:
        return keyid in self.signers

    def signer(self, keyid: str) -> CryptoSigner:
        return self.signers[keyid]


def test_signing_request_round_trip_and_missing_signatures() -> None:
    a, b, c = (CryptoSigner.generate_ed25519() for _ in range(3))
    draft = Draft("wabbit-networks/net-monitor", "targets of wabbit-networks/net-monitor")
    keys = {s.public_key.keyid: s.public_key for s in (a, b, c)}
    draft.add("targets", Metadata(Targets(version=2)), [Requirement("root", 2, keys)])
    assert draft.sign_with(_Keys(a)) == [a.public_key.keyid]
    [missing] = draft.missing()
    assert (missing.have, missing.threshold) == (1, 2)
    assert missing.unsigned == sorted([b.public_key.keyid, c.public_key.keyid])
    assert "missing 1 from key(s)" in missing.describe()

    text = draft.to_json()
    again = Draft.from_json(text)
    assert again.sign_with(_Keys(a)) == []  # already signed by a: no duplicate signature
    assert again.sign_with(_Keys(b)) == [b.public_key.keyid]
    assert again.missing() == []
    uploaded = Metadata.from_bytes(again.uploads()["targets"])
    assert len(uploaded.signatures) == 2
    with pytest.raises(UsageError, match="not a tufnotary signing request"):
        Draft.from_json('{"roles": {}}')


def test_a_per_key_passphrase_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from tufnotary.client.cli import TerminalPassphrases

    monkeypatch.setenv("TUFNOTARY_PASSPHRASE", "shared")
    monkeypatch.setenv("TUFNOTARY_PASSPHRASE_" + "a" * 16, "alice's")
    passphrases = TerminalPassphrases()
    assert passphrases("a" * 64, False) == "alice's"
    assert passphrases("b" * 64, False) == "shared"

"""The local key store: generation of each key type, listing, encryption at rest, passphrases."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tufnotary.client.errors import KeyNotFoundError, PassphraseError
from tufnotary.client.keys import KeyStore
from tufnotary.client.trustdir import TrustDir

from tests.client.conftest import PASSPHRASE


def store(tmp_path: Path, passphrase: str = PASSPHRASE) -> KeyStore:
    return KeyStore(TrustDir(tmp_path / "trust"), lambda keyid, new: passphrase)


@pytest.mark.parametrize(
    ("keytype", "scheme"),
    [("ed25519", "ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "rsassa-pss-sha256")],
)
def test_generated_key_is_listed_and_signs(tmp_path: Path, keytype: str, scheme: str) -> None:
    keys = store(tmp_path)
    public = keys.generate(keytype)
    assert public.keytype == keytype and public.scheme == scheme
    [info] = keys.list()
    assert (info.keyid, info.keytype, info.scheme) == (public.keyid, keytype, scheme)
    signature = keys.signer(public.keyid).sign(b"payload")
    public.verify_signature(signature, b"payload")


def test_rsa_key_is_3072_bits(tmp_path: Path) -> None:
    keys = store(tmp_path)
    public = keys.generate("rsa")
    pem = (tmp_path / "trust" / "private" / f"{public.keyid}.pem").read_bytes()
    assert load_pem_private_key(pem, PASSPHRASE.encode()).key_size == 3072  # type: ignore[union-attr]


def test_private_key_is_encrypted_at_rest_with_owner_only_modes(tmp_path: Path) -> None:
    keys = store(tmp_path)
    public = keys.generate("ed25519")
    private_dir = tmp_path / "trust" / "private"
    pem_path = private_dir / f"{public.keyid}.pem"
    pem = pem_path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):  # cryptography: "Password was not given but key is encrypted"
        load_pem_private_key(pem, None)
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700
    assert PASSPHRASE.encode() not in pem


def test_wrong_passphrase_names_the_key(tmp_path: Path) -> None:
    public = store(tmp_path).generate("ecdsa")
    with pytest.raises(PassphraseError, match=public.keyid):
        store(tmp_path, passphrase="not the passphrase").signer(public.keyid)


def test_empty_passphrase_refused_for_new_key(tmp_path: Path) -> None:
    with pytest.raises(PassphraseError):
        store(tmp_path, passphrase="").generate("ed25519")
    assert store(tmp_path).list() == []


def test_unknown_key_id(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError, match="deadbeef"):
        store(tmp_path).signer("deadbeef")

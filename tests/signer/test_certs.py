"""Development certificates: a CA, a signer server certificate for loopback, a client certificate."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tufnotary.signer.certs import DevCertPaths


def load(path: object) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())  # type: ignore[attr-defined]


def test_leaf_certificates_are_issued_by_the_ca(dev_certs: DevCertPaths) -> None:
    ca = load(dev_certs.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for path in (dev_certs.signer_cert, dev_certs.client_cert):
        load(path).verify_directly_issued_by(ca)


def test_signer_certificate_names_loopback(dev_certs: DevCertPaths) -> None:
    cert = load(dev_certs.signer_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_certificate_is_for_client_auth(dev_certs: DevCertPaths) -> None:
    usage = load(dev_certs.client_cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_private_keys_are_owner_only(dev_certs: DevCertPaths) -> None:
    for path in (dev_certs.ca_key, dev_certs.signer_key, dev_certs.client_key):
        assert path.stat().st_mode & 0o777 == 0o600


def test_foreign_ca_is_a_different_ca(dev_certs: DevCertPaths, foreign_certs: DevCertPaths) -> None:
    assert load(dev_certs.ca_cert).public_key() != load(foreign_certs.ca_cert).public_key()

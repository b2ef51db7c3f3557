"""The fleet CA (provisioning/certs.py): what it signs, what it refuses, how keys are stored."""
from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.certs import CertError, main, mint_ca, sign_csr


def csr(cn: str, key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    req = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return req.public_bytes(serialization.Encoding.PEM)


def test_the_demo_set_has_every_key_readable_by_its_owner_only(tmp_path):
    assert main(["demo", str(tmp_path), "--kiosk", "K1", "--kiosk", "K2"]) == 0
    keys = sorted(p.name for p in tmp_path.glob("*.key"))
    assert keys == ["K1.key", "K2.key", "ca.key", "halld.key", "server.key"]
    for k in keys:
        assert stat.S_IMODE((tmp_path / k).stat().st_mode) == 0o600
    k1 = x509.load_pem_x509_certificate((tmp_path / "K1.crt").read_bytes())
    assert k1.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "K1"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in k1.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    k1.verify_directly_issued_by(ca)
    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_a_csr_is_signed_for_the_enrolled_kiosk_with_the_kiosks_own_key(tmp_path):
    ca = mint_ca(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_pem_x509_certificate(sign_csr(ca, csr("K7", key), "K7"))
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "K7"
    cert.verify_directly_issued_by(ca.cert)


@pytest.mark.parametrize("cn, expected", [("K8", "K7"), ("halld", "halld"), ("K7/#", "K7/#"), ("+", "+")])
def test_a_csr_with_another_or_unsafe_cn_is_refused(tmp_path, cn, expected):
    ca = mint_ca(tmp_path)
    with pytest.raises(CertError):
        sign_csr(ca, csr(cn), expected)


def test_a_csr_with_a_weak_key_or_garbage_is_refused(tmp_path):
    ca = mint_ca(tmp_path)
    with pytest.raises(CertError):
        sign_csr(ca, csr("K7", rsa.generate_private_key(public_exponent=65537, key_size=1024)), "K7")
    with pytest.raises(CertError):
        sign_csr(ca, b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "K7")

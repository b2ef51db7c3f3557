"""The fleet CA and the certificates of the hall link (docs/security.md).

Why a private CA: the hall broker must know *which kiosk* is talking, not only that the peer has a
key. Every kiosk gets a client certificate whose CN is its kiosk id; the broker uses that CN as
the MQTT user name (`use_identity_as_username`) and the ACL (hall/mosquitto_secure.py) keys on it.
So the CN is security-relevant: it is checked against a strict alphabet here, because a CN with
`/`, `+` or `#` would change the meaning of an ACL topic.

Small API: `mint_ca(dir)`, `mint_server(ca, dir, hosts)`, `mint_client(ca, dir, cn)`, and
`sign_csr(ca, csr_pem, expected_cn)` for the enrolment flow (the key stays on the kiosk).
`tls_context(...)` is what an MQTT client (kioskd's link, halld) passes to aiomqtt.

Demo set: `python -m provisioning.certs demo DIR --kiosk K1 --kiosk K2`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HALLD_CN = "halld"
RESERVED_CNS = frozenset({HALLD_CN})  # a kiosk enrolling as "halld" would get halld's ACL

CA_DAYS = 3650
LEAF_DAYS = 825


class CertError(ValueError):
    """A request the CA refuses (bad CN, CN mismatch, bad signature, weak key)."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its key on disk (key file mode 0600)."""

    cert_path: Path
    key_path: Path | None
    cert: x509.Certificate


@dataclass(frozen=True)
class CA:
    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "CA":
        d = Path(directory)
        cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{d / 'ca.key'}: not an EC key")
        return cls(d / "ca.crt", d / "ca.key", cert, key)


def check_cn(cn: str) -> str:
    """A CN becomes an MQTT user name and a topic level: letters, digits, `_ . -` only."""
    if not CN_RE.fullmatch(cn):
        raise CertError(f"CN {cn!r} is not a valid kiosk id (letters, digits, _ . -; at most 64)")
    return cn


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when the file already existed with a wider mode
        os.write(fd, pem)
    finally:
        os.close(fd)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a kiosk clock a little behind
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _leaf_ext(b: x509.CertificateBuilder, ca: CA, usage) -> x509.CertificateBuilder:
    return (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))


def mint_ca(directory: str | os.PathLike, name: str = "kioskd fleet CA") -> CA:
    """A new fleet CA (EC P-256) as DIR/ca.crt + DIR/ca.key (0600). Keep ca.key off the kiosks."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (_builder(subject, subject, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(d / "ca.key", key)
    _write_cert(d / "ca.crt", cert)
    return CA(d / "ca.crt", d / "ca.key", cert, key)


def mint_server(ca: CA, directory: str | os.PathLike, hosts: list[str], name: str = "server") -> Issued:
    """The broker's certificate; `hosts` become SANs (IP addresses as IP SANs, the rest as DNS)."""
    if not hosts:
        raise CertError("a server certificate needs at least one host name")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_leaf_ext(_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]), ca.cert.subject,
                               key.public_key(), LEAF_DAYS), ca, ExtendedKeyUsageOID.SERVER_AUTH)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca.key, hashes.SHA256()))
    _write_key(d / f"{name}.key", key)
    _write_cert(d / f"{name}.crt", cert)
    return Issued(d / f"{name}.crt", d / f"{name}.key", cert)


def _client_cert(ca: CA, cn: str, public_key) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (_leaf_ext(_builder(subject, ca.cert.subject, public_key, LEAF_DAYS), ca, ExtendedKeyUsageOID.CLIENT_AUTH)
            .sign(ca.key, hashes.SHA256()))


def mint_client(ca: CA, directory: str | os.PathLike, cn: str) -> Issued:
    """A client certificate with CN = kiosk id (or "halld") as DIR/CN.crt + DIR/CN.key (0600).

    Demo/test shortcut: the key is made here. Real kiosks use sign_csr so the key never leaves them.
    """
    check_cn(cn)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _client_cert(ca, cn, key.public_key())
    _write_key(d / f"{cn}.key", key)
    _write_cert(d / f"{cn}.crt", cert)
    return Issued(d / f"{cn}.crt", d / f"{cn}.key", cert)


def sign_csr(ca: CA, csr_pem: bytes, expected_cn: str) -> bytes:
    """Sign a kiosk's CSR as a client certificate; returns the certificate PEM.

    Only the CSR's public key and CN are used (requested extensions are ignored: the CA decides
    usage). Refused: a bad CSR signature, a CN other than `expected_cn` (the id the enrolment token
    was issued for), a reserved CN, a key that is not EC P-256/P-384.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertError(f"not a PEM CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise CertError("CSR signature does not verify")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or cns[0].value != expected_cn:
        got = [a.value for a in cns]
        raise CertError(f"CSR CN {got!r} does not match the enrolled kiosk id {expected_cn!r}")
    check_cn(expected_cn)
    if expected_cn in RESERVED_CNS:
        raise CertError(f"CN {expected_cn!r} is reserved for the hall")
    pub = csr.public_key()
    if not (isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name in ("secp256r1", "secp384r1")):
        raise CertError("CSR key must be EC P-256 or P-384")
    return _client_cert(ca, expected_cn, pub).public_bytes(serialization.Encoding.PEM)


def tls_context(ca_file: str | os.PathLike, cert_file: str | os.PathLike, key_file: str | os.PathLike) -> ssl.SSLContext:
    """The client side of the hall link: verify the broker against the fleet CA, present our cert.

    Pass to aiomqtt: `aiomqtt.Client(host, 8883, tls_context=tls_context(...), ...)`.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def demo(directory: str | os.PathLike, kiosks: list[str], hosts: list[str] | None = None) -> CA:
    """A complete demo set: CA, broker cert (localhost, 127.0.0.1), halld and one cert per kiosk."""
    for k in kiosks:
        check_cn(k)
        if k in RESERVED_CNS:
            raise CertError(f"CN {k!r} is reserved for the hall")
    ca = mint_ca(directory)
    mint_server(ca, directory, hosts or ["localhost", "127.0.0.1"])
    mint_client(ca, directory, HALLD_CN)
    for k in kiosks:
        mint_client(ca, directory, k)
    return ca


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioning.certs", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="mint a demo CA, broker, halld and kiosk certificates into DIR")
    d.add_argument("dir")
    d.add_argument("--kiosk", action="append", default=[], help="kiosk id (CN); repeat for several")
    d.add_argument("--host", action="append", default=None, help="broker host name/IP (default localhost, 127.0.0.1)")
    args = p.parse_args(argv)
    try:
        demo(args.dir, args.kiosk, args.host)
    except CertError as exc:
        p.error(str(exc))
    print(f"wrote CA, server, halld{''.join(', ' + k for k in args.kiosk)} certificates to {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""First boot: the kiosk makes its key, enrols at the hall with its one-time token, keeps the cert.

Why before everything else: kioskd's hall link needs a client certificate whose CN is this
kiosk's id (docs/security.md), and the only way to get one is to prove, with the token the
technician wrote on the SD card (kiosk-provision personalise), that this card is ours. The
private key is made here and never leaves the kiosk; the hall gets a CSR.

    identity file (FAT, /boot/firmware/kiosk-identity.toml): kiosk, hall, enrol_url, token,
        optional mqtt_host / mqtt_port (default: the enrolment host, port 8883)
    fleet-ca.crt beside it: the CA the enrolment server must chain to
    result in TLS_DIR (state dir, data partition): kiosk.key (0600), kiosk.crt, ca.crt

Hall unreachable or failing: retry with exponential backoff (1 s doubling to 60 s, jittered),
saying so in the log, in systemd's status line and on the customer's screen (`show` gets a
`Progress`: kioskd serves its page before enrolling, controller/kiosk.py `_enrol`). Refused (403/400: used, expired, other kiosk's token): `EnrolmentRefused`,
kioskd exits with the reason; a new token and a new personalise are needed.
After success the token is removed from the identity file (it is burnt at the hall anyway).
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("kioskd.enrolment")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
REQUEST_TIMEOUT_S = 20.0


class EnrolmentRefused(RuntimeError):
    """The hall said no: retrying with the same token cannot help."""


@dataclass(frozen=True)
class Identity:
    kiosk: str
    hall: str
    enrol_url: str
    token: str | None
    mqtt_host: str
    mqtt_port: int
    path: Path

    @property
    def fleet_ca(self) -> Path:
        return self.path.with_name("fleet-ca.crt")


@dataclass(frozen=True)
class Progress:
    """Where enrolment stands, for the screen: connecting (attempt n in flight), retrying (attempt n
    failed; the next at retry_at, wall-clock seconds), enrolled."""
    state: str
    kiosk: str
    hall: str
    attempt: int
    retry_at: float | None = None
    error: str = ""


@dataclass(frozen=True)
class Enrolled:
    identity: Identity
    ca_file: Path
    cert_file: Path
    key_file: Path


def read_identity(path: Path) -> Identity:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EnrolmentRefused(f"identity {path}: {exc}") from None
    missing = [k for k in ("kiosk", "hall", "enrol_url") if not isinstance(doc.get(k), str)]
    if missing:
        raise EnrolmentRefused(f"identity {path} lacks {', '.join(missing)}: personalise the card again")
    url = urlsplit(doc["enrol_url"])
    return Identity(doc["kiosk"], doc["hall"], doc["enrol_url"], doc.get("token"),
                    str(doc.get("mqtt_host") or url.hostname), int(doc.get("mqtt_port") or 8883), path)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _key(path: Path) -> ec.EllipticCurvePrivateKey:
    """This kiosk's key: made once, kept 0600 (a retry after a power cut reuses it)."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    key = ec.generate_private_key(ec.SECP256R1())
    _write_atomic(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)
    return key


def _csr(key: ec.EllipticCurvePrivateKey, kiosk: str) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk)])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _cert_ok(cert_file: Path, key: ec.EllipticCurvePrivateKey, kiosk: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return cns == [kiosk] and cert.public_key() == key.public_key()


async def _post(identity: Identity, csr: str) -> tuple[int, dict]:
    import aiohttp

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(identity.fleet_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    body = {"kiosk": identity.kiosk, "hall": identity.hall, "token": identity.token, "csr": csr}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as s:
        async with s.post(identity.enrol_url, json=body, ssl=ctx) as r:
            try:
                answer = await r.json(content_type=None)
            except ValueError:
                answer = {}
            return r.status, answer if isinstance(answer, dict) else {}


def _burn_token(identity: Identity) -> None:
    """Remove the token from the card: it is spent, and the card may travel."""
    lines = [l for l in identity.path.read_text().splitlines(keepends=True) if not l.lstrip().startswith("token")]
    try:
        _write_atomic(identity.path, "".join(lines).encode())
    except OSError as exc:  # a boot partition mounted read-only: the hall has burnt it anyway
        log.warning("token left in %s (%s); the hall has marked it used", identity.path, exc)


async def ensure(identity_path: Path, tls_dir: Path, say: Callable[[str], None] = lambda s: None,
                 backoff_first_s: float = BACKOFF_FIRST_S,
                 show: Callable[[Progress], None] = lambda p: None) -> Enrolled:
    """Enrolled already (a cert for our key and id in tls_dir), or enrol now, retrying until the
    hall answers. `say` gets each status line (systemd STATUS=), `show` each step (the screen)."""
    identity = read_identity(identity_path)
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = Enrolled(identity, tls_dir / "ca.crt", tls_dir / "kiosk.crt", tls_dir / "kiosk.key")
    key = _key(done.key_file)
    if _cert_ok(done.cert_file, key, identity.kiosk) and done.ca_file.exists():
        return done
    if not identity.token:
        raise EnrolmentRefused(f"not enrolled and {identity_path} holds no token: personalise the card again")
    csr = _csr(key, identity.kiosk)
    delay, attempt = backoff_first_s, 0
    while True:
        attempt += 1
        show(Progress("connecting", identity.kiosk, identity.hall, attempt))
        try:
            status, answer = await _post(identity, csr)
        except Exception as exc:  # refused connection, TLS, timeout, aiohttp.ClientError: all mean "try again"
            status, answer = 0, {"error": f"{type(exc).__name__}: {exc}"}
        if status == 200 and isinstance(answer.get("cert"), str):
            cert_pem = answer["cert"].encode()
            cert = x509.load_pem_x509_certificate(cert_pem)
            if cert.public_key() != key.public_key():
                raise EnrolmentRefused("the hall returned a certificate for another key")
            _write_atomic(done.ca_file, identity.fleet_ca.read_bytes())
            _write_atomic(done.cert_file, cert_pem)
            _burn_token(identity)
            msg = f"enrolled as {identity.kiosk} of hall {identity.hall} (attempt {attempt})"
            log.info(msg)
            say(msg)
            show(Progress("enrolled", identity.kiosk, identity.hall, attempt))
            return done
        if status in (400, 403):
            msg = f"enrolment refused by the hall: {answer.get('error', status)}"
            log.error(msg)
            say(msg)
            raise EnrolmentRefused(msg)
        wait = delay * random.uniform(0.75, 1.25)
        msg = (f"hall not reachable for enrolment at {identity.enrol_url} (attempt {attempt}: "
               f"{answer.get('error', f'HTTP {status}')}); retrying in {wait:.0f} s")
        log.warning(msg)
        say(msg)
        show(Progress("retrying", identity.kiosk, identity.hall, attempt, time.time() + wait,
                      str(answer.get("error", f"HTTP {status}"))))
        await asyncio.sleep(wait)
        delay = min(delay * 2, BACKOFF_MAX_S)


def apply(config, enrolled: Enrolled):
    """kioskd's config with the enrolled identity: id, hall, and the hall link over TLS."""
    import dataclasses

    ident = enrolled.identity
    return dataclasses.replace(
        config, kiosk=dataclasses.replace(config.kiosk, id=ident.kiosk, hall=ident.hall),
        mqtt=dataclasses.replace(config.mqtt, host=ident.mqtt_host, port=ident.mqtt_port,
                                 ca_file=str(enrolled.ca_file), cert_file=str(enrolled.cert_file),
                                 key_file=str(enrolled.key_file)))


async def first_boot(identity_path: Path, tls_dir: Path, show: Callable[[Progress], None] = lambda p: None,
                     extend_start: bool = True) -> Enrolled:
    """`ensure` under systemd: the status line says what is happening. `extend_start`: kioskd has not
    said READY (no screen served), so the start timeout and watchdog are fed while we wait for the
    hall, which may take hours on a new site."""
    from .sdnotify import Notifier

    notify = Notifier()

    async def feed() -> None:
        while True:
            notify.send("WATCHDOG=1", "EXTEND_TIMEOUT_USEC=30000000")
            await asyncio.sleep(3)

    feeder = asyncio.get_running_loop().create_task(feed()) if extend_start else None
    try:
        return await ensure(identity_path, tls_dir, lambda s: notify.status(s), show=show)
    finally:
        if feeder is not None:
            feeder.cancel()

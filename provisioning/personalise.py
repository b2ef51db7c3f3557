"""Give one image its kiosk's identity: id, hall, where to enrol, the one-time token, the fleet CA.

Why the FAT boot partition: every laptop can write it (and so can mtools, without mounting or
root), and the kiosk reads it at first boot from /boot/firmware. The token is a secret for a
short while only: it is good for one enrolment of this kiosk id, and the kiosk deletes the file's
token once it holds its certificate (controller/enrolment.py).

Files written (FAT root): kiosk-identity.toml, fleet-ca.crt.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import tomlkit
from cryptography import x509

from .certs import CN_RE, RESERVED_CNS
from .disk import boot_slice, fat_read, run

IDENTITY = "kiosk-identity.toml"
FLEET_CA = "fleet-ca.crt"
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,128}")


class PersonaliseError(ValueError):
    """A bad id, hall, URL, token or CA file, or an image without a boot partition."""


def identity_toml(kiosk: str, hall: str, enrol_url: str, token: str, mqtt: str | None = None) -> str:
    for what, value in (("kiosk id", kiosk), ("hall", hall)):
        if not CN_RE.fullmatch(value):
            raise PersonaliseError(f"{what} {value!r}: letters, digits, _ . - only (at most 64)")
    if kiosk in RESERVED_CNS:
        raise PersonaliseError(f"kiosk id {kiosk!r} is reserved for the hall")
    if not re.fullmatch(r"https://[^\s/]+(/\S*)?", enrol_url):
        raise PersonaliseError(f"enrolment URL {enrol_url!r} must be https://HOST[:PORT]/...")
    if not TOKEN_RE.fullmatch(token):
        raise PersonaliseError("the token is not one halld issued (20-128 of A-Z a-z 0-9 _ -): "
                               "issue one with `kiosk-provision token`")
    broker = None
    if mqtt is not None:
        host, sep, port = mqtt.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536 and re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", host)):
            raise PersonaliseError(f"--mqtt {mqtt!r}: expected HOST:PORT of the hall's broker")
        broker = (host.strip("[]"), int(port))
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Written by kiosk-provision personalise; read once by kioskd at first boot."))
    for key, value in (("kiosk", kiosk), ("hall", hall), ("enrol_url", enrol_url), ("token", token)):
        doc[key] = value
    if broker is not None:
        doc["mqtt_host"], doc["mqtt_port"] = broker
    return tomlkit.dumps(doc)


def personalise(image: Path, kiosk: str, hall: str, enrol_url: str, token: str, ca_file: Path,
                mqtt: str | None = None) -> list[str]:
    """Write the identity and the fleet CA into the image's boot partition; returns what it wrote."""
    text = identity_toml(kiosk, hall, enrol_url, token, mqtt)
    try:
        ca_pem = ca_file.read_bytes()
        x509.load_pem_x509_certificate(ca_pem)
    except (OSError, ValueError) as exc:
        raise PersonaliseError(f"fleet CA {ca_file}: {exc}") from None
    s = boot_slice(image)
    wrote = {IDENTITY: text.encode(), FLEET_CA: ca_pem}
    with tempfile.TemporaryDirectory(prefix="personalise-") as tmp:
        for name, data in wrote.items():
            (Path(tmp) / name).write_bytes(data)
            run("mcopy", "-o", "-i", f"{image}@@{s.offset}", str(Path(tmp) / name), f"::/{name}",
                env={"MTOOLS_SKIP_CHECK": "1"})
    for name, data in wrote.items():  # mcopy says nothing when a FAT is full or damaged: read it back
        if fat_read(image, s, name) != data:
            raise PersonaliseError(f"{image}: {name} did not read back as written")
    return sorted(wrote)


def read_identity(text: str) -> dict[str, str]:
    """The kiosk side's parse: every key present and well formed, or PersonaliseError."""
    try:
        doc = tomlkit.parse(text).unwrap()
    except Exception as exc:
        raise PersonaliseError(f"{IDENTITY} does not parse: {exc}") from None
    missing = [k for k in ("kiosk", "hall", "enrol_url") if not isinstance(doc.get(k), str)]
    if missing:
        raise PersonaliseError(f"{IDENTITY} lacks {', '.join(missing)}")
    return {k: v for k, v in doc.items() if isinstance(v, (str, int))}

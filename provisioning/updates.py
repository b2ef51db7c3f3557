"""Signed update bundles and the A/B slot record: what a kiosk checks before it touches a slot.

Why our own format and not RAUC: a bundle is one root file system image (the ext4 of slot A or
B) and the kiosk must check it with nothing but `cryptography`, streaming, before the other slot
is marked bootable. The fleet's update key (ed25519) is not the fleet CA: a stolen kiosk
certificate cannot sign an update, and the signing key can stay offline.

Bundle = b"KIOSKUPD1\\n" + header (one JSON line: version, size, sha256 of the payload,
created) + b"\\n" + signature (hex ed25519 over magic + header line) + b"\\n" + payload.
`verify_header` checks the signature before a byte of payload is read; `install` streams the
payload into the target slot while hashing it and raises (leaving the slot marked bad) if the
hash or size differs, so a slot is never tried unless every byte matched the signed header.

Slot record (`slots.json`, on the boot partition): committed slot, the slot to try once, and
what happened last (`tried`, `rolled_back` with the reason). updates on the kiosk
(controller side) read and write it; the boot path (initrd under qemu, `tryboot` on the Pi)
follows it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"KIOSKUPD1\n"
MAX_HEADER = 4096
CHUNK = 1024 * 1024
SLOTS = ("A", "B")


class UpdateError(ValueError):
    """A bundle that is not ours (bad signature, damaged, wrong size) or a slot record that makes no sense."""


@dataclass(frozen=True)
class Header:
    version: str
    size: int
    sha256: str
    created: float
    offset: int  # where the payload starts in the bundle


def keygen(directory: Path) -> tuple[Path, Path]:
    """update.key (0600, keep offline) and update.pub (goes into every image)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    priv = directory / "update.key"
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    pub = directory / "update.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def _load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UpdateError(f"{path}: not an ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise UpdateError(f"{path}: not an ed25519 public key")
    return key


def make_bundle(rootfs: Path, out: Path, version: str, key_file: Path, progress=None) -> Header:
    """Sign a root file system image (the ext4 of a slot) into a bundle."""
    h, size = hashlib.sha256(), 0
    with open(rootfs, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    line = json.dumps({"version": version, "size": size, "sha256": h.hexdigest(), "created": time.time()},
                      sort_keys=True).encode()
    key = _load_private(key_file)
    sig = key.sign(MAGIC + line)
    with open(out, "wb") as o, open(rootfs, "rb") as f:
        o.write(MAGIC + line + b"\n" + sig.hex().encode() + b"\n")
        while chunk := f.read(CHUNK):
            o.write(chunk)
    return verify_header(out, key.public_key())


def verify_header(bundle: Path, public: Ed25519PublicKey) -> Header:
    with open(bundle, "rb") as f:
        head = f.read(len(MAGIC) + MAX_HEADER + 130)
    if not head.startswith(MAGIC):
        raise UpdateError(f"{bundle}: not a kiosk update bundle")
    try:
        line, sig_hex, _ = head[len(MAGIC):].split(b"\n", 2)
        sig = bytes.fromhex(sig_hex.decode())
    except ValueError:
        raise UpdateError(f"{bundle}: damaged header") from None
    try:
        public.verify(sig, MAGIC + line)
    except InvalidSignature:
        raise UpdateError(f"{bundle}: bad signature: not signed with the fleet's update key") from None
    meta = json.loads(line)
    offset = len(MAGIC) + len(line) + 1 + len(sig_hex) + 1
    if bundle.stat().st_size - offset != meta["size"]:
        raise UpdateError(f"{bundle}: payload is {bundle.stat().st_size - offset} bytes, the signed header says "
                          f"{meta['size']}")
    return Header(str(meta["version"]), int(meta["size"]), str(meta["sha256"]), float(meta["created"]), offset)


def install(bundle: Path, header: Header, target: Path, target_offset: int = 0, target_size: int | None = None,
            progress=None) -> None:
    """Stream the payload into the slot (a partition, or an image file at an offset), hashing as it
    goes; raises UpdateError if the bytes are not the signed ones. fsync before returning."""
    if target_size is not None and header.size > target_size:
        raise UpdateError(f"the update's root is {header.size} bytes, the slot holds {target_size}")
    h = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY)
    try:
        with open(bundle, "rb") as src:
            src.seek(header.offset)
            pos = target_offset
            while chunk := src.read(CHUNK):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    n = os.pwrite(fd, view, pos)
                    view, pos = view[n:], pos + n
                if progress:
                    progress(len(chunk))
        os.fsync(fd)
    finally:
        os.close(fd)
    if h.hexdigest() != header.sha256:
        raise UpdateError("the payload does not match its signed hash: the slot is left unbootable")


# -- the slot record -------------------------------------------------------------------------------

@dataclass
class SlotRecord:
    committed: str = "A"
    try_slot: str | None = None  # boot this once, then the committed one again unless committed
    version: dict | None = None  # slot -> version
    last: str = ""  # what happened last, for the hall: "committed B 1.2", "rolled back from B: why"

    def other(self) -> str:
        return SLOTS[1 - SLOTS.index(self.committed)]

    def dumps(self) -> bytes:
        return json.dumps({"committed": self.committed, "try": self.try_slot, "version": self.version or {},
                           "last": self.last}, sort_keys=True).encode() + b"\n"

    @classmethod
    def loads(cls, data: bytes) -> "SlotRecord":
        try:
            d = json.loads(data)
            rec = cls(d["committed"], d.get("try"), d.get("version") or {}, d.get("last", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise UpdateError(f"slot record does not parse: {exc}") from None
        if rec.committed not in SLOTS or rec.try_slot not in (None, *SLOTS):
            raise UpdateError(f"slot record names unknown slots: {d}")
        return rec


def read_record(path: Path) -> SlotRecord:
    return SlotRecord.loads(path.read_bytes()) if path.exists() else SlotRecord(version={})


def write_record(path: Path, rec: SlotRecord) -> None:
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as f:
        f.write(rec.dumps())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

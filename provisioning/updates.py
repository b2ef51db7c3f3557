"""Signed update bundles and the A/B boot files: what a kiosk checks before it touches a slot.

Why our own format and not RAUC: a bundle is one root file system image (the ext4 of a slot) and
the kiosk must check it with nothing but `cryptography`, streaming (it is written into the other
slot as it is downloaded: the data partition has no room for a copy). The fleet's update key
(ed25519) is not the fleet CA: a stolen kiosk certificate cannot sign an update, and the signing
key can stay offline.

Bundle = b"KIOSKUPD1\\n" + header (one JSON line: version, size, sha256 of the payload, created)
+ b"\\n" + signature (hex ed25519 over magic + header line) + b"\\n" + payload. `read_header`
checks the signature before a byte of payload is used; `SlotWriter` streams the payload into the
target slot while hashing it and raises if the hash or size differs, so a slot is never tried
unless every byte matched the signed header.

Boot files (plain text on the FAT boot partition, read by our initrd's busybox — on the Pi too,
where the same initrd runs; see docs/provisioning.md "Updates"):
  slot.txt     the committed slot: "A" or "B"
  tryboot.txt  "SLOT VERSION TIMEOUT_S": boot SLOT once; the initrd renames it to trying.txt as it
               boots it, so any later boot goes back to the committed slot (Pi `tryboot` semantics)
  trying.txt   a trial in progress; kioskd removes it when it commits (slot.txt = SLOT first) or
               when it finds itself back on the old slot; the trial guard appends why it gave up
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: kioskd reads the boot files at every start, cryptography only to update
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"KIOSKUPD1\n"
MAX_HEADER = 4096
CHUNK = 1024 * 1024
SLOTS = ("A", "B")
VERSION_RE = re.compile(r"[A-Za-z0-9._+~-]{1,64}")  # one word: it goes into tryboot.txt and the hall's reports


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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


def _load_private(path: Path) -> "Ed25519PrivateKey":
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UpdateError(f"{path}: not an ed25519 private key")
    return key


def load_public(path: Path) -> "Ed25519PublicKey":
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise UpdateError(f"{path}: not an ed25519 public key")
    return key


def make_bundle(rootfs: Path, out: Path, version: str, key_file: Path, progress=None) -> Header:
    """Sign a root file system image (the ext4 of a slot) into a bundle."""
    if not VERSION_RE.fullmatch(version):
        raise UpdateError(f"version {version!r}: letters, digits and . _ + ~ - (at most 64)")
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


HEAD_MAX = len(MAGIC) + MAX_HEADER + 130  # magic, header line, hex signature: what read_header needs


def read_header(head: bytes, public: "Ed25519PublicKey", what: str = "bundle") -> Header:
    """The signed header from a bundle's first HEAD_MAX bytes (a file's or a download's); the
    signature is checked before anything in the header is believed."""
    if not head.startswith(MAGIC):
        raise UpdateError(f"{what}: not a kiosk update bundle")
    try:
        line, sig_hex, _ = head[len(MAGIC):].split(b"\n", 2)
        sig = bytes.fromhex(sig_hex.decode())
    except ValueError:
        raise UpdateError(f"{what}: damaged header") from None
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(sig, MAGIC + line)
    except InvalidSignature:
        raise UpdateError(f"{what}: bad signature: not signed with the fleet's update key") from None
    meta = json.loads(line)
    offset = len(MAGIC) + len(line) + 1 + len(sig_hex) + 1
    return Header(str(meta["version"]), int(meta["size"]), str(meta["sha256"]), float(meta["created"]), offset)


def verify_header(bundle: Path, public: "Ed25519PublicKey") -> Header:
    with open(bundle, "rb") as f:
        head = f.read(HEAD_MAX)
    header = read_header(head, public, str(bundle))
    if bundle.stat().st_size - header.offset != header.size:
        raise UpdateError(f"{bundle}: payload is {bundle.stat().st_size - header.offset} bytes, the signed header says "
                          f"{header.size}")
    return header


class SlotWriter:
    """The payload, chunk by chunk, into a slot (a partition, or an image file at an offset),
    hashed as it goes; `finish` fsyncs and raises UpdateError unless every byte was the signed one."""

    def __init__(self, header: Header, target: Path, target_offset: int = 0, target_size: int | None = None) -> None:
        if target_size is not None and header.size > target_size:
            raise UpdateError(f"the update's root is {header.size} bytes, the slot holds {target_size}")
        self.header = header
        self.hash = hashlib.sha256()
        self.written = 0
        self.start = target_offset
        self.fd = os.open(target, os.O_WRONLY)

    def write(self, chunk: bytes) -> None:
        if self.written + len(chunk) > self.header.size:
            raise UpdateError(f"the payload runs past the {self.header.size} bytes its signed header says")
        self.hash.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.pwrite(self.fd, view, self.start + self.written)
            view, self.written = view[n:], self.written + n

    def finish(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            self.close()
        if self.written != self.header.size:
            raise UpdateError(f"the payload ended after {self.written} of {self.header.size} bytes: the slot is left "
                              "unbootable")
        if self.hash.hexdigest() != self.header.sha256:
            raise UpdateError("the payload does not match its signed hash: the slot is left unbootable")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def install(bundle: Path, header: Header, target: Path, target_offset: int = 0, target_size: int | None = None,
            progress=None) -> None:
    """A bundle file's payload into the slot; raises UpdateError if the bytes are not the signed ones."""
    writer = SlotWriter(header, target, target_offset, target_size)
    try:
        with open(bundle, "rb") as src:
            src.seek(header.offset)
            while chunk := src.read(CHUNK):
                writer.write(chunk)
                if progress:
                    progress(len(chunk))
    except BaseException:
        writer.close()
        raise
    writer.finish()


# -- the boot files ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    """A slot to boot once (tryboot.txt) or being tried (trying.txt), and what the guard wrote."""

    slot: str
    version: str
    timeout_s: int
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.slot} {self.version} {self.timeout_s}\n"


class BootFiles:
    """slot.txt / tryboot.txt / trying.txt in the boot partition's directory (/boot/firmware)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def committed(self) -> str:
        path = self.dir / "slot.txt"
        slot = path.read_text().strip() if path.exists() else "A"
        if slot not in SLOTS:
            raise UpdateError(f"{path} names slot {slot!r}, not A or B")
        return slot

    def _trial(self, name: str) -> Trial | None:
        path = self.dir / name
        if not path.exists():
            return None
        first, *notes = path.read_text().splitlines() or [""]
        try:
            slot, version, timeout = first.split()
            trial = Trial(slot, version, int(timeout), tuple(n for n in notes if n.strip()))
        except ValueError:
            raise UpdateError(f"{path}: expected 'SLOT VERSION TIMEOUT_S', got {first!r}") from None
        if trial.slot not in SLOTS:
            raise UpdateError(f"{path} names slot {trial.slot!r}, not A or B")
        return trial

    def tryboot(self) -> Trial | None:
        return self._trial("tryboot.txt")

    def trying(self) -> Trial | None:
        return self._trial("trying.txt")

    def _write(self, name: str, text: str) -> None:
        write_durably(self.dir / name, text.encode())

    def _remove(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)
        _fsync_dir(self.dir)

    def set_tryboot(self, trial: Trial) -> None:
        self._write("tryboot.txt", trial.line())

    def commit(self, slot: str) -> None:
        """slot.txt first, then the trial's file: a power cut between leaves a committed slot and a
        trying.txt naming it, which the next start finishes (never a slot that is neither)."""
        self._write("slot.txt", slot + "\n")
        self._remove("trying.txt")
        self._remove("tryboot.txt")

    def end_trial(self) -> None:
        self._remove("trying.txt")

    def note(self, line: str) -> None:
        """The trial guard's reason, appended to trying.txt for the old slot's kioskd to report."""
        trial = self.trying()
        if trial is not None:
            self._write("trying.txt", trial.line() + "".join(n + "\n" for n in (*trial.notes, line)))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename, fsync the directory (on FAT the rename is as close to atomic as it gets)."""
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)

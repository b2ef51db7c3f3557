"""The SD image's partitions, made and read without loop devices, mounts or root.

Why no mounts: a technician's laptop, CI and a build container can all run sfdisk, mkfs.vfat
--offset, mtools and `mke2fs -d` on a plain file; loop devices need root and leak on a crash.

Layout (MBR, which the Raspberry Pi boot ROM reads): 1 boot (FAT, firmware + kernels + the
kiosk's identity), 2 root A and 3 root B (ext4, mounted read-only), 4 data (ext4, the journal
and outbox). `assemble(out, parts)` writes them from directories; `partitions(img)` reads the
table back so personalise and updates find their partition by name, not by a guessed offset.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
MIB = 1024 * 1024
FIRST_MIB = 4  # room before partition 1 (MBR + alignment for SD erase blocks)
MBR_TYPE = {"vfat": "c", "ext4": "83"}
# Fixed identifiers make the same inputs give the same bytes (docs/provisioning.md, reproducibility).
DISK_ID = "0x4b696f73"  # "Kios"


class DiskError(RuntimeError):
    """A tool is missing or refused the image; the message says which and why."""


@dataclass(frozen=True)
class Part:
    name: str  # boot, rootA, rootB, data: also the file system label
    fs: str  # vfat or ext4
    size_mib: int
    src: Path | None = None  # directory whose tree becomes the file system's content
    uuid: str | None = None  # ext4: fixed for reproducible images


@dataclass(frozen=True)
class Slice:
    """A partition found in an image: its number, byte offset and size."""

    number: int
    offset: int
    size: int
    type: str


def run(*cmd: str, env: dict[str, str] | None = None, input: bytes | None = None) -> bytes:
    if shutil.which(cmd[0]) is None:
        raise DiskError(f"{cmd[0]} not found: install the Debian packages in apt-packages.txt (./dev does)")
    proc = subprocess.run(cmd, input=input, capture_output=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise DiskError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def assemble(out: Path, parts: list[Part], epoch: int = 0) -> list[Slice]:
    """A partitioned image at `out` (sparse), every file system made in place at its offset.

    `epoch` is the time the file systems record (mke2fs's fake time, FAT's invariant mode).
    """
    total_mib = FIRST_MIB + sum(p.size_mib for p in parts)
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(total_mib * MIB)
    script = [f"label: dos", f"label-id: {DISK_ID}", "unit: sectors", ""]
    start = FIRST_MIB * MIB // SECTOR
    for p in parts:
        size = p.size_mib * MIB // SECTOR
        script.append(f"start={start}, size={size}, type={MBR_TYPE[p.fs]}"
                      + (", bootable" if p.fs == "vfat" else ""))
        start += size
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(out), input="\n".join(script).encode())
    slices = partitions(out)
    for p, s in zip(parts, slices):
        if p.fs == "vfat":
            make_vfat(out, s, p.name.upper(), p.src)
        else:
            make_ext4(out, s, p.name, p.src, p.uuid, epoch)
    return slices


def partitions(img: Path) -> list[Slice]:
    """The image's partition table (sfdisk --json), in partition order."""
    if not img.is_file():
        raise DiskError(f"{img}: no such image file")
    try:
        table = json.loads(run("sfdisk", "--json", str(img)))["partitiontable"]
    except (KeyError, ValueError, DiskError) as exc:
        raise DiskError(f"{img}: no partition table sfdisk can read: not a kiosk image ({exc})") from None
    found = []
    for i, p in enumerate(table.get("partitions", []), start=1):
        found.append(Slice(i, int(p["start"]) * SECTOR, int(p["size"]) * SECTOR, str(p.get("type", ""))))
    return found


def boot_slice(img: Path) -> Slice:
    """Partition 1, which must be FAT (MBR type b, c or e)."""
    slices = partitions(img)
    if not slices or slices[0].type.lower() not in ("b", "c", "e", "ef"):
        raise DiskError(f"{img}: partition 1 is not a FAT boot partition (is this a kiosk image?)")
    return slices[0]


def make_vfat(img: Path, s: Slice, label: str, src: Path | None) -> None:
    # FAT32 from 128 MiB (one sector per cluster keeps it above FAT32's cluster minimum); smaller: mkfs decides
    fat = ["-F", "32", "-s", "1"] if s.size >= 128 * MIB else []
    run("mkfs.vfat", "--invariant", "-i", "4b494f53", "-n", label[:11], *fat, f"--offset={s.offset // SECTOR}",
        str(img), str(s.size // 1024))
    if src is not None:
        entries = sorted(str(e) for e in Path(src).iterdir())
        if entries:
            run("mcopy", "-s", "-p", "-m", "-Q", "-i", f"{img}@@{s.offset}", *entries, "::/",
                env={"MTOOLS_SKIP_CHECK": "1"})


def make_ext4(img: Path, s: Slice, label: str, src: Path | None, uuid: str | None, epoch: int) -> None:
    opts = [f"offset={s.offset}"]
    cmd = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-b", "4096", "-I", "256", "-m", "0"]
    if uuid:
        cmd += ["-U", uuid]
        opts.append(f"hash_seed={uuid}")
    cmd += ["-E", ",".join(opts)]
    if src is not None:
        cmd += ["-d", str(src)]
    cmd += [str(img), f"{s.size // 1024}k"]
    run(*cmd, env={"E2FSPROGS_FAKE_TIME": str(epoch)} if epoch else None)


def fat_read(img: Path, s: Slice, name: str) -> bytes:
    """A file's bytes from the FAT partition (mtype would translate line ends: mcopy to stdout)."""
    return run("mcopy", "-n", "-i", f"{img}@@{s.offset}", f"::/{name}", "-", env={"MTOOLS_SKIP_CHECK": "1"})


def fat_list(img: Path, s: Slice) -> list[str]:
    out = run("mdir", "-b", "-i", f"{img}@@{s.offset}", "::/", env={"MTOOLS_SKIP_CHECK": "1"})
    return sorted(line.removeprefix("::/") for line in out.decode().splitlines() if line.strip())

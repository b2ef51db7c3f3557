"""Write a kiosk image to an SD card with its block map, then prove it by reading it back.

Why so careful: the technician's laptop has its own disk one letter away from the card. We refuse
a disk that is mounted, holds swap or the running system, a partition instead of a whole disk, and
anything that is not a block device or a regular file (a file is the stand-in tests and
`--to-file` copies use). The caller asks before writing (cli.py); this module only does what it
is told, checks every range it reads from the image against the block map, and hashes every
range it wrote after dropping the page cache so the bytes come from the card.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from . import bmap as bmaps

SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var", "/home")


class FlashError(RuntimeError):
    """A refused target, an image that does not match its block map, or a card that read back wrong."""


@dataclass(frozen=True)
class Target:
    path: Path
    kind: str  # "disk" or "file"
    size: int | None  # bytes; None for a file that grows
    model: str


@dataclass(frozen=True)
class Report:
    image: Path
    target: Path
    mapped_bytes: int
    ranges: int
    write_s: float
    verify_s: float

    def __str__(self) -> str:
        mib = self.mapped_bytes / 2**20
        return (f"wrote {mib:.1f} MiB of {self.image} in {self.ranges} ranges to {self.target} "
                f"in {self.write_s:.1f} s ({mib / max(self.write_s, 1e-6):.1f} MiB/s); read back and verified "
                f"every written range by SHA-256 against the block map in {self.verify_s:.1f} s")


def _sys_block(rdev: int) -> Path:
    return Path("/sys/dev/block") / f"{os.major(rdev)}:{os.minor(rdev)}"


def _whole_disks(rdev: int) -> set[str]:
    """The whole disks under a block device: a partition's parent, a dm/md device's members."""
    node = _sys_block(rdev)
    if not node.exists():
        return set()
    seen: set[str] = set()
    todo = [node.resolve()]
    while todo:
        p = todo.pop()
        if (p / "partition").exists():
            p = p.parent
        slaves = sorted((p / "slaves").glob("*")) if (p / "slaves").is_dir() else []
        if slaves:
            todo += [s.resolve() for s in slaves]
        else:
            seen.add(p.name)
    return seen


def _mounts() -> list[tuple[int, str]]:
    """(device number, mount point) of every mount and swap device."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        major, minor = fields[2].split(":")
        found.append((os.makedev(int(major), int(minor)), fields[4].replace("\\040", " ")))
    try:
        swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        swaps = []
    for line in swaps:
        name = line.split()[0]
        try:
            st = os.stat(name)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            found.append((st.st_rdev, "[swap]"))
    return found


def problems(path: Path, image: Path | None = None) -> list[str]:
    """Why `path` must not be written, or [] when it may. Reads only; opens nothing for writing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [] if path.parent.is_dir() else [f"{path}: no such device or directory"]
    if stat.S_ISREG(st.st_mode):
        if image is not None and image.exists() and os.path.samefile(path, image):
            return [f"{path} is the image itself"]
        return []
    if not stat.S_ISBLK(st.st_mode):
        return [f"{path} is neither a block device nor a regular file"]
    node = _sys_block(st.st_rdev).resolve()
    why = []
    if (node / "partition").exists():
        why.append(f"{path} is a partition of /dev/{node.parent.name}: give the whole card")
    disks = _whole_disks(st.st_rdev)
    for dev, where in _mounts():
        if disks & _whole_disks(dev):
            why.append(f"{path} is in use: {'swap' if where == '[swap]' else 'mounted at ' + where}")
            if where in SYSTEM_MOUNTS or where == "[swap]":
                why.append(f"{path} holds the running system ({where})")
    if (node / "ro").exists() and (node / "ro").read_text().strip() == "1":
        why.append(f"{path} is read-only (the card's lock switch?)")
    return list(dict.fromkeys(why))


def describe(path: Path) -> Target:
    st = os.stat(path) if path.exists() else None
    if st is None or stat.S_ISREG(st.st_mode):
        return Target(path, "file", None, "regular file")
    node = _sys_block(st.st_rdev).resolve()
    size = int((node / "size").read_text()) * 512
    model = " ".join(filter(None, ((node / "device" / f).read_text().strip()
                                   if (node / "device" / f).exists() else "" for f in ("vendor", "model"))))
    return Target(path, "disk", size, model or "unknown model")


def load_bmap(image: Path, bmap_file: Path | None) -> bmaps.Bmap:
    path = bmap_file or bmaps.bmap_path(image)
    if not path.exists():
        raise FlashError(f"no block map {path}: make one with `kiosk-provision image bmap {image}`")
    bm = bmaps.loads(path.read_text())
    if bm.image_size != image.stat().st_size:
        raise FlashError(f"{path} describes a {bm.image_size}-byte image, {image} has {image.stat().st_size} bytes")
    return bm


def flash(image: Path, target: Path, bm: bmaps.Bmap, progress=None) -> Report:
    """Write the mapped ranges, fsync, drop the cache, read back and hash. Call problems() first."""
    why = problems(target, image)
    if why:
        raise FlashError("; ".join(why))
    t = describe(target)
    if t.size is not None and t.size < bm.image_size:
        raise FlashError(f"{target} holds {t.size} bytes, the image needs {bm.image_size}")
    t0 = time.monotonic()
    flags = os.O_WRONLY | (os.O_CREAT if t.kind == "file" else os.O_EXCL)
    fd = os.open(target, flags, 0o644)
    try:
        if t.kind == "file" and os.fstat(fd).st_size < bm.image_size:
            os.ftruncate(fd, bm.image_size)
        with open(image, "rb") as src:
            for r in bm.ranges:
                _copy_range(src, fd, r, bm.image_size, progress)
        os.fsync(fd)
    finally:
        os.close(fd)
    t1 = time.monotonic()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read the card, not our own page cache
        with os.fdopen(fd, "rb", closefd=False) as back:
            for r in bm.ranges:
                got = bmaps.hash_range(back, r.offset, r.length(bm.image_size), progress)
                if got != r.sha256:
                    raise FlashError(f"{target}: blocks {r.first}-{r.last} read back wrong (sha256 {got[:16]}…, "
                                     f"expected {r.sha256[:16]}…): the card may be failing or fake")
    finally:
        os.close(fd)
    return Report(image, target, bm.mapped_bytes, len(bm.ranges), t1 - t0, time.monotonic() - t1)


def _copy_range(src, fd: int, r: bmaps.Range, image_size: int, progress) -> None:
    import hashlib

    h = hashlib.sha256()
    src.seek(r.offset)
    left, pos = r.length(image_size), r.offset
    while left:
        chunk = src.read(min(bmaps.CHUNK, left))
        if not chunk:
            raise FlashError(f"image ends early at byte {pos}")
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
        left -= len(chunk)
        if progress is not None:
            progress(len(chunk))
    if h.hexdigest() != r.sha256:
        raise FlashError(f"the image's blocks {r.first}-{r.last} do not match the block map: "
                         "the image is damaged or is not the one the map was made for")

"""`kiosk-provision bundle`: a signed update bundle from a built image's root slot.

Why from the image: the update is the same root a new card would get, so a release is built once
(`image build`) and goes out both ways. The slot's ext4 is cut out of the image, its
/etc/kiosk/release set to the bundle's version (and any other file replaced, with `files`) with
debugfs, shrunk to its smallest size with resize2fs -M (a bundle carries the root's data, not the
slot's free space), then signed (provisioning/updates.py). All on plain files: no mounts, no root.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from .disk import DiskError, partitions, run
from .updates import Header, make_bundle

ROOT_A = 1  # index in the partition list: boot, rootA, rootB, data


def cut_slot(image: Path, out: Path) -> None:
    """Slot A's partition as its own file (sparse: runs of zeros are skipped)."""
    s = partitions(image)[ROOT_A]
    run("dd", f"if={image}", f"of={out}", "bs=4M", f"skip={s.offset}", f"count={s.size}",
        "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none")


def set_files(fs: Path, files: dict[str, bytes]) -> None:
    """Replace files in an ext4 image with debugfs (the parent directories must exist)."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, data) in enumerate(sorted(files.items())):
            local = Path(tmp) / str(i)
            local.write_bytes(data)
            local.chmod(0o644)
            run("debugfs", "-w", "-R", f"rm {path}", str(fs))  # absent is fine: debugfs says so and goes on
            run("debugfs", "-w", "-R", f"write {local} {path}", str(fs))
            if run("debugfs", "-R", f"cat {path}", str(fs)) != data:  # debugfs exits 0 on its own errors
                raise DiskError(f"could not write {path} into the slot's file system (does its directory exist?)")


def shrink(fs: Path) -> int:
    """resize2fs -M, then cut the file to the file system's new size; returns it in bytes."""
    run("e2fsck", "-fy", str(fs))
    run("resize2fs", "-M", str(fs))
    info = run("dumpe2fs", "-h", str(fs)).decode()
    blocks = int(re.search(r"^Block count:\s+(\d+)", info, re.M).group(1))
    size = int(re.search(r"^Block size:\s+(\d+)", info, re.M).group(1))
    with open(fs, "r+b") as f:
        f.truncate(blocks * size)
    return blocks * size


def from_image(image: Path, out: Path, version: str, key: Path, files: dict[str, bytes] | None = None,
               progress=None) -> Header:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fs = Path(tmp) / "slot.ext4"
        cut_slot(image, fs)
        set_files(fs, {"/etc/kiosk/release": version.encode() + b"\n", **(files or {})})
        shrink(fs)
        return make_bundle(fs, out, version, key, progress)


__all__ = ["from_image"]

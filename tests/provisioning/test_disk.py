"""Partitions made and read without mounts: layout, contents, reproducibility, block maps."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from provisioning import bmap as bmaps
from provisioning.disk import DiskError, assemble, boot_slice, fat_list, fat_read, partitions

from .conftest import small_parts, tool


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_and_contents_without_mounts(image: Path) -> None:
    s = partitions(image)
    assert [(p.number, p.type) for p in s] == [(1, "c"), (2, "83"), (3, "83"), (4, "83")]
    assert s[0].offset == 4 * 2**20 and s[0].size == 33 * 2**20
    assert fat_list(image, s[0]) == ["config.txt"]
    assert fat_read(image, s[0], "config.txt") == b"arm_64bit=1\n"
    out = subprocess.run([tool("debugfs"), "-R", "cat /etc/hostname", f"{image}?offset={s[1].offset}"],
                         capture_output=True, check=True)
    assert out.stdout == b"kiosk\n"
    out = subprocess.run([tool("debugfs"), "-R", "stats", f"{image}?offset={s[3].offset}"], capture_output=True,
                         text=True, check=True)
    assert "Filesystem volume name:   data" in out.stdout


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    parts = small_parts(tmp_path / "src")
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    assemble(a, parts, epoch=1_700_000_000)
    assemble(b, parts, epoch=1_700_000_000)
    assert sha(a) == sha(b)
    c = tmp_path / "c.img"
    assemble(c, parts, epoch=1_700_000_001)
    assert sha(c) != sha(a)  # the epoch reaches the bytes: the check above can fail


def test_not_an_image_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x00" * 2**20)
    with pytest.raises(DiskError, match="no partition table"):
        boot_slice(junk)
    with pytest.raises(DiskError, match="no such image"):
        boot_slice(tmp_path / "missing.img")


def test_block_map_round_trip_and_bmaptool_agrees(image: Path, tmp_path: Path) -> None:
    bm = bmaps.create(image)
    assert 0 < bm.mapped_bytes < bm.image_size // 4  # sparse: mostly holes
    text = bmaps.dumps(bm)
    assert bmaps.loads(text) == bm
    with pytest.raises(bmaps.BmapError, match="own checksum"):
        bmaps.loads(text.replace("</BlockMap>", "<Range chksum=\"00\"> 99999 </Range></BlockMap>"))
    # bmaptool reads our map and writes the image with it ...
    ours = bmaps.write(image)
    copy = tmp_path / "copy.img"
    subprocess.run([tool("bmaptool"), "copy", "--bmap", str(ours), str(image), str(copy)], check=True,
                   capture_output=True)
    assert sha(copy) == sha(image)
    # ... and we read bmaptool's map of the same image to the same ranges
    theirs = tmp_path / "theirs.bmap"
    subprocess.run([tool("bmaptool"), "create", "-o", str(theirs), str(image)], check=True, capture_output=True)
    assert bmaps.loads(theirs.read_text()).ranges == bm.ranges

"""The image's block map: which blocks hold data, with a SHA-256 per range.

Why: an SD image is mostly empty space; writing only the mapped blocks makes flashing a 2 GiB
image take seconds of data instead of minutes of zeros, and the per-range checksums let the
flasher check both the image it reads and the card it wrote. The file format is bmaptool's
version 2.0 (bmap-tools, https://github.com/yoctoproject/bmaptool, docs/provisioning.md) so a
technician can also use `bmaptool copy`; we read and write it ourselves to check every byte.

Mapped = not a hole in the (sparse) image file, found with SEEK_DATA/SEEK_HOLE.
"""
from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

BLOCK = 4096
CHUNK = 1024 * 1024


class BmapError(ValueError):
    """A block map that does not parse, does not fit the image, or whose own checksum is wrong."""


@dataclass(frozen=True)
class Range:
    first: int  # block numbers, inclusive
    last: int
    sha256: str

    @property
    def offset(self) -> int:
        return self.first * BLOCK

    def length(self, image_size: int) -> int:
        return min((self.last + 1) * BLOCK, image_size) - self.offset


@dataclass(frozen=True)
class Bmap:
    image_size: int
    ranges: tuple[Range, ...]

    @property
    def mapped_bytes(self) -> int:
        return sum(r.length(self.image_size) for r in self.ranges)


def data_extents(path: Path) -> list[tuple[int, int]]:
    """(first block, last block) of the file's data, holes left out."""
    extents: list[tuple[int, int]] = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        fd, pos = f.fileno(), 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole from here on
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            first, last = start // BLOCK, (end - 1) // BLOCK
            if extents and first <= extents[-1][1] + 1:
                extents[-1] = (extents[-1][0], max(last, extents[-1][1]))
            else:
                extents.append((first, last))
            pos = end
    return extents


def hash_range(f, offset: int, length: int, progress=None) -> str:
    h = hashlib.sha256()
    f.seek(offset)
    left = length
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise BmapError(f"short read at byte {offset + length - left}")
        h.update(chunk)
        left -= len(chunk)
        if progress is not None:
            progress(len(chunk))
    return h.hexdigest()


def create(image: Path, progress=None) -> Bmap:
    size = image.stat().st_size
    ranges = []
    with open(image, "rb") as f:
        for first, last in data_extents(image):
            r = Range(first, last, "")
            ranges.append(Range(first, last, hash_range(f, r.offset, r.length(size), progress)))
    return Bmap(size, tuple(ranges))


def dumps(bmap: Bmap) -> str:
    blocks = (bmap.image_size + BLOCK - 1) // BLOCK
    mapped = sum(r.last - r.first + 1 for r in bmap.ranges)
    lines = ['<?xml version="1.0" ?>', "<!-- kiosk-provision block map (bmaptool format 2.0) -->",
             '<bmap version="2.0">', f"    <ImageSize> {bmap.image_size} </ImageSize>",
             f"    <BlockSize> {BLOCK} </BlockSize>", f"    <BlocksCount> {blocks} </BlocksCount>",
             f"    <MappedBlocksCount> {mapped} </MappedBlocksCount>", "    <ChecksumType> sha256 </ChecksumType>",
             f"    <BmapFileChecksum> {'0' * 64} </BmapFileChecksum>", "    <BlockMap>"]
    for r in bmap.ranges:
        span = f"{r.first}" if r.first == r.last else f"{r.first}-{r.last}"
        lines.append(f'        <Range chksum="{r.sha256}"> {span} </Range>')
    lines += ["    </BlockMap>", "</bmap>", ""]
    text = "\n".join(lines)
    # bmaptool: the file's own SHA-256, computed with the field holding 64 zeros.
    return text.replace("0" * 64, hashlib.sha256(text.encode()).hexdigest(), 1)


def loads(text: str) -> Bmap:
    zeroed = re.sub(r"(<BmapFileChecksum>\s*)([0-9a-fA-F]{64})", lambda m: m.group(1) + "0" * 64, text, count=1)
    try:
        root = ET.fromstring(text)
        if root.tag != "bmap" or not root.get("version", "").startswith("2."):
            raise BmapError(f"not a version 2 block map (root {root.tag!r}, version {root.get('version')!r})")
        if int(root.findtext("BlockSize", "0")) != BLOCK or root.findtext("ChecksumType", "").strip() != "sha256":
            raise BmapError(f"only {BLOCK}-byte blocks with sha256 checksums are supported")
        own = root.findtext("BmapFileChecksum", "").strip()
        if own != hashlib.sha256(zeroed.encode()).hexdigest():
            raise BmapError("the block map's own checksum does not match: the file was changed or cut short")
        size = int(root.findtext("ImageSize", ""))
        ranges = []
        for el in root.iter("Range"):
            span = (el.text or "").strip().split("-")
            first, last = int(span[0]), int(span[-1])
            if last < first or (ranges and first <= ranges[-1].last) or last * BLOCK >= size:
                raise BmapError(f"range {el.text!r} is out of order or beyond the image")
            ranges.append(Range(first, last, el.get("chksum", "")))
    except (ET.ParseError, ValueError) as exc:
        if isinstance(exc, BmapError):
            raise
        raise BmapError(f"block map does not parse: {exc}") from None
    return Bmap(size, tuple(ranges))


def write(image: Path, out: Path | None = None, progress=None) -> Path:
    out = out or image.with_name(image.name + ".bmap")
    out.write_text(dumps(create(image, progress)))
    return out


def bmap_path(image: Path) -> Path:
    """kiosk.img → kiosk.img.bmap (bmaptool also looks for kiosk.bmap)."""
    for p in (image.with_name(image.name + ".bmap"), image.with_suffix(".bmap")):
        if p.exists():
            return p
    return image.with_name(image.name + ".bmap")

"""kiosk-provision flash: block map writes, refusals, the question, read-back verification."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import bmap as bmaps
from provisioning.flash import FlashError, flash, problems
from tests.support.fakecard import FakeCard


def provision(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "provisioning.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mounted_block_device() -> Path:
    """A block device this machine has mounted (its root disk, in CI too)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        major, minor = (int(x) for x in f[2].split(":"))
        node = Path(f"/sys/dev/block/{major}:{minor}")
        if major and node.exists():
            dev = Path("/dev") / node.resolve().name
            if dev.exists():
                return dev
    raise AssertionError("no mounted block device found: where does / live?")


def test_flash_to_file_writes_and_verifies(image: Path, tmp_path: Path) -> None:
    assert provision("image", "bmap", str(image)).returncode == 0
    target = tmp_path / "card.img"
    r = provision("flash", str(image), str(target), "--yes")
    assert r.returncode == 0, r.stderr
    assert "read back and verified" in r.stdout and str(target) in r.stdout
    assert sha(target) == sha(image)  # a fresh file: the unmapped holes read as zeros, as in the image


def test_flash_over_an_old_card_rewrites_every_mapped_block(image: Path, tmp_path: Path) -> None:
    bm = bmaps.loads(bmaps.write(image).read_text())
    target = tmp_path / "old.img"
    target.write_bytes(os.urandom(bm.image_size))
    report = flash(image, target, bm)
    assert report.mapped_bytes == bm.mapped_bytes and report.ranges == len(bm.ranges)
    with open(target, "rb") as f:
        for r in bm.ranges:
            assert bmaps.hash_range(f, r.offset, r.length(bm.image_size)) == r.sha256


def test_system_disk_is_refused_before_anything_is_opened() -> None:
    dev = mounted_block_device()
    why = problems(dev)
    assert any("mounted at" in w for w in why), why
    assert any("running system" in w for w in why), why
    r = provision("flash", "/nonexistent.img", str(dev), "--yes")
    assert r.returncode == 1 and "refusing to write" in r.stderr and "mounted at" in r.stderr


def test_other_targets_refused(image: Path, tmp_path: Path) -> None:
    assert problems(Path("/dev/null")) == ["/dev/null is neither a block device nor a regular file"]
    assert problems(image, image) == [f"{image} is the image itself"]
    assert "no such device" in problems(tmp_path / "no" / "card")[0]
    assert problems(tmp_path / "new.img") == []


def test_asks_and_no_means_nothing_written(image: Path, tmp_path: Path) -> None:
    bmaps.write(image)
    target = tmp_path / "card.img"
    target.write_bytes(b"\xaa" * 4096)
    r = provision("flash", str(image), str(target))  # no terminal, no --yes
    assert r.returncode == 1 and "pass --yes" in r.stderr
    # on a terminal: the question, then 'no'
    import pty

    leader, follower = pty.openpty()
    os.write(leader, b"no\n")
    r = subprocess.run([sys.executable, "-m", "provisioning.cli", "flash", str(image), str(target)],
                       stdin=follower, capture_output=True, text=True, timeout=60)
    os.close(follower)
    os.close(leader)
    assert r.returncode == 1 and "nothing written" in r.stderr and "everything on it will be lost" in r.stderr
    assert target.read_bytes() == b"\xaa" * 4096
    leader, follower = pty.openpty()
    os.write(leader, b"yes\n")
    r = subprocess.run([sys.executable, "-m", "provisioning.cli", "flash", str(image), str(target)],
                       stdin=follower, capture_output=True, text=True, timeout=60)
    os.close(follower)
    os.close(leader)
    assert r.returncode == 0, r.stderr
    assert sha(target) == sha(image)


def test_damaged_image_and_stale_block_map_refused(image: Path, tmp_path: Path) -> None:
    bm = bmaps.loads(bmaps.write(image).read_text())
    last = bm.ranges[-1]
    with open(image, "r+b") as f:  # one flipped byte inside a mapped range
        f.seek(last.offset)
        b = f.read(1)
        f.seek(last.offset)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(FlashError, match="do not match the block map"):
        flash(image, tmp_path / "card.img", bm)
    with open(image, "ab") as f:
        f.write(b"\0" * 4096)
    r = provision("flash", str(image), str(tmp_path / "card2.img"), "--yes")
    assert r.returncode == 1 and "describes a" in r.stderr


def test_fake_capacity_card_fails_verification(image: Path, tmp_path: Path) -> None:
    bm = bmaps.loads(bmaps.write(image).read_text())
    with FakeCard(tmp_path / "mnt", size=bm.image_size, real=bm.image_size // 2) as card:
        r = provision("flash", str(image), str(card), "--yes")
    assert r.returncode == 1, r.stdout
    assert "read back wrong" in r.stderr and "fake" in r.stderr

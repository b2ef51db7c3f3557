"""A small kiosk-shaped image, assembled without mounts (sfdisk, mkfs.vfat --offset, mke2fs -d).

Built once per session into a session temp dir; each test gets its own sparse copy.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provisioning import certs
from provisioning.disk import Part, assemble

UUIDS = ["6b696f73-6b00-4000-8000-00000000000" + c for c in "abc"]


def small_parts(src: Path) -> list[Part]:
    (src / "boot").mkdir(parents=True, exist_ok=True)
    (src / "boot" / "config.txt").write_text("arm_64bit=1\n")
    (src / "root" / "etc").mkdir(parents=True, exist_ok=True)
    (src / "root" / "etc" / "hostname").write_text("kiosk\n")
    (src / "root" / "opt" / "kioskd").mkdir(parents=True, exist_ok=True)
    (src / "root" / "opt" / "kioskd" / "blob").write_bytes(bytes(range(256)) * 4096)  # 1 MiB of data
    return [Part("boot", "vfat", 33, src / "boot"), Part("rootA", "ext4", 16, src / "root", UUIDS[0]),
            Part("rootB", "ext4", 16, None, UUIDS[1]), Part("data", "ext4", 8, None, UUIDS[2])]


@pytest.fixture(scope="session")
def template_image(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("template")
    img = d / "kiosk.img"
    assemble(img, small_parts(d / "src"), epoch=1_700_000_000)
    return img


@pytest.fixture
def image(template_image, tmp_path) -> Path:
    out = tmp_path / "kiosk.img"
    subprocess.run(["cp", "--sparse=always", str(template_image), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def fleet_ca(tmp_path_factory) -> certs.CA:
    return certs.mint_ca(tmp_path_factory.mktemp("ca"))


def sparse_copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} missing: ./dev installs apt-packages.txt"
    return path

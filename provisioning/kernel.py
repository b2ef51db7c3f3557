"""Which kernel and boot firmware an image gets: Raspberry Pi OS's when its archive answers,
Debian's arm64 kernel otherwise.

Why a probe, not a flag: a real kiosk needs the Pi's own kernels (rpi-v8 for the Pi 4, rpi-2712
for the Pi 5: their device trees, display, camera and GPIO drivers) and the boot firmware, which
only archive.raspberrypi.com carries. A build machine that cannot reach it (CI, an offline site)
still makes an image, with Debian's arm64 kernel, which boots under qemu but not on a Pi: the
build says so loudly. `--simulate` images never ask: they are made for qemu.

The archive's key is fetched over HTTPS from the archive itself (trust on first use, as Raspberry
Pi's own instructions do) and handed to mmdebstrap with Debian's keyring (`--keyring DIR`); the
image also gets raspberrypi-archive-keyring.
"""
from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PI_ARCHIVE = "http://archive.raspberrypi.com/debian"
PI_KEY_URL = "https://archive.raspberrypi.com/debian/raspberrypi.gpg.key"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
PROBE_TIMEOUT_S = 5.0
# Raspberry Pi OS bookworm: the Pi 4 and Pi 5 kernels, the boot firmware (start4.elf, fixup4.dat,
# installed to /usr/lib/raspi-firmware), the archive's keyring, and the Pi camera's Python library.
PI_PACKAGES = ["raspberrypi-archive-keyring", "linux-image-rpi-v8", "linux-image-rpi-2712", "raspi-firmware",
               "python3-picamera2"]
DEBIAN_PACKAGES = ["linux-image-arm64"]


@dataclass(frozen=True)
class KernelSource:
    name: str  # "raspberrypi" | "debian"
    packages: list[str]  # added to mmdebstrap's --include
    sources: list[str]  # apt source lines beyond Debian's
    keyring: Path | None  # mmdebstrap --keyring DIR: Debian's keyring and the Pi archive's key
    why: str  # for the build output and the build log

    @property
    def for_pi(self) -> bool:
        return self.name == "raspberrypi"


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read(1 << 20)


def probe(suite: str, timeout: float = PROBE_TIMEOUT_S,
          get: Callable[[str, float], bytes] = _get) -> tuple[bytes | None, str]:
    """The Pi archive's signing key if the archive answers within `timeout` (its key and this
    suite's Release file), else None and why."""
    try:
        key = get(PI_KEY_URL, timeout)
        get(f"{PI_ARCHIVE}/dists/{suite}/InRelease", timeout)
    except Exception as exc:  # DNS, refused, timeout, HTTP error, TLS: all mean "not reachable"
        return None, f"{type(exc).__name__}: {exc}"
    if b"BEGIN PGP PUBLIC KEY BLOCK" not in key:
        return None, f"{PI_KEY_URL} is not an OpenPGP key"
    return key, ""


def debian(why: str) -> KernelSource:
    return KernelSource("debian", list(DEBIAN_PACKAGES), [], None, why)


def choose(simulate: bool, suite: str, work: Path,
           probe: Callable[[str], tuple[bytes | None, str]] = probe) -> KernelSource:
    """Raspberry Pi OS's kernels and firmware for a real image when the archive answers, else Debian's."""
    if simulate:
        return debian("Debian's arm64 kernel: a --simulate image is made for qemu")
    key, error = probe(suite)
    if key is None:
        return debian(f"WARNING: {PI_ARCHIVE} is not reachable ({error}): this image has Debian's arm64 kernel "
                      "and no Raspberry Pi firmware; it boots under qemu, NOT on a Raspberry Pi")
    keyring = work / "keyrings"
    shutil.rmtree(keyring, ignore_errors=True)
    keyring.mkdir(parents=True)
    shutil.copy(DEBIAN_KEYRING, keyring / DEBIAN_KEYRING.name)
    (keyring / "raspberrypi-archive.asc").write_bytes(key)  # apt reads armoured keys by the .asc name
    return KernelSource("raspberrypi", list(PI_PACKAGES), [f"deb {PI_ARCHIVE} {suite} main"], keyring,
                        f"Raspberry Pi kernels (rpi-v8: Pi 4, rpi-2712: Pi 5) and firmware from {PI_ARCHIVE}")

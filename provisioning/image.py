"""`kiosk-provision image build`: a Debian bookworm arm64 SD image that boots straight into kioskd.

Why built this way:
- mmdebstrap makes the root from Debian's archive; arm64 maintainer scripts run under
  qemu-user-static through binfmt_misc (the only emulated step).
- The kernel package is installed with update-initramfs diverted to /bin/true: initramfs-tools
  under emulation is most of a 14-minute build. We make a small initrd ourselves (busybox + the modules that find and mount the
  root: virtio for qemu, mmc for the Pi), so booting under `qemu -kernel -initrd` is direct.
- A real (not --simulate) image gets Raspberry Pi OS's kernels and boot firmware when
  archive.raspberrypi.com answers, Debian's arm64 kernel otherwise (provisioning/kernel.py), and
  what the customer's screen, the camera and the GPIO need (REAL_PACKAGES, REAL_WHEELS, real_kiosk).
  A --simulate image leaves them out: it is for qemu, and CI builds it.
- The project goes into a venv at /opt/kioskd/venv built on the host: `pip --target` with
  aarch64 wheels for its dependencies and the project's own pure-Python wheel, so pip never runs
  under emulation. pyscard has no aarch64 wheel: Debian's python3-pyscard is used through the
  venv's system site packages.
- Root slots A and B are read-only ext4; /var/lib/kiosk (journal, outbox, TLS, update state) is
  the data partition; /boot/firmware is the FAT partition with the kiosk's identity.
Partitions are assembled without mounts (provisioning/disk.py); a .bmap goes beside the image.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from controller import __version__

from .disk import DiskError, Part, assemble, run
from .kernel import KernelSource, choose as choose_kernel

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"  # a real kiosk's Chromium comes from here
PACKAGES = ["systemd", "systemd-sysv", "udev", "dbus", "python3", "python3-pyscard", "pcscd", "libpq5",
            "ca-certificates", "iproute2", "busybox-static", "kmod", "netbase"]
# A real kiosk only: the customer's screen (systemd/kiosk-ui.service: cage + Chromium on tty1 in a
# logind session, Noto CJK for the Chinese text, Mesa's V3D/VC4 drivers for the Pi's GPU).
REAL_PACKAGES = ["cage", "chromium", "fonts-noto-cjk", "libpam-systemd", "libgl1-mesa-dri"]
# ... and into its venv: gpiozero's lgpio pin factory (the panel, the GPIO dispenser), OpenCV for a
# USB camera and the face check. numpy < 2: Debian's and the Pi archive's compiled modules (the Pi
# camera's python3-picamera2 and its simplejpeg) are built against numpy 1.24 and fail under 2.x.
REAL_WHEELS = ["lgpio ~= 0.2", "opencv-python-headless >= 4.9, < 5", "numpy < 2"]
WHEEL_PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "linux_aarch64"]
REAL_WHEEL_PLATFORMS = WHEEL_PLATFORMS + ["manylinux_2_34_aarch64"]  # lgpio's; bookworm has glibc 2.36
KIOSK_UI_UID = 989  # systemd/kiosk-ui.service's User= and Group=
# Modules the initrd loads to reach the root file system (qemu virt; the Pi's SD host).
INITRD_MODULES = ["virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "vfat",
                  "nls_cp437", "nls_ascii", "nls_utf8", "sdhci_iproc", "sdhci_brcmstb", "mmc_block"]
ROOT_UUIDS = {"rootA": "6b696f73-6b00-4a00-8000-00000000000a", "rootB": "6b696f73-6b00-4b00-8000-00000000000b",
              "data": "6b696f73-6b00-4d00-8000-00000000000d"}
# Sizes in MiB: a root holds Debian (~300 MiB) + the venv (~120 MiB) with room for updates.
VENV = "/opt/kioskd/venv"  # systemd/kioskd.service's ExecStart runs VENV/bin/kioskd
SIZES = {"boot": 128, "rootA": 900, "rootB": 900, "data": 256}
# A real image's root also holds Chromium, its libraries, Noto CJK and OpenCV (~900 MiB more, from
# the packages' Installed-Size): each slot 2400 MiB, the image ~5 GiB (an 8 GB card).
REAL_SIZES = {"boot": 256, "rootA": 2400, "rootB": 2400, "data": 256}

INIT = """#!/bin/busybox sh
# kiosk initrd: load the modules that reach the root, pick the root slot, mount it read-only, hand
# over to systemd. The slot (docs/provisioning.md "Updates"): partition 2 is slot A, 3 is slot B;
# the boot partition's slot.txt names the committed one; tryboot.txt names one to boot ONCE: it is
# renamed to trying.txt before that slot is mounted, so any later boot is the committed slot again.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/lib/modules/$m" 2>/dev/null; done
find_dev() { i=0; while [ $i -lt 100 ]; do findfs "$1" 2>/dev/null && return 0; i=$((i+1)); sleep 0.1; done; return 1; }
slot=A; try=
boot=$(find_dev LABEL=BOOT)
if [ -n "$boot" ] && mkdir -p /boot && mount -t vfat "$boot" /boot; then
    [ -f /boot/slot.txt ] && read slot rest < /boot/slot.txt
    if [ -f /boot/tryboot.txt ]; then
        read try rest < /boot/tryboot.txt
        mv -f /boot/tryboot.txt /boot/trying.txt
    fi
    umount /boot
fi
mkdir -p /newroot
dev=
for s in $try $slot; do
    case "$s" in A) d="${boot%1}2";; B) d="${boot%1}3";; *) continue;; esac
    if [ -n "$boot" ] && mount -o ro "$d" /newroot; then dev=$d; echo "initrd: root slot $s ($d)"; break; fi
    echo "initrd: slot $s ($d) does not mount"
done
if [ -z "$dev" ]; then  # no boot partition to follow: root= from the command line
    root=LABEL=rootA
    for a in $(cat /proc/cmdline); do case "$a" in root=*) root="${a#root=}";; esac; done
    dev=$(find_dev "$root") && mount -o ro "$dev" /newroot || { echo "initrd: no root ($root)"; exec sh; }
fi
umount /proc /sys
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot /sbin/init
"""

FSTAB = """# kiosk image: read-only root, writable data partition (docs/provisioning.md)
LABEL=data      /var/lib/kiosk  ext4  defaults,noatime,nodev,nosuid  0 2
LABEL=BOOT      /boot/firmware  vfat  defaults,noatime,uid=990,gid=990,umask=0077  0 2
tmpfs           /tmp            tmpfs mode=1777,nosuid,nodev         0 0
tmpfs           /var/tmp        tmpfs mode=1777,nosuid,nodev         0 0
tmpfs           /var/log        tmpfs mode=0755,nosuid,nodev         0 0
# systemd-logind's StateDirectory: without it writable logind fails at start on the read-only root,
# and with it `systemctl reboot` (the update's reboot, waiting on logind) and the screen's login session
tmpfs           /var/lib/systemd/linger tmpfs mode=0755,nosuid,nodev,noexec,size=1m,nofail  0 0
"""

KIOSK_TOML = """# The image's kiosk.toml: id, hall and the hall link come from the card at first boot
# (kioskd --identity /boot/firmware/kiosk-identity.toml).
[kiosk]
id = "unenrolled"
hall = "unenrolled"
simulate = {simulate}
state_dir = "/var/lib/kiosk"

[mqtt]
port = 8883
"""

# --simulate images: the money path of controller/simulated.toml on its emulators (the identity
# devices need a pcscd/vpcd the image does not carry), so a harness can serve a customer end to end.
SIMULATED_DEVICES = """
[devices.printer]
driver = "escpos"
port = "sim:escpos"
paper_width_chars = 32

[devices.cards]
driver = "crt571"
port = "sim:crt571"

[devices.modem]
driver = "gsm-modem"
port = "sim:modem"

[devices.coin]
driver = "cctalk-coin"
port = "sim:cctalk"
echo = false

[devices.bill]
driver = "cctalk-bill"
port = "sim:cctalk"
echo = false

[devices.hopper]
driver = "cctalk-hopper"
port = "sim:cctalk"
echo = false
coin_fen = 100

[sales]
card_dispensers = {{ "3000" = "cards", "5000" = "cards", "10000" = "cards" }}
"""

DROPIN = """# kiosk image: the venv under /opt/kioskd, identity from the card, state on the data partition
[Unit]
RequiresMountsFor=/var/lib/kiosk /boot/firmware

[Service]
ExecStart=
# The hall's settings (set_config, apply_settings) on the data partition, over the slot's kiosk.toml:
# the root is read-only, and an update brings its own kiosk.toml while the hall's settings stay.
ExecStart=/opt/kioskd/venv/bin/kioskd --config /etc/kiosk/kiosk.toml --settings /var/lib/kiosk/settings.toml --identity /boot/firmware/kiosk-identity.toml
# The card's token is removed after enrolment: the boot partition must be writable for kioskd.
ReadWritePaths=/boot/firmware
# A/B updates (controller/updater.py): kioskd writes the other root slot (udev gives the kiosk
# group partitions 2 and 3) and exits 76 to reboot into it once: only that exit reboots (as root, after
# kioskd has stopped). Not FailureAction=reboot: systemd 252 fires it on every failure between
# auto-restarts, so a broken release rebooted before the trial guard could say why.
DeviceAllow=block-virtblk rw
DeviceAllow=block-mmc rw
DeviceAllow=block-blkext rw
RestartPreventExitStatus=76
ExecStopPost=+/bin/sh -c 'if [ "$$EXIT_STATUS" = 76 ]; then exec systemctl --no-block reboot; fi'

[Unit]
StartLimitIntervalSec=0
"""

SLOT_UDEV = """# A/B updates: kioskd (group kiosk) writes the root slot it is not running from (controller/updater.py)
SUBSYSTEM=="block", KERNEL=="vda[23]|mmcblk[0-9]p[23]", GROUP="kiosk", MODE="0660"
"""

TRIAL_UNIT = """[Unit]
Description=Fall back to the committed root slot when a trial boot does not commit in time
ConditionPathExists=/boot/firmware/trying.txt
RequiresMountsFor=/boot/firmware

[Service]
Type=exec
ExecStart=/opt/kioskd/venv/bin/python3 -m controller.updater guard /boot/firmware

[Install]
WantedBy=multi-user.target
"""

# --simulate images only (tests, demo): kioskd's local API (kioskctl's socket) on TCP port 7001, so a
# harness outside the VM can play the customer. Never in a real kiosk's image.
API_SOCKET = """[Unit]
Description=kioskd's local API on TCP (simulated kiosks only)

[Socket]
ListenStream=7001

[Install]
WantedBy=sockets.target
"""
API_PROXY = """[Unit]
Description=kioskd's local API on TCP (simulated kiosks only)
Requires=kiosk-api.socket
After=kiosk-api.socket kioskd.service

[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd /run/kiosk/kioskd.sock
"""


EMULATION_DROPIN = """# --simulate images boot under qemu's TCG, several times slower than a Pi: give kioskd time
[Service]
TimeoutStartSec=600
WatchdogSec=60
"""


class BuildError(RuntimeError):
    """The build could not go on; says which step and why."""


@dataclass(frozen=True)
class Built:
    image: Path
    bmap: Path
    kernel: Path  # beside the image too, for qemu -kernel (the Pi 4's kernel in a Pi image)
    initrd: Path
    kernel_version: str
    for_pi: bool = False  # Raspberry Pi OS's kernels and firmware (provisioning/kernel.py)


def ensure_binfmt() -> None:
    """arm64 binaries run through qemu-aarch64-static: binfmt_misc must be mounted and enabled."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        if os.geteuid() != 0:
            raise BuildError("binfmt_misc is not mounted: as root, `mount -t binfmt_misc binfmt_misc "
                             "/proc/sys/fs/binfmt_misc`")
        run("mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt))
    if not (binfmt / "qemu-aarch64").exists():
        run("update-binfmts", "--enable", "qemu-aarch64")
    if not (binfmt / "qemu-aarch64").exists():
        raise BuildError("qemu-aarch64 is not registered with binfmt_misc (apt qemu-user-static binfmt-support)")


def mmdebstrap_cmd(root: Path, kernel: KernelSource, simulate: bool) -> list[str]:
    """The root's mmdebstrap command line: Debian bookworm (with its security archive for a real
    kiosk), plus the kernel source's packages, archive and keyring."""
    packages = PACKAGES + ([] if simulate else REAL_PACKAGES) + kernel.packages
    cmd = ["mmdebstrap", "--arch=arm64", "--variant=apt", "--mode=root", "--format=directory",
           f"--include={','.join(packages)}", "--aptopt=Acquire::Retries 3",
           # the kernel without its initramfs: update-initramfs under emulation is most of a 14-minute
           # build, and we make a small initrd ourselves (make_initrd)
           '--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs',
           '--essential-hook=mkdir -p "$1"/usr/sbin && ln -sf /bin/true "$1"/usr/sbin/update-initramfs']
    if kernel.keyring is not None:
        cmd.append(f"--keyring={kernel.keyring}")
    if simulate:
        mirrors = [MIRROR]
    else:
        mirrors = [f"deb {MIRROR} {SUITE} main non-free-firmware", f"deb {MIRROR} {SUITE}-updates main",
                   f"deb {SECURITY} {SUITE}-security main", *kernel.sources]
    return cmd + [SUITE, str(root), *mirrors]


def debootstrap(root: Path, epoch: int, log, kernel: KernelSource, simulate: bool) -> None:
    ensure_binfmt()
    inside = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(root.resolve()) + "/")]
    if inside:  # a killed build can leave /dev or /proc mounted in the root: never delete through them
        raise BuildError(f"still mounted inside {root}: {', '.join(inside)}; unmount them first")
    if root.exists():
        shutil.rmtree(root)
    cmd = mmdebstrap_cmd(root, kernel, simulate)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise BuildError(f"mmdebstrap failed ({proc.returncode}); see the build log")


def find_kernel(root: Path, work: Path, flavour: str = "arm64") -> tuple[Path, str]:
    """The kernel of this flavour installed in the root (its modules stay there for udev):
    Debian's `arm64`, or the Pi's `rpi-v8` / `rpi-2712`."""
    found = sorted((root / "boot").glob(f"vmlinuz-*-{flavour}"))
    if not found:
        raise BuildError(f"no {flavour} kernel in the root's /boot (its linux-image package not installed?)")
    vmlinuz = work / found[-1].name
    shutil.copy(found[-1], vmlinuz)
    return vmlinuz, found[-1].name.removeprefix("vmlinuz-")


def _module_closure(moddir: Path, wanted: list[str]) -> list[str]:
    """Module paths (relative to moddir) for `wanted` and what they depend on, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[re.sub(r"\.ko(\.\w+)?$", "", Path(path).name).replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for d in deps.get(path, []):
            visit(d)
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


def _decompress(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        import lzma

        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def make_initrd(root: Path, version: str, out: Path, epoch: int) -> None:
    """newc cpio, gzip, files in sorted order with a fixed mtime (reproducible)."""
    moddir = root / "lib/modules" / version
    mods = _module_closure(moddir, INITRD_MODULES)
    files: dict[str, tuple[int, bytes]] = {
        "init": (0o100755, INIT.encode()),
        "bin/busybox": (0o100755, (root / "bin/busybox").read_bytes()),
        "modules.order": (0o100644, "\n".join(re.sub(r"\.(xz|zst)$", "", m) for m in mods).encode() + b"\n"),
    }
    for m in mods:
        files["lib/modules/" + re.sub(r"\.(xz|zst)$", "", m)] = (0o100644, _decompress(moddir / m))
    dirs = {"bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"}
    for name in files:
        parts = name.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    entries = [(d, 0o040755, b"") for d in sorted(dirs)] + [(n, m, b) for n, (m, b) in sorted(files.items())]
    buf = io.BytesIO()
    for ino, (name, mode, body) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        nm = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, epoch, len(body), 0, 0, 0, 0, len(nm), 0))
        buf.write(hdr.encode() + nm)
        buf.write(b"\0" * (-(110 + len(nm)) % 4))
        buf.write(body)
        buf.write(b"\0" * (-len(body) % 4))
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=epoch))


def wheels(simulate: bool) -> tuple[list[str], list[str]]:
    """What pip puts into the venv, and for which platforms: the project's dependencies (pyscard
    has no aarch64 wheel: Debian's python3-pyscard), and on a real kiosk REAL_WHEELS too."""
    deps = [d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
            if not d.startswith("pyscard")]
    return (deps, WHEEL_PLATFORMS) if simulate else (deps + REAL_WHEELS, REAL_WHEEL_PLATFORMS)


def install_project(root: Path, work: Path, log, simulate: bool = True) -> None:
    """The venv at /opt/kioskd/venv, filled on the host with aarch64 wheels (no pip under emulation).
    hall/ stays out: a kiosk never runs or imports the hall server."""
    py = sys.executable
    deps, platforms = wheels(simulate)
    pyver = next((root / "usr/lib").glob("python3.*/")).name.removeprefix("python")
    venv = root / "opt/kioskd/venv"
    site = venv / f"lib/python{pyver}/site-packages"
    site.mkdir(parents=True, exist_ok=True)
    subprocess.run([py, "-m", "pip", "install", "--no-compile", "--target", str(site), "--only-binary=:all:",
                    *(a for p in platforms for a in ("--platform", p)), "--python-version", pyver,
                    "--implementation", "cp", *deps], check=True, stdout=log, stderr=subprocess.STDOUT)
    # the project itself is pure Python: its packages copied as they are (no build step, no pip)
    for pkg in ("controller", "hal", "transactions", "provisioning", "bosssim"):
        shutil.rmtree(site / pkg, ignore_errors=True)
        shutil.copytree(REPO / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (venv / "bin").mkdir(exist_ok=True)
    for name in ("python", "python3"):
        (venv / "bin" / name).unlink(missing_ok=True)
        os.symlink("/usr/bin/python3", venv / "bin" / name)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = true\nversion = {pyver}\n")
    for script, target in (("kioskd", "controller.daemon"), ("kioskctl", "controller.kioskctl")):
        p = venv / "bin" / script
        p.write_text(f"#!/opt/kioskd/venv/bin/python3\nimport sys\nfrom {target} import main\nsys.exit(main())\n")
        p.chmod(0o755)
    shutil.rmtree(site / "bin", ignore_errors=True)
    # byte-code compiled here (same 3.11 magic): the read-only root cannot cache it, and compiling
    # at every start under emulation costs most of a minute. unchecked-hash: no mtimes (reproducible).
    subprocess.run([py, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", str(site)],
                   check=True, stdout=log, stderr=subprocess.STDOUT)


# The SoC's hardware watchdog (bcm2835-wdt: 15 s at most), fed by systemd itself: a hung kernel or
# PID 1 reboots the kiosk instead of leaving a dark screen, and a hang during an update's trial boot
# goes back to the committed slot (the initrd consumed tryboot.txt). Without a watchdog device (qemu
# -M virt has none) systemd only logs that it found none.
HW_WATCHDOG = """[Manager]
RuntimeWatchdogSec=15
RebootWatchdogSec=2min
"""


def _enable(root: Path, unit_path: str, target: str) -> None:
    """`systemctl enable` without running systemctl under emulation: the wants symlink."""
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / Path(unit_path).name
    link.unlink(missing_ok=True)
    os.symlink(unit_path, link)


def configure(root: Path, simulate: bool, release: str = "", update_key: Path | None = None) -> None:
    """Units, user, fstab, read-only root, A/B updates."""
    etc = root / "etc"
    (etc / "fstab").write_text(FSTAB)
    (etc / "hostname").write_text("kiosk\n")
    (etc / "machine-id").write_text("")  # systemd makes one per boot on a read-only root
    (etc / "kiosk").mkdir(exist_ok=True)
    (etc / "kiosk" / "kiosk.toml").write_text(KIOSK_TOML.format(simulate=str(simulate).lower())
                                              + (SIMULATED_DEVICES.format() if simulate else ""))
    for d in ("var/lib/kiosk", "boot/firmware", "var/lib/systemd/linger"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network/20-wired.network").write_text("[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n")
    for unit, target in (("systemd-networkd.service", "multi-user.target"),
                         ("systemd-networkd-wait-online.service", "network-online.target")):
        _enable(root, f"/lib/systemd/system/{unit}", target)
    (etc / "systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/journald.conf.d/kiosk.conf").write_text("[Journal]\nStorage=volatile\n")
    (etc / "systemd/system.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/system.conf.d/kiosk-watchdog.conf").write_text(HW_WATCHDOG)
    for unit in ("kioskd.service", "kiosk-ui.service"):
        src = REPO / "systemd" / unit
        if src.exists() and (unit == "kioskd.service" or not simulate):
            shutil.copy(src, etc / "systemd/system" / unit)
            _enable(root, f"/etc/systemd/system/{unit}", "multi-user.target")
    dropin = etc / "systemd/system/kioskd.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "image.conf").write_text(DROPIN)
    if simulate:
        (dropin / "emulation.conf").write_text(EMULATION_DROPIN)
        (etc / "systemd/system/kiosk-api.socket").write_text(API_SOCKET)
        (etc / "systemd/system/kiosk-api.service").write_text(API_PROXY)
        _enable(root, "/etc/systemd/system/kiosk-api.socket", "sockets.target")
    # A/B updates: the slot's version, the fleet's update key, the trial guard, the slots' device nodes
    (etc / "kiosk/release").write_text((release or __version__) + "\n")
    (etc / "kiosk/update.pub").unlink(missing_ok=True)
    if update_key is not None:
        shutil.copy(update_key, etc / "kiosk/update.pub")
    (etc / "udev/rules.d").mkdir(parents=True, exist_ok=True)
    (etc / "udev/rules.d/60-kiosk-slots.rules").write_text(SLOT_UDEV)
    (etc / "systemd/system/kiosk-trial.service").write_text(TRIAL_UNIT)
    _enable(root, "/etc/systemd/system/kiosk-trial.service", "multi-user.target")
    # the kiosk user and the groups its unit names (no useradd under emulation: plain file edits)
    for name, gid in (("kiosk", 990), ("gpio", 991), ("i2c", 992)):
        _group(etc, name, gid)
    _user(etc, "kiosk", 990, "kioskd", "/var/lib/kiosk")
    if not simulate:
        real_kiosk(root)
    for path in (root / "var/cache/apt/archives").glob("*.deb"):
        path.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists").mkdir()


def _group(etc: Path, name: str, gid: int, members: tuple[str, ...] = ()) -> None:
    """The group (made with this gid if missing), with these members added."""
    lines = (etc / "group").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split(":")[0] == name:
            fields = line.split(":")
            have = [m for m in fields[3].split(",") if m]
            fields[3] = ",".join(have + [m for m in members if m not in have])
            lines[i] = ":".join(fields)
            break
    else:
        lines.append(f"{name}:x:{gid}:{','.join(members)}")
    (etc / "group").write_text("\n".join(lines) + "\n")


def _user(etc: Path, name: str, uid: int, gecos: str, home: str) -> None:
    """A system user with its own group of the same id, no password, no shell."""
    _group(etc, name, uid)
    passwd = (etc / "passwd").read_text()
    if not re.search(rf"^{name}:", passwd, re.M):
        (etc / "passwd").write_text(passwd + f"{name}:x:{uid}:{uid}:{gecos}:{home}:/usr/sbin/nologin\n")
        with open(etc / "shadow", "a") as f:
            f.write(f"{name}:!:19000::::::\n")


# A real kiosk's hardware access: gpiozero (lgpio) opens /dev/gpiochip*, smbus2 /dev/i2c-*; kioskd
# runs as kiosk with SupplementaryGroups=gpio i2c (systemd/kioskd.service). Raspberry Pi OS ships
# such rules in raspberrypi-sys-mods; Debian does not.
HW_UDEV = """# kiosk image: kioskd (groups gpio, i2c) reaches the GPIO and I2C buses (docs/provisioning.md)
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
SUBSYSTEM=="i2c-dev", KERNEL=="i2c-[0-9]*", GROUP="i2c", MODE="0660"
"""
# kiosk-ui.service keeps Chromium's profile in StateDirectory=kiosk-ui (/var/lib/kiosk-ui): on the
# read-only root that is a tmpfs of its own, empty at every boot (Chromium runs --incognito anyway).
KIOSK_UI_FSTAB = (f"tmpfs           /var/lib/kiosk-ui tmpfs mode=0700,uid={KIOSK_UI_UID},gid={KIOSK_UI_UID},"
                  "nosuid,nodev,size=256m  0 0\n")


def real_kiosk(root: Path) -> None:
    """What a real kiosk has beyond a --simulate image: the kiosk-ui user that
    systemd/kiosk-ui.service runs cage + Chromium as (groups video, input, render; its home and
    state on a tmpfs), tty1 left to it (no getty there), and GPIO/I2C device access for kioskd."""
    etc = root / "etc"
    _user(etc, "kiosk-ui", KIOSK_UI_UID, "customer screen (cage, Chromium)", "/var/lib/kiosk-ui")
    for name, gid in (("video", 44), ("input", 995), ("render", 996)):  # Debian's ids if sysusers had not run
        _group(etc, name, gid, ("kiosk-ui",))
    (root / "var/lib/kiosk-ui").mkdir(parents=True, exist_ok=True)
    fstab = (etc / "fstab").read_text()
    if "/var/lib/kiosk-ui" not in fstab:
        (etc / "fstab").write_text(fstab + KIOSK_UI_FSTAB)
    # kiosk-ui.service Conflicts= getty@tty1: not started by getty.target either (docs/ui.md)
    (etc / "systemd/system/getty.target.wants/getty@tty1.service").unlink(missing_ok=True)
    (etc / "udev/rules.d/60-kiosk-hardware.rules").write_text(HW_UDEV)
    (etc / "modules-load.d").mkdir(parents=True, exist_ok=True)
    (etc / "modules-load.d/kiosk.conf").write_text("# smbus2 opens /dev/i2c-N (the I2C sensors)\ni2c-dev\n")


def boot_files(boot: Path, vmlinuz: Path, initrd: Path) -> None:
    boot.mkdir(parents=True, exist_ok=True)
    shutil.copy(vmlinuz, boot / "vmlinuz")
    shutil.copy(initrd, boot / "initrd.img")
    (boot / "slot.txt").write_text("A\n")  # the committed root slot (A/B updates: provisioning/updates.py)
    (boot / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=LABEL=rootA ro rootwait net.ifnames=0 quiet\n")
    (boot / "config.txt").write_text("# Raspberry Pi 4/5 (docs/provisioning.md)\narm_64bit=1\nkernel=vmlinuz\n"
                                     "initramfs initrd.img followkernel\nenable_uart=1\n")


PI_CONFIG = """# Raspberry Pi 4/5 (docs/provisioning.md): the Pi's own kernels, each with our initrd
arm_64bit=1
# the hardware watchdog armed by the firmware, so a hang before systemd feeds it reboots too
kernel_watchdog_timeout=60
enable_uart=1
dtparam=i2c_arm=on
camera_auto_detect=1
display_auto_detect=1
dtoverlay=vc4-kms-v3d
[pi4]
kernel=kernel8.img
initramfs initrd8.img followkernel
[pi5]
kernel=kernel_2712.img
initramfs initrd_2712.img followkernel
[all]
"""
PI_KERNELS = {"rpi-v8": ("kernel8.img", "initrd8.img"), "rpi-2712": ("kernel_2712.img", "initrd_2712.img")}


def pi_boot_files(root: Path, boot: Path, work: Path, epoch: int) -> tuple[Path, Path, str]:
    """The boot partition from Raspberry Pi OS's packages in the root: the firmware
    (/usr/lib/raspi-firmware), each Pi kernel with an initrd of ours (its slot choice and modules),
    the device trees and overlays. Returns the Pi 4 kernel, its initrd and version (for Built)."""
    firmware = root / "usr/lib/raspi-firmware"
    if not firmware.is_dir():
        raise BuildError("no /usr/lib/raspi-firmware in the root (raspi-firmware not installed?)")
    boot.mkdir(parents=True, exist_ok=True)
    shutil.copytree(firmware, boot, dirs_exist_ok=True)
    first: tuple[Path, Path, str] | None = None
    for flavour, (kernel_name, initrd_name) in PI_KERNELS.items():
        vmlinuz, version = find_kernel(root, work, flavour)
        initrd = work / initrd_name
        make_initrd(root, version, initrd, epoch)
        shutil.copy(vmlinuz, boot / kernel_name)
        shutil.copy(initrd, boot / initrd_name)
        dtbs = root / "usr/lib" / f"linux-image-{version}"
        for dtb in sorted(dtbs.rglob("*.dtb")):
            shutil.copy(dtb, boot / dtb.name)
        for overlays in dtbs.rglob("overlays"):
            shutil.copytree(overlays, boot / "overlays", dirs_exist_ok=True)
        first = first or (vmlinuz, initrd, version)
    assert first is not None
    (boot / "slot.txt").write_text("A\n")
    (boot / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=LABEL=rootA ro rootwait net.ifnames=0 quiet\n")
    (boot / "config.txt").write_text(PI_CONFIG)
    return first


def build(out: Path, work: Path, simulate: bool = False, epoch: int = 1_700_000_000, progress=None,
          reuse_root: bool = False, release: str = "", update_key: Path | None = None,
          say=lambda line: None) -> Built:
    """The whole build; `progress(step)` is called as each step starts, `say(line)` with what the
    technician must know (which kernel, and why). `reuse_root`: keep a root that an earlier build
    in `work` bootstrapped (iterating on the later steps)."""
    step = progress or (lambda s: None)
    work.mkdir(parents=True, exist_ok=True)
    root, boot, data = work / "root", work / "boot", work / "data"
    sizes = SIZES if simulate else REAL_SIZES
    with open(work / "build.log", "ab") as log:
        step("debootstrap (arm64, emulated)")
        done = work / "debootstrap.done"
        source = None if reuse_root and done.exists() else choose_kernel(simulate, SUITE, work)
        why = source.why if source is not None else "the kept root's (reuse_root)"
        log.write(f"kernel: {why}\n".encode())
        log.flush()
        say(f"kernel: {why}")
        if source is not None:
            done.unlink(missing_ok=True)
            debootstrap(root, epoch, log, source, simulate)
            done.touch()
        step("kernel and initrd")
        shutil.rmtree(boot, ignore_errors=True)
        for_pi = (root / "usr/lib/raspi-firmware").is_dir()
        if for_pi:
            vmlinuz, initrd, version = pi_boot_files(root, boot, work, epoch)
        else:
            vmlinuz, version = find_kernel(root, work)
            initrd = work / "initrd.img"
            make_initrd(root, version, initrd, epoch)
            boot_files(boot, vmlinuz, initrd)
        step("project venv")
        install_project(root, work, log, simulate)
        step("configure")
        configure(root, simulate, release, update_key)
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        data.chmod(0o755)
        step("partitions")
        parts = [Part("boot", "vfat", sizes["boot"], boot),
                 Part("rootA", "ext4", sizes["rootA"], root, ROOT_UUIDS["rootA"]),
                 Part("rootB", "ext4", sizes["rootB"], None, ROOT_UUIDS["rootB"]),
                 Part("data", "ext4", sizes["data"], data, ROOT_UUIDS["data"])]
        assemble(out, parts, epoch)
    from . import bmap

    step("block map")
    bm = bmap.write(out)
    kernel, rd = out.with_name(out.stem + ".vmlinuz"), out.with_name(out.stem + ".initrd")
    shutil.copy(vmlinuz, kernel)
    shutil.copy(initrd, rd)
    return Built(out, bm, kernel, rd, version, for_pi)


def stat_mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


__all__ = ["build", "Built", "BuildError", "DiskError"]

"""`kiosk-provision image build`: a Debian bookworm arm64 SD image that boots straight into kioskd.

Why built this way:
- mmdebstrap makes the root from Debian's archive; arm64 maintainer scripts run under
  qemu-user-static through binfmt_misc (the only emulated step).
- The kernel package is installed with update-initramfs diverted to /bin/true: initramfs-tools
  under emulation is most of a 14-minute build. We make a small initrd ourselves (busybox + the modules that find and mount the
  root: virtio for qemu, mmc for the Pi), so booting under `qemu -kernel -initrd` is direct.
  The Raspberry Pi OS kernel and firmware are used instead when `--pi-firmware DIR` is given
  (a directory holding the Pi's boot files; the archive is not reachable from CI).
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

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ["systemd", "systemd-sysv", "udev", "dbus", "python3", "python3-pyscard", "pcscd", "libpq5",
            "ca-certificates", "iproute2", "busybox-static", "kmod", "netbase"]
# Modules the initrd loads to reach the root file system (qemu virt; the Pi's SD host).
INITRD_MODULES = ["virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "vfat",
                  "nls_cp437", "nls_ascii", "nls_utf8", "sdhci_iproc", "sdhci_brcmstb", "mmc_block"]
ROOT_UUIDS = {"rootA": "6b696f73-6b00-4a00-8000-00000000000a", "rootB": "6b696f73-6b00-4b00-8000-00000000000b",
              "data": "6b696f73-6b00-4d00-8000-00000000000d"}
# Sizes in MiB: a root holds Debian (~300 MiB) + the venv (~120 MiB) with room for updates.
VENV = "/opt/kioskd/venv"  # systemd/kioskd.service's ExecStart runs VENV/bin/kioskd
SIZES = {"boot": 128, "rootA": 900, "rootB": 900, "data": 256}

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
ExecStart=/opt/kioskd/venv/bin/kioskd --config /etc/kiosk/kiosk.toml --identity /boot/firmware/kiosk-identity.toml
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
    kernel: Path  # beside the image too, for qemu -kernel
    initrd: Path
    kernel_version: str


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


def debootstrap(root: Path, epoch: int, log) -> None:
    ensure_binfmt()
    inside = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(root.resolve()) + "/")]
    if inside:  # a killed build can leave /dev or /proc mounted in the root: never delete through them
        raise BuildError(f"still mounted inside {root}: {', '.join(inside)}; unmount them first")
    if root.exists():
        shutil.rmtree(root)
    cmd = ["mmdebstrap", "--arch=arm64", "--variant=apt", "--mode=root", "--format=directory",
           f"--include={','.join(PACKAGES + ['linux-image-arm64'])}", "--aptopt=Acquire::Retries 3",
           # the kernel without its initramfs: update-initramfs under emulation is most of a 14-minute
           # build, and we make a small initrd ourselves (make_initrd)
           '--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs',
           '--essential-hook=mkdir -p "$1"/usr/sbin && ln -sf /bin/true "$1"/usr/sbin/update-initramfs',
           SUITE, str(root), MIRROR]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise BuildError(f"mmdebstrap failed ({proc.returncode}); see the build log")


def find_kernel(root: Path, work: Path) -> tuple[Path, str]:
    """The Debian arm64 kernel installed in the root (its modules stay there for udev)."""
    found = sorted((root / "boot").glob("vmlinuz-*"))
    if not found:
        raise BuildError("no kernel in the root's /boot (linux-image-arm64 not installed?)")
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


def install_project(root: Path, work: Path, log) -> None:
    """The venv at /opt/kioskd/venv, filled on the host with aarch64 wheels (no pip under emulation).
    hall/ stays out: a kiosk never runs or imports the hall server."""
    py = sys.executable
    deps = [d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
            if not d.startswith("pyscard")]  # no aarch64 wheel: Debian's python3-pyscard
    pyver = next((root / "usr/lib").glob("python3.*/")).name.removeprefix("python")
    venv = root / "opt/kioskd/venv"
    site = venv / f"lib/python{pyver}/site-packages"
    site.mkdir(parents=True, exist_ok=True)
    subprocess.run([py, "-m", "pip", "install", "--no-compile", "--target", str(site), "--only-binary=:all:",
                    "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
                    "--platform", "linux_aarch64", "--python-version", pyver, "--implementation", "cp",
                    *deps], check=True, stdout=log, stderr=subprocess.STDOUT)
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
    for d in ("var/lib/kiosk", "boot/firmware"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network/20-wired.network").write_text("[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n")
    for unit, target in (("systemd-networkd.service", "multi-user.target"),
                         ("systemd-networkd-wait-online.service", "network-online.target")):
        _enable(root, f"/lib/systemd/system/{unit}", target)
    (etc / "systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/journald.conf.d/kiosk.conf").write_text("[Journal]\nStorage=volatile\n")
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
    groups = (etc / "group").read_text()
    for name, gid in (("kiosk", 990), ("gpio", 991), ("i2c", 992)):
        if not re.search(rf"^{name}:", groups, re.M):
            groups += f"{name}:x:{gid}:\n"
    (etc / "group").write_text(groups)
    passwd = (etc / "passwd").read_text()
    if not re.search(r"^kiosk:", passwd, re.M):
        (etc / "passwd").write_text(passwd + "kiosk:x:990:990:kioskd:/var/lib/kiosk:/usr/sbin/nologin\n")
        with open(etc / "shadow", "a") as f:
            f.write("kiosk:!:19000::::::\n")
    for path in (root / "var/cache/apt/archives").glob("*.deb"):
        path.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists").mkdir()


def boot_files(boot: Path, vmlinuz: Path, initrd: Path) -> None:
    boot.mkdir(parents=True, exist_ok=True)
    shutil.copy(vmlinuz, boot / "vmlinuz")
    shutil.copy(initrd, boot / "initrd.img")
    (boot / "slot.txt").write_text("A\n")  # the committed root slot (A/B updates: provisioning/updates.py)
    (boot / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=LABEL=rootA ro rootwait net.ifnames=0 quiet\n")
    (boot / "config.txt").write_text("# Raspberry Pi 4/5 (docs/provisioning.md)\narm_64bit=1\nkernel=vmlinuz\n"
                                     "initramfs initrd.img followkernel\nenable_uart=1\n")


def build(out: Path, work: Path, simulate: bool = False, epoch: int = 1_700_000_000, progress=None,
          reuse_root: bool = False, release: str = "", update_key: Path | None = None) -> Built:
    """The whole build; `progress(step)` is called as each step starts. `reuse_root`: keep a root
    that an earlier build in `work` bootstrapped (iterating on the later steps)."""
    step = progress or (lambda s: None)
    work.mkdir(parents=True, exist_ok=True)
    root, boot, data = work / "root", work / "boot", work / "data"
    with open(work / "build.log", "ab") as log:
        step("debootstrap (arm64, emulated)")
        done = work / "debootstrap.done"
        if not (reuse_root and done.exists()):
            done.unlink(missing_ok=True)
            debootstrap(root, epoch, log)
            done.touch()
        step("kernel and initrd")
        vmlinuz, version = find_kernel(root, work)
        initrd = work / "initrd.img"
        make_initrd(root, version, initrd, epoch)
        step("project venv")
        install_project(root, work, log)
        step("configure")
        configure(root, simulate, release, update_key)
        shutil.rmtree(boot, ignore_errors=True)
        boot_files(boot, vmlinuz, initrd)
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        data.chmod(0o755)
        step("partitions")
        parts = [Part("boot", "vfat", SIZES["boot"], boot),
                 Part("rootA", "ext4", SIZES["rootA"], root, ROOT_UUIDS["rootA"]),
                 Part("rootB", "ext4", SIZES["rootB"], None, ROOT_UUIDS["rootB"]),
                 Part("data", "ext4", SIZES["data"], data, ROOT_UUIDS["data"])]
        assemble(out, parts, epoch)
    from . import bmap

    step("block map")
    bm = bmap.write(out)
    kernel, rd = out.with_name(out.stem + ".vmlinuz"), out.with_name(out.stem + ".initrd")
    shutil.copy(vmlinuz, kernel)
    shutil.copy(initrd, rd)
    return Built(out, bm, kernel, rd, version)


def stat_mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


__all__ = ["build", "Built", "BuildError", "DiskError"]

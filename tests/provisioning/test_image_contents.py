"""What a real (not --simulate) image holds, checked without building one: the mmdebstrap command
line, the kernel source chosen by probing archive.raspberrypi.com (never reached from here: the
probe is handed its answers), the Pi's boot partition, the venv's wheels, and the users, groups,
mounts and units that systemd/kiosk-ui.service needs. The --simulate image CI boots stays as it was."""
from __future__ import annotations

import configparser
import gzip
import tomllib
import urllib.error
from pathlib import Path

import pytest

from provisioning import image, kernel
from provisioning.kernel import PI_ARCHIVE, choose, probe

KEY = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBFo...\n-----END PGP PUBLIC KEY BLOCK-----\n"
REPO = Path(__file__).parents[2]


def unreachable(suite):
    return None, "URLError: <urlopen error [Errno -2] Name or service not known>"


def reachable(suite):
    return KEY, ""


def never(suite):
    raise AssertionError("a --simulate build must not probe the Raspberry Pi archive")


def include(cmd: list[str]) -> list[str]:
    return next(a for a in cmd if a.startswith("--include=")).removeprefix("--include=").split(",")


def test_the_simulate_image_is_built_as_before(tmp_path):
    src = choose(True, "bookworm", tmp_path, probe=never)
    cmd = image.mmdebstrap_cmd(tmp_path / "root", src, simulate=True)
    assert include(cmd) == image.PACKAGES + ["linux-image-arm64"]
    assert cmd[-3:] == ["bookworm", str(tmp_path / "root"), image.MIRROR]
    assert not any(a.startswith("--keyring") for a in cmd)
    assert not set(image.REAL_PACKAGES) & set(include(cmd))
    assert image.wheels(True)[1] == ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "linux_aarch64"]


def test_an_unreachable_pi_archive_falls_back_to_debian_and_says_so(tmp_path):
    src = choose(False, "bookworm", tmp_path, probe=unreachable)
    assert src.name == "debian" and not src.for_pi and src.keyring is None
    assert src.why.startswith("WARNING") and "NOT on a Raspberry Pi" in src.why and "Name or service" in src.why
    cmd = image.mmdebstrap_cmd(tmp_path / "root", src, simulate=False)
    pkgs = include(cmd)
    assert "linux-image-arm64" in pkgs and not {"raspi-firmware", "linux-image-rpi-v8"} & set(pkgs)
    assert {"cage", "chromium", "fonts-noto-cjk", "libpam-systemd"} <= set(pkgs)
    mirrors = cmd[cmd.index(str(tmp_path / "root")) + 1:]
    assert mirrors == ["deb http://deb.debian.org/debian bookworm main non-free-firmware",
                       "deb http://deb.debian.org/debian bookworm-updates main",
                       "deb http://deb.debian.org/debian-security bookworm-security main"]


def test_a_reachable_pi_archive_gives_its_kernels_firmware_and_keyring(tmp_path):
    src = choose(False, "bookworm", tmp_path, probe=reachable)
    assert src.for_pi and PI_ARCHIVE in src.why
    assert (src.keyring / "raspberrypi-archive.asc").read_bytes() == KEY
    assert (src.keyring / "debian-archive-keyring.gpg").read_bytes() == kernel.DEBIAN_KEYRING.read_bytes()
    cmd = image.mmdebstrap_cmd(tmp_path / "root", src, simulate=False)
    pkgs = include(cmd)
    assert {"linux-image-rpi-v8", "linux-image-rpi-2712", "raspi-firmware", "raspberrypi-archive-keyring",
            "python3-picamera2", "chromium", "cage", "fonts-noto-cjk"} <= set(pkgs)
    assert "linux-image-arm64" not in pkgs
    assert f"--keyring={src.keyring}" in cmd
    assert cmd[-1] == "deb http://archive.raspberrypi.com/debian bookworm main"


@pytest.mark.parametrize("answer, why", [
    (urllib.error.URLError("[Errno -2] Name or service not known"), "Name or service not known"),
    (TimeoutError("timed out"), "TimeoutError"),
    (ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
    (b"<html>captive portal</html>", "not an OpenPGP key"),
])
def test_the_probe_takes_any_failure_as_unreachable(answer, why):
    asked = []

    def get(url, timeout):
        asked.append((url, timeout))
        if isinstance(answer, Exception):
            raise answer
        return answer

    key, error = probe("bookworm", get=get)
    assert key is None and why in error
    assert asked[0] == (kernel.PI_KEY_URL, kernel.PROBE_TIMEOUT_S) and kernel.PROBE_TIMEOUT_S <= 10


def test_the_probe_wants_the_key_and_the_suite():
    asked = []
    key, error = probe("bookworm", get=lambda url, timeout: asked.append(url) or KEY)
    assert key == KEY and error == ""
    assert asked == [kernel.PI_KEY_URL, f"{PI_ARCHIVE}/dists/bookworm/InRelease"]


def test_the_build_says_which_kernel_in_its_output_and_log(tmp_path, monkeypatch):
    said = []

    def stop(root, epoch, log, src, simulate):
        raise image.BuildError("stopped here: the test builds nothing")

    monkeypatch.setattr(image, "debootstrap", stop)
    monkeypatch.setattr(image, "choose_kernel", lambda sim, suite, work: choose(sim, suite, work, probe=unreachable))
    with pytest.raises(image.BuildError, match="stopped here"):
        image.build(tmp_path / "kiosk.img", tmp_path / "work", simulate=False, say=said.append)
    assert said and said[0].startswith("kernel: WARNING") and "NOT on a Raspberry Pi" in said[0]
    assert said[0] in (tmp_path / "work" / "build.log").read_text()


def fake_root(tmp_path: Path) -> Path:
    """The few files of a bootstrapped root that configure() edits."""
    root = tmp_path / "root"
    etc = root / "etc"
    (etc / "systemd/system/getty.target.wants").mkdir(parents=True)
    (etc / "systemd/system/getty.target.wants/getty@tty1.service").symlink_to("/lib/systemd/system/getty@.service")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:\ninput:x:101:\nrender:x:102:\n")
    (root / "var/lib/apt").mkdir(parents=True)
    return root


def units(etc: Path, target: str) -> set[str]:
    return {p.name for p in (etc / f"systemd/system/{target}.wants").iterdir()}


def test_the_real_image_has_the_screen_user_units_and_mounts(tmp_path):
    root = fake_root(tmp_path)
    image.configure(root, simulate=False)
    etc = root / "etc"
    passwd = {l.split(":")[0]: l.split(":") for l in (etc / "passwd").read_text().splitlines()}
    group = {l.split(":")[0]: l.split(":") for l in (etc / "group").read_text().splitlines()}
    unit = (etc / "systemd/system/kiosk-ui.service").read_text()
    assert (REPO / "systemd/kiosk-ui.service").read_text() == unit
    assert {"kioskd.service", "kiosk-ui.service", "kiosk-trial.service"} <= units(etc, "multi-user.target")
    # the unit's User=, Group=, SupplementaryGroups= and StateDirectory= all exist on the image
    assert "User=kiosk-ui" in unit and "Group=kiosk-ui" in unit and "StateDirectory=kiosk-ui" in unit
    assert passwd["kiosk-ui"][2:4] == [str(image.KIOSK_UI_UID)] * 2
    assert passwd["kiosk-ui"][5:] == ["/var/lib/kiosk-ui", "/usr/sbin/nologin"]
    assert group["kiosk-ui"][2] == str(image.KIOSK_UI_UID)
    for name in ("video", "input", "render"):
        assert f"SupplementaryGroups=video input render" in unit
        assert "kiosk-ui" in group[name][3].split(","), name
    assert group["video"][2] == "44" and group["input"][2] == "101"  # the existing groups are kept, not remade
    assert any(l.startswith("kiosk-ui:!") for l in (etc / "shadow").read_text().splitlines())
    # its state on a tmpfs of its own (the root is read-only), tty1 to cage, not to a getty
    fstab = [l.split() for l in (etc / "fstab").read_text().splitlines() if l and not l.startswith("#")]
    assert ["tmpfs", "/var/lib/kiosk-ui", "tmpfs"] == fstab[-1][:3] and f"uid={image.KIOSK_UI_UID}" in fstab[-1][3]
    assert "getty@tty1.service" not in units(etc, "getty.target")
    # kioskd's GPIO (lgpio) and I2C (smbus2) devices, for its gpio and i2c groups
    rules = (etc / "udev/rules.d/60-kiosk-hardware.rules").read_text()
    assert 'KERNEL=="gpiochip*", GROUP="gpio"' in rules and 'GROUP="i2c"' in rules
    assert "i2c-dev" in (etc / "modules-load.d/kiosk.conf").read_text()
    assert {"kiosk", "gpio", "i2c"} <= group.keys() and "kiosk" in passwd


def test_the_simulate_image_has_none_of_it(tmp_path):
    root = fake_root(tmp_path)
    image.configure(root, simulate=True)
    etc = root / "etc"
    assert "kiosk-ui" not in (etc / "passwd").read_text() and "kiosk-ui" not in (etc / "group").read_text()
    assert not (etc / "systemd/system/kiosk-ui.service").exists()
    assert "kiosk-ui" not in (etc / "fstab").read_text()
    assert "getty@tty1.service" in units(etc, "getty.target")
    assert not (etc / "udev/rules.d/60-kiosk-hardware.rules").exists()


def test_the_real_venv_gets_lgpio_and_opencv(tmp_path):
    deps, platforms = image.wheels(False)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["pi"] + extras["camera"]) <= set(deps)  # the project's own extras, as pyproject says
    assert "numpy < 2" in deps and "manylinux_2_34_aarch64" in platforms  # lgpio's wheel is manylinux_2_34
    assert not any(d.startswith("pyscard") for d in deps)
    sim_deps, _ = image.wheels(True)
    assert not any(d.startswith(("lgpio", "opencv", "numpy")) for d in sim_deps)


def test_the_pi_boot_partition_from_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib/raspi-firmware").mkdir(parents=True)
    for name in ("start4.elf", "fixup4.dat", "bootcode.bin"):
        (root / "usr/lib/raspi-firmware" / name).write_bytes(name.encode())
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF busybox")
    for flavour, soc in (("rpi-v8", "bcm2711-rpi-4-b"), ("rpi-2712", "bcm2712-rpi-5-b")):
        version = f"6.6.51+rpt-{flavour}"
        (root / "boot").mkdir(exist_ok=True)
        (root / "boot" / f"vmlinuz-{version}").write_bytes(f"kernel {flavour}".encode())
        (root / "lib/modules" / version).mkdir(parents=True)
        (root / "lib/modules" / version / "modules.dep").write_text("")
        dtbs = root / "usr/lib" / f"linux-image-{version}"
        (dtbs / "broadcom").mkdir(parents=True)
        (dtbs / "broadcom" / f"{soc}.dtb").write_bytes(b"dtb")
        (dtbs / "overlays").mkdir()
        (dtbs / "overlays" / "vc4-kms-v3d.dtbo").write_bytes(b"overlay")
    boot, work = tmp_path / "boot", tmp_path / "work"
    work.mkdir()
    vmlinuz, initrd, version = image.pi_boot_files(root, boot, work, 1_700_000_000)
    assert version == "6.6.51+rpt-rpi-v8" and vmlinuz.read_bytes() == b"kernel rpi-v8"
    have = {p.relative_to(boot).as_posix() for p in boot.rglob("*") if p.is_file()}
    assert {"start4.elf", "fixup4.dat", "kernel8.img", "kernel_2712.img", "initrd8.img", "initrd_2712.img",
            "bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "overlays/vc4-kms-v3d.dtbo", "config.txt",
            "cmdline.txt", "slot.txt"} <= have
    assert (boot / "kernel_2712.img").read_bytes() == b"kernel rpi-2712"
    assert (boot / "slot.txt").read_text() == "A\n"
    config = (boot / "config.txt").read_text()
    assert "[pi4]\nkernel=kernel8.img\ninitramfs initrd8.img followkernel" in config
    assert "[pi5]\nkernel=kernel_2712.img\ninitramfs initrd_2712.img followkernel" in config
    assert b"tryboot.txt" in gzip.decompress((boot / "initrd8.img").read_bytes())  # our slot-choosing /init


def test_the_real_image_sizes(tmp_path):
    assert image.SIZES == {"boot": 128, "rootA": 900, "rootB": 900, "data": 256}  # what CI builds and boots
    total = sum(image.REAL_SIZES.values()) + 4
    assert image.REAL_SIZES["rootA"] == image.REAL_SIZES["rootB"] and total * 2**20 < 7.2e9  # an "8 GB" card


@pytest.mark.parametrize("simulate", [False, True])
def test_logind_can_start_on_the_read_only_root(tmp_path, simulate):
    """systemd-logind (StateDirectory=systemd/linger) needs /var/lib/systemd/linger writable: kiosk-ui's
    login session and `systemctl reboot` (the update's one-time boot into the other slot) go through it."""
    root = fake_root(tmp_path)
    image.configure(root, simulate=simulate)
    fstab = [l.split() for l in (root / "etc/fstab").read_text().splitlines() if l and not l.startswith("#")]
    linger = next(f for f in fstab if f[1] == "/var/lib/systemd/linger")
    assert linger[0] == linger[2] == "tmpfs" and "nofail" in linger[3].split(",")  # a boot never stops on it
    assert (root / "var/lib/systemd/linger").is_dir()


@pytest.mark.parametrize("simulate", [False, True])
def test_systemd_feeds_the_hardware_watchdog(tmp_path, simulate):
    """A hung kernel or PID 1 reboots the kiosk (and a hung trial boot returns to the committed slot)."""
    root = fake_root(tmp_path)
    image.configure(root, simulate=simulate)
    conf = configparser.ConfigParser()
    conf.read(root / "etc/systemd/system.conf.d/kiosk-watchdog.conf")
    assert 0 < int(conf["Manager"]["RuntimeWatchdogSec"]) <= 15  # bcm2835-wdt cannot be set longer
    assert conf["Manager"]["RebootWatchdogSec"]
    if not simulate:  # the Pi's firmware arms it before the kernel, for a hang before systemd
        assert "kernel_watchdog_timeout=60" in image.PI_CONFIG.splitlines()


@pytest.mark.parametrize("simulate", [False, True])
def test_the_halls_settings_go_to_the_data_partition_not_the_read_only_root(tmp_path, simulate):
    """set_config / apply_settings write kioskd's --settings file: on the data partition, which is
    writable and survives an update into the other slot."""
    root = fake_root(tmp_path)
    image.configure(root, simulate=simulate)
    dropin = (root / "etc/systemd/system/kioskd.service.d/image.conf").read_text()
    start = [l for l in dropin.splitlines() if l.startswith("ExecStart=/")]
    assert len(start) == 1 and "--settings /var/lib/kiosk/settings.toml" in start[0], start
    fstab = [l.split() for l in (root / "etc/fstab").read_text().splitlines() if l and not l.startswith("#")]
    data = next(f for f in fstab if f[1] == "/var/lib/kiosk")
    assert data[0] == "LABEL=data" and data[2] == "ext4" and "ro" not in data[3].split(","), data

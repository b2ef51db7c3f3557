"""The unit files pass `systemd-analyze verify` cleanly and stay hardened (exposure <= 2.5)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parent.parent / "systemd"


def installed_copy(unit: Path, tmp_path: Path) -> Path:
    """The unit as installed: ExecStart pointing at this venv's console scripts."""
    text = unit.read_text().replace("/opt/kioskd/venv/bin", str(Path(sys.executable).parent))
    copy = tmp_path / unit.name
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("name", ["kioskd.service", "halld.service", "kiosk-ui.service"])
def test_unit_verifies_without_a_word_on_stderr(tmp_path, name):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (apt-get install systemd)"
    unit = installed_copy(UNITS / name, tmp_path)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.parametrize("name", ["kioskd.service", "halld.service", "kiosk-ui.service"])
def test_unit_exposure_is_at_most_2_5(tmp_path, name):
    unit = installed_copy(UNITS / name, tmp_path)
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=25", str(unit)],
                         capture_output=True, text=True, cwd=tmp_path)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout).group(1))
    assert out.returncode == 0 and score <= 2.5, out.stdout[-500:]


def test_kioskd_unit_is_a_watched_notify_service():
    text = (UNITS / "kioskd.service").read_text()
    for line in ("Type=notify", "Restart=on-failure", "StateDirectory=kiosk", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "DevicePolicy=closed"):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    for group in ("dialout", "gpio", "i2c", "video"):
        assert group in re.search(r"^SupplementaryGroups=(.*)$", text, re.M).group(1)


def test_the_screen_unit_is_cage_running_chromium_kiosk_at_kioskd_s_page():
    """The customer's screen: after kioskd, back when it dies, one full-screen page, no way out."""
    from controller.config import UiSection

    text = (UNITS / "kiosk-ui.service").read_text()
    for line in ("After=kioskd.service", "Wants=kioskd.service", "Restart=always", "PAMName=login", "TTYPath=/dev/tty1",
                 "NoNewPrivileges=yes", "IPAddressAllow=localhost", "IPAddressDeny=any"):
        assert re.search(rf"^{re.escape(line)}", text, re.M), line
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", text, re.M | re.S).group(1).replace("\\\n", " ")
    argv = exec_start.split()
    assert argv[:2] == ["/usr/bin/cage", "-d"] and "-s" not in argv[: argv.index("--")], "no VT switching out"
    chromium = argv[argv.index("--") + 1:]
    assert chromium[0] == "/usr/bin/chromium" and "--kiosk" in chromium and "--disable-pinch" in chromium
    assert chromium[-1] == f"http://{UiSection().listen}/", "the page kioskd serves by default"


def test_the_units_run_kioskd_from_the_venv_the_image_installs():
    """The image puts the project in /opt/kioskd/venv; a unit naming another venv starts nothing."""
    from provisioning.image import VENV

    for name in ("kioskd.service", "kiosk-ui.service"):
        text = (UNITS / name).read_text()
        assert "/opt/kiosk/" not in text, name
    exec_start = re.search(r"^ExecStart=(\S+)", (UNITS / "kioskd.service").read_text(), re.M).group(1)
    assert exec_start == f"{VENV}/bin/kioskd"

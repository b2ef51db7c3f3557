"""kioskd --simulate wires every device to its emulator; kioskctl sees them and can test each."""
import signal
import subprocess
import sys

import pytest

from controller.config import load
from controller.daemon import SIMULATED_CONFIG
from tests.support.kioskd import start_kioskd
from tests.support.notify import NotifySocket

KINDS = sorted({d.driver for d in load(SIMULATED_CONFIG).devices.values()})


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, broker):
    tmp = tmp_path_factory.mktemp("sim")
    notify = NotifySocket(tmp / "notify.sock")
    proc = start_kioskd("--simulate", "--mqtt-port", str(broker.port), log_path=tmp / "kioskd.log",
                        env={"NOTIFY_SOCKET": notify.path}, cwd=tmp)
    notify.wait_for("READY=1", timeout=20)
    yield tmp / "var" / "sim" / "run" / "kioskd.sock"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.log()
    notify.close()


def kioskctl(sock, *args):
    return subprocess.run([sys.executable, "-m", "controller.kioskctl", "--socket", str(sock), *args],
                          capture_output=True, text=True, timeout=60)


def test_every_simulated_device_is_healthy(simulated):
    out = kioskctl(simulated, "--json", "devices")
    assert out.returncode == 0, out.stderr
    import json

    devices = json.loads(out.stdout)
    assert devices, "the simulated kiosk has devices"
    unhealthy = {n: d for n, d in devices.items() if d["health"] not in ("ok", "degraded")}
    assert not unhealthy


@pytest.mark.parametrize("driver", KINDS)
def test_kioskctl_test_exercises_each_device(simulated, driver):
    out = kioskctl(simulated, "test", driver)
    assert out.returncode == 0, out.stderr
    assert "FAILED" not in out.stdout and out.stdout.strip(), out.stdout


def test_an_unknown_device_is_a_clear_error(simulated):
    out = kioskctl(simulated, "test", "toaster")
    assert out.returncode == 1 and "no device 'toaster'" in out.stderr


def test_a_failed_device_test_exits_1_and_says_failed(simulated):
    assert kioskctl(simulated, "emu", "escpos", "paper_out").returncode == 0
    try:
        out = kioskctl(simulated, "test", "printer")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "FAILED" in out.stdout and "paper out" in out.stdout
    finally:
        assert kioskctl(simulated, "emu", "escpos", "paper_ok").returncode == 0
    again = kioskctl(simulated, "test", "printer")
    assert again.returncode == 0 and "test receipt printed" in again.stdout, again.stdout + again.stderr


def test_status_says_cash_services_and_alarms_and_devices_have_a_header(simulated):
    out = kioskctl(simulated, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "cash      accepted" in lines and "disabled  none" in lines and "alarms    none" in lines
    header = next(line for line in lines if line.startswith("DEVICE"))
    assert header.split() == ["DEVICE", "DRIVER", "KIND", "HEALTH", "DETAIL"]
    devices = kioskctl(simulated, "devices").stdout.splitlines()
    assert devices[0].split() == ["DEVICE", "DRIVER", "KIND", "HEALTH", "DETAIL"]
    # columns line up: every row's health starts under HEALTH, an empty detail is "-"
    at = devices[0].index("HEALTH")
    assert all(row[at:].split()[0] in ("ok", "degraded", "fault", "offline") for row in devices[1:]), devices
    assert all(len(row.split()) >= 5 for row in devices[1:]), devices


def test_no_kioskd_exits_3_and_names_the_socket(tmp_path):
    missing = tmp_path / "run" / "kioskd.sock"
    out = kioskctl(missing, "status")
    assert out.returncode == 3
    assert f"no kioskd socket at {missing} (--socket): is kioskd running?" in out.stderr
    assert "Errno" not in out.stderr


def test_a_stale_socket_exits_3_and_says_nothing_listens(tmp_path):
    import socket

    stale = tmp_path / "kioskd.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # bound, never listening: what a killed kioskd leaves behind
    out = kioskctl(stale, "status")
    assert out.returncode == 3 and f"nothing listens on {stale}" in out.stderr, out.stderr


def test_bad_emu_arguments_and_a_bad_config_exit_2(tmp_path, simulated):
    out = kioskctl(simulated, "emu", "cctalk", "insert_bill", "2000")
    assert out.returncode == 2 and "key=value, not 2000" in out.stderr
    bad = tmp_path / "kiosk.toml"
    bad.write_text("[kiosk]\nid = 7\n")
    out = subprocess.run([sys.executable, "-m", "controller.kioskctl", "--config", str(bad), "status"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and str(bad) in out.stderr, out.stderr


def test_an_emulator_refusing_exits_1(simulated):
    out = kioskctl(simulated, "emu", "toaster", "state")
    assert out.returncode == 1 and "kioskd says: no emulator 'toaster'" in out.stderr


def test_without_socket_or_config_the_message_says_where_it_looked(tmp_path):
    out = subprocess.run([sys.executable, "-m", "controller.kioskctl", "status"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 3
    if not __import__("os").path.exists("/etc/kiosk/kiosk.toml"):
        assert f"no kioskd socket at {tmp_path}/var/sim/run/kioskd.sock (runtime_dir of the simulated kiosk; " \
               "/etc/kiosk/kiosk.toml does not exist)" in out.stderr, out.stderr

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

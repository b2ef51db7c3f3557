"""kioskd as systemd runs it: READY when up, WATCHDOG while alive, STOPPING and exit 0 on SIGTERM."""
import json
import signal
import subprocess
import sys

import pytest

from tests.support.kioskd import start_kioskd, write_config
from tests.support.notify import NotifySocket


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def retained_status(broker, kiosk="K-TEST-1", hall="H-TEST"):
    out = subprocess.run(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-C", "1", "-W", "10",
         "-t", f"kiosk/v1/{hall}/{kiosk}/status"],
        capture_output=True, text=True, timeout=15,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ready_watchdog_stopping_and_clean_exit(tmp_path, broker, notify):
    config = write_config(tmp_path, broker.port)
    proc = start_kioskd("--config", str(config), log_path=tmp_path / "kioskd.log", env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
    try:
        messages = notify.wait_for("READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=ready" in ready
        notify.wait_for("WATCHDOG=1")

        ctl = subprocess.run([sys.executable, "-m", "controller.kioskctl", "--config", str(config), "status"],
                             capture_output=True, text=True, timeout=10)
        assert ctl.returncode == 0, ctl.stderr
        assert "state     ready" in ctl.stdout and "K-TEST-1" in ctl.stdout

        status = retained_status(broker)
        assert status["online"] is True and status["session"] == 1 and status["schema"] == 1

        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert retained_status(broker)["online"] is False
    assert "Traceback" not in proc.log()


def test_boot_counter_gives_each_start_a_new_session(tmp_path, broker, notify):
    config = write_config(tmp_path, broker.port)
    for expected in (1, 2):
        proc = start_kioskd("--config", str(config), log_path=tmp_path / "kioskd.log", env={"NOTIFY_SOCKET": notify.path})
        notify.messages.clear()
        notify.wait_for("READY=1")
        ctl = subprocess.run([sys.executable, "-m", "controller.kioskctl", "--config", str(config), "--json", "status"],
                             capture_output=True, text=True, timeout=10)
        assert json.loads(ctl.stdout)["session"] == expected
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_sighup_reloads_and_a_bad_reload_keeps_running(tmp_path, broker, notify):
    config = write_config(tmp_path, broker.port)
    proc = start_kioskd("--config", str(config), log_path=tmp_path / "kioskd.log", env={"NOTIFY_SOCKET": notify.path})
    try:
        notify.wait_for("READY=1")
        notify.messages.clear()
        config.write_text(config.read_text().replace('stop_grace_s = 2.0', 'stop_grace_s = 2.0\nlog_level = "debug"'))
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1")

        notify.messages.clear()
        config.write_text(config.read_text().replace('port =', 'port = "oops"\n#'))
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1")  # still serving on the old config
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.log()
        assert "reload refused" in err and "mqtt.port" in err
        assert "configuration reloaded" in err
    finally:
        if proc.poll() is None:
            proc.kill()

"""A wrong kiosk.toml fails at start with one line naming the file, the key and the problem (exit 2)."""
import subprocess
import sys

import pytest

from controller.daemon import main

GOOD = """
[kiosk]
id = "K1"
hall = "H1"
state_dir = "{tmp}/state"
runtime_dir = "{tmp}/run"

[mqtt]
port = 1883
"""


def write(tmp_path, text):
    path = tmp_path / "kiosk.toml"
    path.write_text(text.format(tmp=tmp_path))
    return path


def test_a_good_config_checks_out(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert main(["--config", str(path), "--check-config"]) == 0
    assert "ok" in capsys.readouterr().out


BAD = {
    "not TOML": (GOOD + "\n[kiosk\n", "", "not valid TOML"),
    "unknown section": (GOOD + "\n[printers]\nx = 1\n", "printers", "unknown section"),
    "unknown key": (GOOD.replace('hall = "H1"', 'hall = "H1"\nhalll = "typo"'), "kiosk.halll", "unknown key"),
    "wrong type": (GOOD.replace("port = 1883", 'port = "1883"'), "mqtt.port", "expected int, got str"),
    "bool is not an int": (GOOD.replace("port = 1883", "port = true"), "mqtt.port", "expected int, got bool"),
    "missing required key": (GOOD.replace('id = "K1"\n', ""), "kiosk.id", "missing (required)"),
    "missing section": ("[mqtt]\nport = 1\n", "kiosk", "missing section"),
    "missing file": (GOOD + 'ca_file = "/nonexistent/ca.pem"\n', "mqtt.ca_file", "no such file"),
    "bad log level": (GOOD.replace('hall = "H1"', 'hall = "H1"\nlog_level = "loud"'), "kiosk.log_level", "expected one of"),
    "unknown driver": (GOOD + '\n[devices.coin]\ndriver = "cctalk-coyn"\n', "devices.coin.driver", "unknown driver"),
    "device without driver": (GOOD + '\n[devices.coin]\nport = "/dev/ttyUSB0"\n', "devices.coin.driver", "missing"),
    "out of the driver's range": (GOOD + '\n[devices.coin]\ndriver = "cctalk-coin"\nport = "sim:cctalk"\npoll_interval_ms = 500\n', "devices.coin", "poll_interval_ms"),
    "missing serial port": (GOOD + '\n[devices.coin]\ndriver = "cctalk-coin"\nport = "/dev/ttyNOPE0"\n', "devices.coin.port", "no such port"),
    "unknown device option": (GOOD + '\n[devices.printer]\ndriver = "escpos"\nport = "sim:escpos"\npaper = 58\n', "devices.printer.paper", "unknown key"),
    "list of wrong items": (GOOD.replace('hall = "H1"', 'hall = "H1"\nservices = ["topup", 3]'), "kiosk.services[1]", "expected str"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_kind_of_bad_input_names_file_key_and_problem(tmp_path, capsys, case):
    text, key, problem = BAD[case]
    path = write(tmp_path, text)
    assert main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and key in err and problem in err, err


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "nope.toml" in err and "cannot read" in err


def test_the_real_binary_prints_no_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("port = 1883", "port = [1]"))
    out = subprocess.run([sys.executable, "-m", "controller", "--config", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "mqtt.port" in out.stderr


def test_the_simulated_kiosk_config_is_valid(capsys):
    assert main(["--simulate", "--check-config"]) == 0

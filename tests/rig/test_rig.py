"""The rig path on every commit: emulators in other processes reached over TCP (a stand-in for
the rig's second machine), and a ``pytest --rig rig.toml`` sub-session of the device tests
against their socket:// ports. A representative subset per device keeps it cheap; the whole
device suite runs the same way by hand (docs/rig.md)."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.rig.config import RigConfigError, load
from tests.rig.second_machine import SecondMachine

ROOT = Path(__file__).resolve().parents[2]
SUBSET = [
    "tests/hal/cctalk/test_coin.py::test_identifies_reads_the_coin_table_and_credits_an_enabled_coin",
    "tests/hal/cctalk/test_coin.py::test_corrupt_replies_are_retried_without_phantom_credit",
    "tests/hal/cctalk/test_hopper.py::test_a_full_payout_and_the_hopper_is_disabled_afterwards",
    "tests/hal/cctalk/test_bill.py::test_reads_the_bill_table_and_enables",  # this rig's bus has no bill
    "tests/hal/printer/test_driver.py::test_the_printer_tells_its_maker_model_firmware_and_serial",
    "tests/hal/printer/test_driver.py::test_chinese_receipt_round_trips_to_the_same_text",  # reads the model
    "tests/hal/modem/test_modem_driver.py::test_the_modem_tells_what_it_is_ati_maker_model_firmware_imei",
    "tests/hal/modem/test_modem_driver.py::test_transient_cms_error_is_retried_with_backoff_and_then_succeeds",
    "tests/hal/dispenser/test_crt571_driver.py::test_self_test_names_firmware_and_stock",  # "real" here
    "tests/hal/dispenser/test_crt571_driver.py::test_an_untaken_card_is_captured_after_the_timeout",
    "tests/hal/dispenser/test_k720_driver.py::test_the_driver_names_an_undefined_command_and_does_not_resend_it",
    "tests/identity/test_idcard_reader.py::test_a_placed_card_is_read_and_its_fields_decoded",
    "tests/rig/test_pi.py",  # no [gpio] here: skips; [i2c] bus = -1: the register models stand in for the chips
]


@pytest.fixture(scope="module")
def rig_run(tmp_path_factory):
    """One sub-session for the module: six emulator processes, the subset, the report."""
    work = tmp_path_factory.mktemp("rig")
    with SecondMachine(work / "second-machine") as machine:
        toml = machine.rig_toml(work / "rig.toml", cctalk_has=("coin", "hopper"))
        # the CRT-571 stands in for a real unit: its port only, no control socket
        text = toml.read_text()
        crt = f'port = "socket://127.0.0.1:{machine.ports["crt571"][0]}"\n'
        text = text.replace(crt + f'control = "tcp://127.0.0.1:{machine.ports["crt571"][1]}"\n', crt + "real = true\n")
        toml.write_text(text + "\n[i2c]\nbus = -1\nsht3x = 0x44\nina219 = 0x40\nds3231 = 0x68\n")
        report = work / "rig-report"
        proc = subprocess.run([sys.executable, "-m", "pytest", "--rig", str(toml), "--rig-report", str(report),
                               "-p", "no:cacheprovider", "-q", "-rs", *SUBSET],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    return proc, report


def test_the_device_tests_pass_against_emulators_in_another_process_over_tcp(rig_run):
    proc, report = rig_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    suite = ET.parse(report / "junit.xml").getroot().find("testsuite")
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    assert int(suite.get("tests")) == len(SUBSET) - 1 + 4
    rows = {r["device"]: r for r in json.loads((report / "devices.json").read_text())["devices"]}
    for device in ("cctalk.coin", "cctalk.hopper", "escpos", "modem", "crt571", "k720", "idcard", "i2c.sht3x",
                   "i2c.ina219", "i2c.ds3231"):
        assert rows[device]["passed"] >= 1 and rows[device]["failed"] == 0, rows[device]
    assert rows["cctalk.coin"]["identity"]["manufacturer"] and rows["cctalk.coin"]["identity"]["serial"] == 12345678
    assert rows["escpos"]["identity"]["model"] == "EMU-58 GB18030"
    assert rows["modem"]["identity"]["firmware"] == "Revision:1418B05SIM800L24"
    assert rows["crt571"]["identity"]["firmware"] == "CRT-571-EMU V1.0" and rows["crt571"]["where"].startswith("real ")
    table = (report / "devices.md").read_text()
    assert "| cctalk.coin | emulated socket://127.0.0.1:" in table


def test_what_the_rig_lacks_skips_with_the_reason(rig_run):
    proc, report = rig_run
    rows = {r["device"]: r for r in json.loads((report / "devices.json").read_text())["devices"]}
    assert rows["cctalk.bill"]["skip_reasons"] == ["the rig's ccTalk bus has no bill (" + str(report.parent / "rig.toml")
                                                   + ": has = ['coin', 'hopper'])"]
    assert rows["crt571"]["skipped"] == 1 and "crt571 is a real device on this rig" in rows["crt571"]["skip_reasons"][0]
    assert any("reads the escpos emulator's memory" in r for r in rows["escpos"]["skip_reasons"])
    assert rows["gpio"]["skip_reasons"] == [f"the rig has no Pi GPIO ({report.parent / 'rig.toml'} has no [gpio])"]
    assert "SKIPPED" in proc.stdout  # -rs: the reasons are in the run's own output too


@pytest.mark.parametrize("text,problem", [
    ('[devices.cctalk]\nport = "/dev/ttyUSB0"\n', "devices.cctalk.control: an emulated device needs"),
    ('[devices.escpos]\nport = "/dev/ttyS0"\nreal = true\ncontrol = "/tmp/x"\n', "a real device has no control socket"),
    ('[devices.coin]\nport = "/dev/ttyUSB0"\nreal = true\n', "devices.coin: unknown device"),
    ('[devices.cctalk]\nport = "/dev/ttyUSB0"\nreal = true\nhas = ["coin", "note"]\n', "devices.cctalk.has:"),
    ('[devices.k720]\nreal = true\n', "devices.k720.port: missing"),
    ('[devices.k720]\nport = "x"\nreal = true\nbaud = 9600\n', "devices.k720.baud: unknown key"),
    ('[i2c]\nsht3x = 0x44\n', "i2c.bus: missing"),
    ('[gpio]\ndoor = 5\n', "gpio.door: unknown key"),
])
def test_a_wrong_rig_toml_names_the_file_the_key_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "rig.toml"
    path.write_text(text)
    with pytest.raises(RigConfigError, match=problem) as exc:
        load(path)
    assert str(exc.value).startswith(str(path))


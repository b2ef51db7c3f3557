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
    "unknown service": (GOOD.replace('hall = "H1"', 'hall = "H1"\nservices = ["topup", "bogus"]'), "kiosk.services[1]",
                        "unknown service 'bogus' (services: topup, card_sale, bill_pay"),
    "service listed twice": (GOOD.replace('hall = "H1"', 'hall = "H1"\nservices = ["topup", "topup"]'),
                             "kiosk.services[1]", "'topup' is listed twice"),
    "missing I2C bus": (GOOD + '\n[devices.climate]\ndriver = "sht3x"\nbus = 97\n', "devices.climate.bus",
                        "no such I2C bus /dev/i2c-97"),
    "lgpio not installed": (GOOD + '\n[devices.panel]\ndriver = "gpio-panel"\npin_factory = "lgpio"\n',
                            "devices.panel.pin_factory", "lgpio is not installed"),
    "unknown pin factory": (GOOD + '\n[devices.panel]\ndriver = "gpio-panel"\npin_factory = "rpigpio"\n',
                            "devices.panel.pin_factory", "expected one of lgpio, mock, got 'rpigpio'"),
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


def test_the_ci_machine_really_lacks_what_the_device_checks_look_for():
    """The I2C and lgpio cases above test real absence, not a fake: keep them honest."""
    import importlib.util
    import os

    assert not os.path.exists("/dev/i2c-97")
    assert importlib.util.find_spec("lgpio") is None  # the [pi] extra is not installed by ./dev


def test_a_simulated_kiosk_skips_the_hardware_checks(tmp_path, capsys):
    text = GOOD + '\n[devices.climate]\ndriver = "sht3x"\nbus = 97\n[devices.panel]\ndriver = "gpio-panel"\n'
    assert main(["--config", str(write(tmp_path, text)), "--check-config", "--simulate"]) == 0, capsys.readouterr().err


def test_simulate_gives_each_real_port_its_own_emulator_and_keeps_sim_ports(tmp_path):
    """Two dispensers on two ports are two emulators under --simulate (one pty for both left the
    first one silent); devices on one ccTalk bus stay on one; a sim:NAME-LABEL port stays as written."""
    from controller.config import load

    text = GOOD + "".join(f'\n[devices.{n}]\ndriver = "{d}"\nport = "{p}"\n' for n, d, p in [
        ("cards", "crt571", "/dev/ttyUSB0"), ("sims", "crt571", "/dev/ttyUSB1"),
        ("coin", "cctalk-coin", "/dev/ttyUSB2"), ("bill", "cctalk-bill", "/dev/ttyUSB2"),
        ("spare", "crt571", "sim:crt571-spare")])
    ports = {n: d.options.port for n, d in load(write(tmp_path, text), simulate=True).devices.items()}
    assert ports == {"cards": "sim:crt571", "sims": "sim:crt571-sims", "coin": "sim:cctalk", "bill": "sim:cctalk",
                     "spare": "sim:crt571-spare"}


async def test_services_not_listed_are_not_offered(tmp_path):
    """[kiosk] services is the kiosk's menu: a flow left out is refused, with the reason."""
    import dataclasses

    from controller.config import load
    from controller.kiosk import Kiosk

    config = load(write(tmp_path, GOOD.replace('hall = "H1"', 'hall = "H1"\nservices = ["card_sale"]')))
    assert config.kiosk.services == ["card_sale"]
    kiosk = Kiosk(config)
    assert kiosk.offered("topup") == "not offered on this kiosk ([kiosk] services in kiosk.toml)"
    assert kiosk.offered("card_sale") is None
    everything = Kiosk(dataclasses.replace(config, kiosk=dataclasses.replace(config.kiosk, services=list(
        load(write(tmp_path, GOOD)).kiosk.services))))
    assert everything.offered("topup") is None and everything.offered("loss_report") is None


def test_the_halls_settings_file_lies_over_kiosk_toml_table_by_table(tmp_path, capsys):
    from controller.config import load

    path = write(tmp_path, GOOD + '\n[flows]\nidle_timeout = 60.0\nhotline = "10086"\n')
    settings = tmp_path / "settings.toml"
    assert load(path, settings=settings).flows.idle_timeout == 60.0  # no settings yet: kiosk.toml alone
    settings.write_text('[flows]\nidle_timeout = 90.0\n\n[ui]\nnotices = ["明日 9:00 开门"]\n')
    config = load(path, settings=settings)
    assert config.flows.idle_timeout == 90.0 and config.flows.hotline == "10086"  # merged key by key
    assert config.ui.notices == ["明日 9:00 开门"]
    assert config.settings == str(settings) and config.raw_hash != load(path).raw_hash
    assert main(["--config", str(path), "--settings", str(settings), "--check-config"]) == 0
    assert f"{path} with {settings}: ok" in capsys.readouterr().out


@pytest.mark.parametrize("text, key, problem", [
    ('[kiosk]\nid = "K-EVIL"\n', "kiosk.id", "set by provisioning, not in the hall's settings"),
    ("[flows]\nidle_timeout = \"soon\"\n", "flows.idle_timeout", "expected float"),
    ("[flows\n", "", "not valid TOML"),
])
def test_a_bad_settings_file_is_named_with_its_key_and_problem(tmp_path, capsys, text, key, problem):
    path = write(tmp_path, GOOD)
    settings = tmp_path / "settings.toml"
    settings.write_text(text)
    assert main(["--config", str(path), "--settings", str(settings), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert str(settings) in err and key in err and problem in err, err


def test_set_config_with_a_settings_file_writes_only_that_file(tmp_path):
    from controller.config import ConfigError, with_settings

    path = write(tmp_path, GOOD)
    settings = tmp_path / "settings.toml"
    text, config = with_settings(path, {"flows.idle_timeout": 90}, over=settings)
    assert text.strip() == "[flows]\nidle_timeout = 90" and config.flows.idle_timeout == 90
    assert not settings.exists() and sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["kiosk.toml"]
    with pytest.raises(ConfigError, match="settings.toml: kiosk.id"):
        with_settings(path, {"kiosk.id": "K2"}, over=settings)

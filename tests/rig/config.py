"""rig.toml: what the hardware-in-the-loop rig has, where each device is, and whether it is real.

    [devices.cctalk]                       # one section per device, named as its emulator
    port = "/dev/ttyUSB0"                  # what the driver opens: a serial port, socket://HOST:PORT, tcp://...
    real = true                            # a real device on the bench (no control socket)
    has = ["coin", "hopper"]               # cctalk: which of coin, bill, hopper are on the bus
    options = { echo = true }              # driver options over the tests' own (kiosk.toml's keys)

    [devices.escpos]
    port = "socket://192.168.7.2:7002"     # emulated on the second machine:
    control = "tcp://192.168.7.2:7102"     #   python -m hal.emulators escpos --tcp ... --control tcp://...

    [gpio]                                 # on a Pi: the panel's pins, as in kiosk.toml [devices.panel]
    pin_factory = "lgpio"
    door_pin = 5
    ...

    [i2c]
    bus = 1                                # /dev/i2c-1; -1: the register models of hal/emulators/i2c_chips.py
    sht3x = 0x44                           # chips fitted: name = address
    ina219 = 0x40
    ds3231 = 0x68

A device missing from rig.toml, or real where a test needs the emulator's control, makes that
test skip with the reason. Errors name the file, the key and the problem, as kiosk.toml's do.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES = ("cctalk", "escpos", "crt571", "k720", "modem", "idcard")
CCTALK_PARTS = ("coin", "bill", "hopper")
I2C_CHIPS = ("sht3x", "ina219", "ds3231")
GPIO_KEYS = ("pin_factory", "door_pin", "tamper_pin", "service_button_pin", "cashbox_pin", "ready_led_pin",
             "busy_led_pin", "fault_led_pin", "relays", "relay_active_high", "switches_to_ground", "settle_ms")


class RigConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RigDevice:
    name: str
    port: str
    real: bool
    control: str | None  # the emulator's control socket (unix path or tcp://HOST:PORT); None when real
    has: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # driver options over the tests' (echo, timeouts)


@dataclass(frozen=True)
class RigConfig:
    path: Path
    devices: dict[str, RigDevice] = field(default_factory=dict)
    gpio: dict[str, Any] | None = None
    i2c: dict[str, int] | None = None


def _fail(path: Path, key: str, problem: str) -> RigConfigError:
    return RigConfigError(f"{path}: {key}: {problem}")


def _device(path: Path, name: str, table: Any) -> RigDevice:
    key = f"devices.{name}"
    if name not in DEVICES:
        raise _fail(path, key, f"unknown device; known: {', '.join(DEVICES)}")
    if not isinstance(table, dict):
        raise _fail(path, key, "expected a table")
    unknown = set(table) - {"port", "real", "control", "has", "options"}
    if unknown:
        raise _fail(path, f"{key}.{sorted(unknown)[0]}", "unknown key")
    port = table.get("port")
    if not isinstance(port, str) or not port:
        raise _fail(path, f"{key}.port", "missing (a serial port, socket://HOST:PORT or tcp://HOST:PORT)")
    real = table.get("real", False)
    if not isinstance(real, bool):
        raise _fail(path, f"{key}.real", "expected true or false")
    control = table.get("control")
    if real and control is not None:
        raise _fail(path, f"{key}.control", "a real device has no control socket")
    if not real and not isinstance(control, str):
        raise _fail(path, f"{key}.control", "an emulated device needs its emulator's control socket "
                    "(--control PATH or tcp://HOST:PORT)")
    has = table.get("has", list(CCTALK_PARTS) if name == "cctalk" else [])
    if not isinstance(has, list) or any(part not in CCTALK_PARTS for part in has) or (has and name != "cctalk"):
        raise _fail(path, f"{key}.has", f"cctalk only: a list of {', '.join(CCTALK_PARTS)}")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise _fail(path, f"{key}.options", "expected a table of driver options (as in kiosk.toml)")
    return RigDevice(name, port, real, control, tuple(has), options)


def load(path: Path | str) -> RigConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise RigConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RigConfigError(f"{path}: not TOML: {exc}") from None
    unknown = set(data) - {"devices", "gpio", "i2c"}
    if unknown:
        raise _fail(path, sorted(unknown)[0], "unknown section (devices, gpio, i2c)")
    devices = {name: _device(path, name, table) for name, table in data.get("devices", {}).items()}
    gpio = data.get("gpio")
    if gpio is not None:
        bad = set(gpio) - set(GPIO_KEYS)
        if bad:
            raise _fail(path, f"gpio.{sorted(bad)[0]}", "unknown key (the keys of kiosk.toml's [devices.panel])")
    i2c = data.get("i2c")
    if i2c is not None:
        bad = set(i2c) - {"bus", *I2C_CHIPS}
        if bad:
            raise _fail(path, f"i2c.{sorted(bad)[0]}", f"unknown key (bus, {', '.join(I2C_CHIPS)})")
        if type(i2c.get("bus")) is not int:
            raise _fail(path, "i2c.bus", "missing: the N of /dev/i2c-N")
    return RigConfig(path, devices, gpio, i2c)

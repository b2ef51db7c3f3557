"""Real GPIO and I2C on the rig's Pi (``pytest --rig rig.toml``; deselected without --rig).

The pty-based device tests cannot reach a pin or a chip: these read the panel's switches, switch
its LEDs and relays and read them back, and ask each fitted sensor chip for a reading, with the
drivers kioskd uses. The bench is set up as docs/rig.md says: cabinet door shut, cash box in.
"""
from __future__ import annotations

import datetime as dt

import pytest

from hal.device import DeviceContext, Health
from tests.rig import lines

pytestmark = pytest.mark.rig


def _gpio() -> dict:
    assert lines.ACTIVE is not None
    lines.USED[lines.CURRENT[0]].add("gpio")
    if lines.ACTIVE.gpio is None:
        pytest.skip(f"the rig has no Pi GPIO ({lines.ACTIVE.path} has no [gpio])")
    return lines.ACTIVE.gpio


def _chip(name: str) -> tuple[int, int]:
    assert lines.ACTIVE is not None
    lines.USED[lines.CURRENT[0]].add(f"i2c.{name}")
    i2c = lines.ACTIVE.i2c
    if i2c is None or name not in i2c:
        pytest.skip(f"the rig has no {name} ({lines.ACTIVE.path} [i2c] does not name it)")
    return i2c["bus"], i2c[name]


async def test_the_panel_reads_its_switches_and_drives_its_leds_and_relays():
    from hal.panel import GpioPanel, GpioPanelOptions

    options = {"pin_factory": "lgpio", **_gpio()}
    panel = GpioPanel("panel", GpioPanelOptions(**options), DeviceContext())
    await panel.start()
    try:
        assert panel.health == Health.OK
        assert not panel.door_open, "the bench door switch reads open: shut it (docs/rig.md) or check its wiring"
        lines.note_identity("gpio", factory=options["pin_factory"], **{k: v for k, v in options.items() if k.endswith("_pin")})
        for led in panel._leds:  # noqa: SLF001 - the fitted ones
            panel.set_led(led, "steady")
            assert panel._leds[led].value == 1  # noqa: SLF001 - read back from the pin
            panel.set_led(led, "off")
            assert panel._leds[led].value == 0  # noqa: SLF001
        for name in options.get("relays", {}):
            panel.set_relay(name, True)
            assert panel.relay(name)
            panel.set_relay(name, False)
            assert not panel.relay(name)
    finally:
        await panel.safe_state()
        await panel.stop()


async def test_the_cabinet_climate_sensor_answers_with_a_plausible_reading():
    from hal.sensors.sht3x import Sht3x, Sht3xOptions

    bus, address = _chip("sht3x")
    chip = Sht3x("climate", Sht3xOptions(bus=bus, address=address, poll_interval_s=0), DeviceContext())
    await chip.start()
    try:
        values = await chip.read()  # CRC-checked by the driver
    finally:
        await chip.stop()
    lines.note_identity("i2c.sht3x", address=hex(address), **values)
    assert -20 <= values["temperature_c"] <= 70 and 0 <= values["humidity_pct"] <= 100


async def test_the_power_monitor_reads_the_supply():
    from hal.sensors.ina219 import Ina219, Ina219Options

    bus, address = _chip("ina219")
    chip = Ina219("power", Ina219Options(bus=bus, address=address, poll_interval_s=0), DeviceContext())
    await chip.start()
    try:
        values = await chip.read()
    finally:
        await chip.stop()
    lines.note_identity("i2c.ina219", address=hex(address), bus_v=values.get("bus_v"))
    assert 4.0 <= values["bus_v"] <= 32.0, "a kiosk's 12/24 V rail (or the bench supply) should read here"


async def test_the_real_time_clock_keeps_the_time_it_is_given():
    """As kioskd does after an NTP sync: write UTC now, read it back (a fresh RTC reads None: OSF set)."""
    from hal.sensors.ds3231 import Ds3231, Ds3231Options

    bus, address = _chip("ds3231")
    chip = Ds3231("rtc", Ds3231Options(bus=bus, address=address), DeviceContext())
    await chip.start()
    try:
        before = await chip.read_time()
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
        await chip.write_time(now)
        after = await chip.read_time()
    finally:
        await chip.stop()
    lines.note_identity("i2c.ds3231", address=hex(address), time_before=before and before.isoformat())
    assert after is not None and abs((after - now).total_seconds()) <= 2

"""SHT3x: single-shot measurement, CRC-8 (0x31, init 0xFF), faults on CRC mismatch and NACK."""
import asyncio

import pytest
from smbus2 import i2c_msg

from hal.device import Health
from hal.emulators.i2c_chips import sht3x_crc
from hal.sensors.base import SensorFault
from hal.sensors.sht3x import Sht3x, Sht3xOptions, convert, crc8


def sensor(kiosk, **kw):
    return Sht3x("climate", Sht3xOptions(poll_interval_s=0, **kw), kiosk.ctx)


def test_crc8_matches_the_datasheet_example_0xbeef_is_0x92():
    assert crc8(b"\xbe\xef") == 0x92
    assert sht3x_crc(b"\xbe\xef") == 0x92  # the chip model's own implementation agrees


def test_conversion_follows_the_datasheet_formulas_at_the_ends_of_the_range():
    t, rh = convert(bytes([0x00, 0x00, crc8(b"\0\0"), 0xFF, 0xFF, crc8(b"\xff\xff")]))
    assert (t, rh) == (-45.0, 100.0)


async def test_reads_temperature_and_humidity(kiosk):
    chip = kiosk.bus.chip(0x44)
    chip.temperature_c, chip.humidity_pct = 31.7, 62.5
    s = sensor(kiosk)
    await s.start()
    values = await s.read()
    assert values == pytest.approx({"temperature_c": 31.7, "humidity_pct": 62.5}, abs=0.01)
    assert s.health == Health.OK and chip.measurements == 1


async def test_negative_temperatures_read_correctly(kiosk):
    kiosk.bus.chip(0x44).temperature_c = -20.3
    s = sensor(kiosk)
    await s.start()
    assert (await s.read())["temperature_c"] == pytest.approx(-20.3, abs=0.01)


async def test_a_crc_mismatch_is_a_fault_and_a_good_reading_recovers(kiosk):
    kiosk.bus.chip(0x44).crc_errors = 2
    s = sensor(kiosk)
    await s.start()
    for _ in range(2):
        with pytest.raises(SensorFault) as info:
            await s.read()
        assert info.value.code == "crc"
    assert s.health == Health.FAULT
    await s.read()
    assert s.health == Health.OK
    assert kiosk.kinds() == [("fault", "crc"), ("recovered", "crc")]  # one fault event, not one per poll


async def test_a_nack_is_a_fault_not_a_crash(kiosk):
    kiosk.bus.chip(0x44).nack = True
    s = sensor(kiosk)
    await s.start()
    with pytest.raises(SensorFault) as info:
        await s.read()
    assert info.value.code == "nack" and s.health == Health.FAULT


async def test_an_absent_chip_nacks_its_address(kiosk):
    s = sensor(kiosk, address=0x45)
    await s.start()
    with pytest.raises(SensorFault) as info:
        await s.read()
    assert info.value.code == "nack"


def test_the_chip_nacks_a_read_before_the_conversion_is_done(kiosk):
    """Datasheet §4.5 without clock stretching: read header not acknowledged while measuring."""
    kiosk.bus.i2c_rdwr(i2c_msg.write(0x44, [0x24, 0x00]))
    with pytest.raises(OSError) as info:
        kiosk.bus.i2c_rdwr(i2c_msg.read(0x44, 6))
    assert info.value.errno == 121


async def test_thresholds_raise_a_climate_event_once_and_clear(kiosk):
    chip = kiosk.bus.chip(0x44)
    chip.temperature_c = 58.0
    s = sensor(kiosk)
    await s.start()
    await s.read()
    await s.read()
    assert kiosk.kinds() == [("climate", "over_temperature")] and s.health == Health.DEGRADED
    chip.temperature_c = 30.0
    await s.read()
    assert kiosk.kinds()[-1] == ("climate_ok", "over_temperature") and s.health == Health.OK


async def test_the_poll_loop_keeps_latest_current(kiosk):
    s = Sht3x("climate", Sht3xOptions(poll_interval_s=0.01), kiosk.ctx)
    await s.start()
    try:
        async with asyncio.timeout(2):
            while not s.latest:
                await asyncio.sleep(0.01)
        assert s.latest["temperature_c"] == pytest.approx(22.5, abs=0.01)
    finally:
        await s.stop()


async def test_without_simulate_bus_minus_one_still_means_the_chip_models():
    from hal.device import DeviceContext

    s = Sht3x("climate", Sht3xOptions(bus=-1, poll_interval_s=0), DeviceContext())
    await s.start()
    assert (await s.read())["humidity_pct"] == pytest.approx(45.0, abs=0.01)


async def test_a_missing_i2c_adapter_is_a_device_error_naming_it():
    from hal.device import DeviceContext, DeviceError

    s = Sht3x("climate", Sht3xOptions(bus=7, poll_interval_s=0), DeviceContext())
    with pytest.raises(DeviceError, match="/dev/i2c-7"):
        await s.start()

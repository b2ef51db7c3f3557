"""INA219: calibration, register byte order, signed shunt voltage/current, power-fail hook."""
import asyncio

import pytest

from hal.device import Health
from hal.sensors.base import SensorFault
from hal.sensors.ina219 import REG_SHUNT, Ina219, Ina219Options, calibration


def monitor(kiosk, **kw):
    return Ina219("ups", Ina219Options(poll_interval_s=0, **kw), kiosk.ctx)


def test_calibration_for_0_1_ohm_and_3_2_a_is_4096_with_100_ua_per_bit():
    cal, lsb = calibration(0.1, 3.2)  # the datasheet's worked calibration example
    assert cal == 4096 and lsb == pytest.approx(0.0001)


async def test_reads_bus_voltage_shunt_current_and_power(kiosk):
    chip = kiosk.bus.chip(0x40)
    chip.bus_mv = 12_000
    chip.set_current(1.5, 0.1)
    m = monitor(kiosk)
    await m.start()
    assert chip.calibration == 4096
    values = await m.read()
    assert values == pytest.approx({"bus_v": 12.0, "shunt_mv": 150.0, "current_a": 1.5, "power_w": 18.0}, rel=1e-3)


async def test_negative_current_keeps_its_sign(kiosk):
    chip = kiosk.bus.chip(0x40)
    chip.set_current(-0.75, 0.1)
    m = monitor(kiosk)
    await m.start()
    values = await m.read()
    assert values["shunt_mv"] == pytest.approx(-75.0) and values["current_a"] == pytest.approx(-0.75)


async def test_registers_are_big_endian_while_smbus_words_are_little_endian(kiosk):
    chip = kiosk.bus.chip(0x40)
    chip.shunt_uv = -75_000  # -7500 LSB = 0xE2B4 two's complement
    assert kiosk.bus.read_i2c_block_data(0x40, REG_SHUNT, 2) == [0xE2, 0xB4]
    assert kiosk.bus.read_word_data(0x40, REG_SHUNT) == 0xB4E2  # why the driver uses block reads


async def test_low_bus_voltage_is_power_fail_with_hook_then_restored(kiosk):
    chip = kiosk.bus.chip(0x40)
    m = monitor(kiosk)
    seen = asyncio.Event()
    readings = []

    async def inhibit_everything(reading):
        readings.append(reading)
        seen.set()

    m.on_power_fail(inhibit_everything)
    await m.start()
    await m.read()
    assert not m.on_battery
    chip.bus_mv = 10_800
    await m.read()
    async with asyncio.timeout(1):
        await seen.wait()
    assert readings[0]["bus_v"] == pytest.approx(10.8)
    await m.read()  # still low: no second event
    chip.bus_mv = 11_500  # above power_fail_v but below power_ok_v: hysteresis holds
    await m.read()
    chip.bus_mv = 12_200
    await m.read()
    assert kiosk.kinds() == [("power_fail", "low_voltage"), ("power_restored", "")]


async def test_on_battery_below_battery_low_v_is_battery_low_once_and_mains_back_clears_it(kiosk):
    chip = kiosk.bus.chip(0x40)
    m = monitor(kiosk, battery_low_v=10.5)
    low = []
    m.on("battery_low", low.append)
    await m.start()
    chip.bus_mv = 10_600
    await m.read()
    assert m.on_battery and not low
    chip.bus_mv = 10_400
    await m.read()
    await m.read()  # still low: said once
    assert m.battery_low and [r["bus_v"] for r in low] == [pytest.approx(10.4)]
    chip.bus_mv = 12_000
    await m.read()
    assert not m.battery_low
    assert kiosk.kinds() == [("power_fail", "low_voltage"), ("battery_low", ""), ("power_restored", "")]


async def test_current_out_of_the_battery_counts_as_on_battery(kiosk):
    chip = kiosk.bus.chip(0x40)
    chip.bus_mv = 12_300
    chip.set_current(-0.5, 0.1)
    calls = []
    m = monitor(kiosk, discharge_a=0.2)
    m.on_power_fail(calls.append)  # a plain function is fine too
    await m.start()
    await m.read()
    assert kiosk.kinds() == [("power_fail", "discharging")] and len(calls) == 1


async def test_a_chip_reset_loses_calibration_and_the_driver_rewrites_it(kiosk):
    chip = kiosk.bus.chip(0x40)
    chip.set_current(1.0, 0.1)
    m = monitor(kiosk)
    await m.start()
    chip.reset()
    values = await m.read()
    assert values["current_a"] == pytest.approx(1.0)
    assert ("sensor_reset", "ina219_reset") in kiosk.kinds()


async def test_a_nack_is_a_fault(kiosk):
    kiosk.bus.chip(0x40).nack = True
    m = monitor(kiosk)
    await m.start()  # setup fails: a fault event, not an exception
    assert m.health == Health.FAULT
    with pytest.raises(SensorFault) as info:
        await m.read()
    assert info.value.code == "nack"
    assert kiosk.kinds() == [("fault", "nack")]

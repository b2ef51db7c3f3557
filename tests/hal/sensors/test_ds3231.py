"""DS3231: BCD time registers, the century bit and its rollover, OSF, faults."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.emulators.i2c_chips import Ds3231Model
from hal.sensors.base import SensorFault
from hal.sensors.ds3231 import Ds3231, Ds3231Options, decode_time, encode_time


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
async def rtc(kiosk):
    clock = FakeClock()
    chip = kiosk.bus.add(Ds3231Model(clock=clock))
    driver = Ds3231("rtc", Ds3231Options(), kiosk.ctx)
    await driver.start()
    yield driver, chip, clock
    await driver.stop()


def test_bcd_registers_for_a_known_time():
    regs = encode_time(dt.datetime(2024, 2, 29, 23, 59, 58))
    assert regs == [0x58, 0x59, 0x23, 4, 0x29, 0x02, 0x24]  # Thursday = 4 (1..7 from Monday)


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2199, 12, 31, 23, 59, 59)))
def test_bcd_round_trip_over_both_centuries(when):
    when = when.replace(microsecond=0)
    assert decode_time(encode_time(when)) == when


def test_twelve_hour_mode_is_read_correctly():
    assert decode_time([0, 0, 0x40 | 0x20 | 0x11, 1, 1, 1, 0x25]).hour == 23  # 11 PM
    assert decode_time([0, 0, 0x40 | 0x12, 1, 1, 1, 0x25]).hour == 0  # 12 AM


async def test_power_up_osf_means_no_valid_time_until_written(rtc, kiosk):
    driver, chip, clock = rtc
    assert await driver.read_time() is None
    assert kiosk.kinds() == [("fault", "rtc_time_lost")]
    when = dt.datetime(2025, 6, 1, 8, 30, 0)
    await driver.write_time(when)
    clock.t += 5
    assert await driver.read_time() == when + dt.timedelta(seconds=5)


async def test_century_rollover_sets_the_century_bit_and_reads_as_2100(rtc, kiosk):
    driver, chip, clock = rtc
    await driver.write_time(dt.datetime(2099, 12, 31, 23, 59, 59))
    assert kiosk.bus.read_byte_data(0x68, 0x05) & 0x80 == 0
    clock.t += 1
    assert await driver.read_time() == dt.datetime(2100, 1, 1, 0, 0, 0)
    assert kiosk.bus.read_byte_data(0x68, 0x05) == 0x81 and kiosk.bus.read_byte_data(0x68, 0x06) == 0x00


def test_non_bcd_registers_are_a_named_fault():
    regs = encode_time(dt.datetime(2030, 1, 1))
    regs[6] = 0x3A  # year register 3Ah: the low nibble is not a decimal digit
    with pytest.raises(SensorFault) as info:
        decode_time(regs)
    assert info.value.code == "bad_bcd"
    with pytest.raises(SensorFault) as info:
        decode_time([0, 0, 0, 1, 0x31, 0x02, 0x30])  # 31 February
    assert info.value.code == "bad_time"


async def test_a_nack_is_a_fault(rtc, kiosk):
    driver, chip, clock = rtc
    chip.nack = True
    with pytest.raises(SensorFault) as info:
        await driver.read_time()
    assert info.value.code == "nack"
    assert kiosk.kinds() == [("fault", "nack")]


async def test_temperature_register_is_signed_quarter_degrees(rtc):
    driver, chip, clock = rtc
    await driver.write_time(dt.datetime(2030, 1, 1))
    chip.temperature_c = -7.75
    assert (await driver.read())["temperature_c"] == -7.75

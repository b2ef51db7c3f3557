"""Maxim DS3231 real-time clock: keeps the time when a kiosk boots without network (datasheet Fig. 1).

kioskd reads it at boot when NTP cannot be reached, and writes it back once NTP has synced.
This driver never touches the system clock itself (that is the controller's decision, and tests
must not do it). Years are 2000 + YY, plus 100 when the century bit (05h bit 7) is set — the chip
toggles that bit when its year register overflows 99 -> 00.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar

from ..device import Health
from .base import I2cSensor, SensorFault

REG_TIME = 0x00  # 00h seconds .. 06h year
REG_STATUS = 0x0F
REG_TEMP = 0x11
OSF = 0x80  # status bit 7: the oscillator stopped, the time is not to be trusted
CENTURY = 0x80  # month register bit 7


def bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def unbcd(byte: int, what: str) -> int:
    hi, lo = byte >> 4, byte & 0x0F
    if hi > 9 or lo > 9:
        raise SensorFault("bad_bcd", f"{what} register {byte:#04x} is not BCD")
    return hi * 10 + lo


def encode_time(when: dt.datetime) -> list[int]:
    """Registers 00h-06h for ``when`` (2000-2199), 24-hour mode (hours bit 6 = 0)."""
    if not 2000 <= when.year <= 2199:
        raise ValueError("the DS3231 holds years 2000-2199 (YY plus the century bit)")
    century = CENTURY if when.year >= 2100 else 0
    return [bcd(when.second), bcd(when.minute), bcd(when.hour), when.isoweekday(),
            bcd(when.day), century | bcd(when.month), bcd(when.year % 100)]


def decode_time(regs: list[int] | bytes) -> dt.datetime:
    """Inverse of ``encode_time``; also reads 12-hour mode (bit 6) if someone set it."""
    sec, minute, hour_reg, _day, date, month_reg, year = regs[:7]
    if hour_reg & 0x40:  # 12-hour: bit 5 = PM, bits 4-0 = 1..12
        hour = unbcd(hour_reg & 0x1F, "hours") % 12 + (12 if hour_reg & 0x20 else 0)
    else:
        hour = unbcd(hour_reg & 0x3F, "hours")
    yy = 2000 + unbcd(year, "year") + (100 if month_reg & CENTURY else 0)
    try:
        return dt.datetime(yy, unbcd(month_reg & 0x1F, "month"), unbcd(date, "date"),
                           hour, unbcd(minute, "minutes"), unbcd(sec & 0x7F, "seconds"))
    except ValueError as exc:
        raise SensorFault("bad_time", str(exc)) from None


@dataclass(frozen=True)
class Ds3231Options:
    bus: int = 1
    address: int = 0x68
    poll_interval_s: float = 0.0  # nothing to poll: read at boot, written after NTP sync


class Ds3231(I2cSensor):
    Options: ClassVar[type] = Ds3231Options

    async def read_time(self) -> dt.datetime | None:
        """The RTC's time (naive, as written: kioskd keeps it in UTC); None if OSF says it is lost."""
        try:
            status = await self.io(self.bus.read_byte_data, self.address, REG_STATUS)
            regs = await self.io(self.bus.read_i2c_block_data, self.address, REG_TIME, 7)
            if status & OSF:
                raise SensorFault("rtc_time_lost", "oscillator stopped (OSF): time not valid")
            return decode_time(regs)
        except SensorFault as exc:
            self._faulted(exc)
            if exc.code == "rtc_time_lost":
                return None
            raise

    async def write_time(self, when: dt.datetime) -> None:
        """Set the RTC (after NTP sync) and clear OSF so the time counts as valid again."""
        try:
            await self.io(self.bus.write_i2c_block_data, self.address, REG_TIME, encode_time(when))
            status = await self.io(self.bus.read_byte_data, self.address, REG_STATUS)
            await self.io(self.bus.write_byte_data, self.address, REG_STATUS, status & ~OSF & 0xFF)
        except SensorFault as exc:
            self._faulted(exc)
            raise
        self.fault = None
        self.set_health(Health.OK)

    async def sample(self) -> dict[str, Any]:
        when = await self.read_time()
        msb, lsb = await self.io(self.bus.read_i2c_block_data, self.address, REG_TEMP, 2)
        raw = ((msb << 8 | lsb) >> 6) - (1024 if msb & 0x80 else 0)  # 10-bit two's complement, 0.25 °C
        return {"time": when.isoformat() if when else None, "temperature_c": raw * 0.25}

"""Sensirion SHT3x cabinet temperature / humidity, single-shot, CRC-checked (SHT3x-DIS datasheet).

Why single shot without clock stretching (command 0x2400): the Pi's I2C controller handles clock
stretching badly, and a measurement every poll is all a cabinet needs. The wait for the result
is an ``asyncio.sleep`` on the loop, not a blocked thread.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from smbus2 import i2c_msg

from ..device import Health
from .base import I2cSensor, SensorFault

CMD_SINGLE_SHOT_HIGH = (0x24, 0x00)  # Table 9: repeatability high, clock stretching disabled
MEASURE_S = 0.016  # Table 4: max 15.5 ms at high repeatability


def crc8(data: bytes) -> int:
    """§4.12: CRC-8, polynomial 0x31 (x^8+x^5+x^4+1), init 0xFF; CRC(0xBEEF) = 0x92."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1) ^ 0x31 if crc & 0x80 else crc << 1
            crc &= 0xFF
    return crc


def convert(raw: bytes) -> tuple[float, float]:
    """Six bytes T_MSB T_LSB CRC RH_MSB RH_LSB CRC -> (°C, %RH) per §4.13; SensorFault on CRC."""
    if len(raw) != 6:
        raise SensorFault("short_read", f"{len(raw)} bytes")
    for word, crc in ((raw[0:2], raw[2]), (raw[3:5], raw[5])):
        if crc8(word) != crc:
            raise SensorFault("crc", f"CRC {crc:#04x} != {crc8(word):#04x} for {word.hex()}")
    st = int.from_bytes(raw[0:2], "big")
    srh = int.from_bytes(raw[3:5], "big")
    return -45 + 175 * st / 65535, 100 * srh / 65535


@dataclass(frozen=True)
class Sht3xOptions:
    bus: int = 1  # /dev/i2c-1 on a Pi; -1 = simulated chips
    address: int = 0x44  # ADDR pin low; 0x45 with ADDR high
    poll_interval_s: float = 30.0  # 0 = no polling (read() on demand)
    min_temperature_c: float = -10.0  # below: printers and LCDs misbehave
    max_temperature_c: float = 50.0  # above: thermal paper and the Pi suffer
    max_humidity_pct: float = 85.0  # above: condensation on the bill path


class Sht3x(I2cSensor):
    Options: ClassVar[type] = Sht3xOptions

    def __init__(self, name, options, ctx) -> None:
        super().__init__(name, options, ctx)
        self.alarms: set[str] = set()

    async def sample(self) -> dict[str, Any]:
        addr = self.address
        await self.io(self.bus.i2c_rdwr, i2c_msg.write(addr, list(CMD_SINGLE_SHOT_HIGH)))
        await asyncio.sleep(MEASURE_S)
        msg = i2c_msg.read(addr, 6)
        try:
            await self.io(self.bus.i2c_rdwr, msg)
        except SensorFault as exc:
            if exc.code != "nack":
                raise
            await asyncio.sleep(MEASURE_S)  # §4.5: NACK on the read header = not ready yet; once more
            msg = i2c_msg.read(addr, 6)
            await self.io(self.bus.i2c_rdwr, msg)
        temperature, humidity = convert(bytes(msg))
        return {"temperature_c": round(temperature, 2), "humidity_pct": round(humidity, 2)}

    def check(self, values: dict[str, Any]) -> None:
        t, rh = values["temperature_c"], values["humidity_pct"]
        now = set()
        if t > self.options.max_temperature_c:
            now.add("over_temperature")
        if t < self.options.min_temperature_c:
            now.add("under_temperature")
        if rh > self.options.max_humidity_pct:
            now.add("high_humidity")
        for code in sorted(now - self.alarms):
            self.report("climate", code, f"{self.name}: {t:.1f} °C, {rh:.0f} %RH", **values)
        for code in sorted(self.alarms - now):
            self.report("climate_ok", code, f"{self.name}: {t:.1f} °C, {rh:.0f} %RH", **values)
        self.alarms = now
        if now:
            self.set_health(Health.DEGRADED, ", ".join(sorted(now)))

    def _degraded(self) -> bool:
        return bool(self.alarms)

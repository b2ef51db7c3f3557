"""TI INA219 power monitor on the kiosk's supply / UPS battery (SBOS448): volts, amps, power-fail.

Why it matters: when the mains fails the UPS keeps the Pi alive for minutes; kioskd must see it
at once (bus voltage sagging below ``power_fail_v``, or current flowing out of the battery),
inhibit the acceptors, let the transaction in flight finish, and shut down cleanly while the
battery still has charge (``battery_low_v``), or serve again if the mains comes back first.
``on(kind, callback)`` for "power_fail", "power_restored" and "battery_low" is the controller's
hook (``on_power_fail`` the first of them); ``report(kind, ...)`` journals each.
"""
from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from .base import I2cSensor, SensorFault

# Register pointers (Table 2)
REG_CONFIG, REG_SHUNT, REG_BUS, REG_POWER, REG_CURRENT, REG_CALIBRATION = range(6)
# Config (§8.6.2.1): BRNG=1 (32 V), PG=11 (/8, ±320 mV), BADC=SADC=0011 (12-bit), MODE=111 continuous
CONFIG_32V_320MV = 0x399F


def signed16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def calibration(shunt_ohms: float, max_current_a: float) -> tuple[int, float]:
    """§8.5.1 eq. 1-2: Current_LSB >= max / 2^15, Cal = trunc(0.04096 / (Current_LSB * R)).

    As the datasheet's example does, the minimum LSB is rounded up to a round number (1-2-5 steps)
    so amps are exact multiples. Returns (cal, the Current_LSB that cal really gives).
    """
    minimum = max_current_a / 32768
    exponent = math.floor(math.log10(minimum))
    current_lsb = next(m * 10.0**exponent for m in (1, 2, 5, 10) if m * 10.0**exponent >= minimum * (1 - 1e-9))
    cal = int(0.04096 / (current_lsb * shunt_ohms)) & 0xFFFE  # bit 0 is not implemented
    if not 0 < cal <= 0xFFFE:
        raise ValueError("shunt_ohms/max_current_a give a calibration outside 1..65534")
    return cal, 0.04096 / (cal * shunt_ohms)


@dataclass(frozen=True)
class Ina219Options:
    bus: int = 1
    address: int = 0x40  # A0 = A1 = GND
    poll_interval_s: float = 0.05  # power-fail must be seen fast: mains lost -> inhibited in < 100 ms
    shunt_ohms: float = 0.1
    max_current_a: float = 3.2
    power_fail_v: float = 11.0  # bus volts below this: on battery / supply failing
    power_ok_v: float = 11.8  # and back above this (hysteresis) before "power_restored"
    battery_low_v: float = 10.5  # on battery and below this: stop kioskd now, before the UPS cuts out
    discharge_a: float = 0.0  # > 0: current below -discharge_a (out of the battery) = on battery too


class Ina219(I2cSensor):
    Options: ClassVar[type] = Ina219Options

    def __init__(self, name, options, ctx) -> None:
        super().__init__(name, options, ctx)
        self.cal, self.current_lsb = calibration(options.shunt_ohms, options.max_current_a)
        self.on_battery = False
        self.battery_low = False
        self._hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}

    def on(self, kind: str, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``callback(reading)`` (sync or async) on the loop for ``kind``: "power_fail" (on
        battery), "power_restored" (mains back), "battery_low" (below ``battery_low_v`` on battery)."""
        self._hooks.setdefault(kind, []).append(callback)

    def on_power_fail(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        self.on("power_fail", callback)

    def _emit(self, kind: str, values: dict[str, Any]) -> None:
        for hook in list(self._hooks.get(kind, [])):
            result = hook(values)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)

    async def _write_reg(self, reg: int, value: int) -> None:
        await self.io(self.bus.write_i2c_block_data, self.address, reg, [value >> 8, value & 0xFF])  # MSB first (§8.5.6)

    def _registers(self, *regs: int) -> list[int]:
        """Read ``regs`` in the worker thread; one thread hop per sample, not one per register
        (a loaded Pi's hops, not the bus, were most of the power-fail detection time)."""
        out = []
        for reg in regs:
            data = self.bus.read_i2c_block_data(self.address, reg, 2)
            if len(data) != 2:
                raise SensorFault("short_read", f"register {reg}")
            out.append((data[0] << 8) | data[1])
        return out

    async def setup(self) -> None:
        await self._write_reg(REG_CONFIG, CONFIG_32V_320MV)
        await self._write_reg(REG_CALIBRATION, self.cal)

    async def sample(self) -> dict[str, Any]:
        regs = (REG_CALIBRATION, REG_BUS, REG_SHUNT, REG_CURRENT, REG_POWER)
        cal, bus, shunt, current, power = await self.io(self._registers, *regs)
        if cal != self.cal:
            # A brown-out reset the chip (calibration back to 0): current would read 0. Redo it.
            self.report("sensor_reset", "ina219_reset", f"{self.name}: calibration lost, rewritten")
            await self.setup()
            cal, bus, shunt, current, power = await self.io(self._registers, *regs)
        if bus & 0x1:
            raise SensorFault("overflow", "power/current math overflow (OVF): shunt or range wrong")
        shunt, current = signed16(shunt), signed16(current)
        return {
            "bus_v": round((bus >> 3) * 0.004, 3),  # bits 15-3, LSB 4 mV (§8.6.3.2)
            "shunt_mv": round(shunt * 0.01, 2),  # LSB 10 µV, two's complement (§8.6.3.1)
            "current_a": round(current * self.current_lsb, 4),  # signed: negative = flowing back
            "power_w": round(power * 20 * self.current_lsb, 3),  # Power_LSB = 20 * Current_LSB
        }

    def check(self, values: dict[str, Any]) -> None:
        volts, amps = values["bus_v"], values["current_a"]
        discharging = self.options.discharge_a > 0 and amps < -self.options.discharge_a
        if not self.on_battery and (volts < self.options.power_fail_v or discharging):
            self.on_battery = True
            why = "discharging" if discharging and volts >= self.options.power_fail_v else "low_voltage"
            self.report("power_fail", why, f"{self.name}: {volts:.2f} V, {amps:+.3f} A", **values)
            self._emit("power_fail", values)
        elif self.on_battery and volts >= self.options.power_ok_v and not discharging:
            self.on_battery = self.battery_low = False
            self.report("power_restored", "", f"{self.name}: {volts:.2f} V, {amps:+.3f} A", **values)
            self._emit("power_restored", values)
        if self.on_battery and not self.battery_low and volts < self.options.battery_low_v:
            self.battery_low = True
            self.report("battery_low", "", f"{self.name}: {volts:.2f} V on battery, below {self.options.battery_low_v} V",
                        **values)
            self._emit("battery_low", values)

"""Register-level models of the kiosk's I2C chips behind an smbus2-like bus object.

There is no /dev/i2c-* on CI (test-environment.md), so the sensor drivers are tested against
these models, written from the datasheets (Sensirion SHT3x-DIS, TI INA219 SBOS448, Maxim
DS3231), not from our drivers. Each chip sees what the wire carries: a write transaction
(bytes after the address) or a read transaction (n bytes back). ``SimSMBus`` turns the smbus2
calls into those transactions the way the Linux i2c-dev/SMBus layer does, and a NACK is
``OSError(121, 'Remote I/O error')`` as the kernel reports it.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import errno
import threading
import time
from typing import Any, Callable

I2C_M_RD = 0x0001  # linux/i2c.h


def nack() -> OSError:
    return OSError(errno.EREMOTEIO, "Remote I/O error")


class I2cChip:
    address: int = 0

    def __init__(self) -> None:
        self.nack = False  # scripted: the chip stops acknowledging (unplugged, dead)

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        raise NotImplementedError


def sht3x_crc(data: bytes) -> int:
    """SHT3x datasheet §4.12: CRC-8, polynomial 0x31, init 0xFF, no reflection, no final XOR."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class Sht3xModel(I2cChip):
    """SHT3x: 16-bit commands, single-shot results as T(2)+CRC, RH(2)+CRC (datasheet §4.3-4.5)."""

    # Single shot, clock stretching disabled (Table 9): command -> max duration (s, Table 4)
    SINGLE_SHOT = {0x2400: 0.0155, 0x240B: 0.0065, 0x2416: 0.0045}
    STRETCH = {0x2C06: 0.0155, 0x2C0D: 0.0065, 0x2C10: 0.0045}  # clock stretching: data ready at once here

    def __init__(self, address: int = 0x44, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.address = address
        self.clock = clock
        self.temperature_c = 22.5
        self.humidity_pct = 45.0
        self.crc_errors = 0  # scripted: corrupt the CRC of the next n results
        self.status = 0x0010  # §4.11: bit 4 "system reset detected" after power-up
        self._ready_at: float | None = None
        self._result: bytes | None = None
        self.measurements = 0

    def raw(self) -> tuple[int, int]:
        """§4.13: T = -45 + 175 * S_T / (2^16 - 1); RH = 100 * S_RH / (2^16 - 1)."""
        st = round((self.temperature_c + 45) * 65535 / 175)
        srh = round(self.humidity_pct * 65535 / 100)
        return max(0, min(65535, st)), max(0, min(65535, srh))

    def write(self, data: bytes) -> None:
        if self.nack or len(data) < 2:
            raise nack()
        cmd = (data[0] << 8) | data[1]
        if cmd in self.SINGLE_SHOT or cmd in self.STRETCH:
            duration = self.SINGLE_SHOT.get(cmd, 0.0)
            self._ready_at = self.clock() + duration
            self._result = self._measure()
        elif cmd == 0x30A2:  # soft reset §4.9
            self._result, self._ready_at, self.status = None, None, 0x0010
        elif cmd == 0xF32D:  # read status §4.11
            word = self.status.to_bytes(2, "big")
            self._result, self._ready_at = word + bytes([sht3x_crc(word)]), self.clock()
        elif cmd == 0x3041:  # clear status
            self.status = 0
        else:
            raise nack()  # an invalid command is not acknowledged (Low confidence: §4.1 wording)

    def _measure(self) -> bytes:
        self.measurements += 1
        st, srh = self.raw()
        t, rh = st.to_bytes(2, "big"), srh.to_bytes(2, "big")
        t_crc, rh_crc = sht3x_crc(t), sht3x_crc(rh)
        if self.crc_errors > 0:
            self.crc_errors -= 1
            t_crc ^= 0x01
        return t + bytes([t_crc]) + rh + bytes([rh_crc])

    def read(self, n: int) -> bytes:
        # §4.5: without clock stretching the sensor NACKs the read header until the data is ready,
        # and after the data was read there is nothing left to read.
        if self.nack or self._result is None or self._ready_at is None or self.clock() < self._ready_at:
            raise nack()
        data, self._result = self._result, None
        return (data + b"\xff" * n)[:n]


class Ina219Model(I2cChip):
    """INA219: pointer register + 16-bit registers, MSB first (SBOS448 §8.5.6, Tables 3-8)."""

    def __init__(self, address: int = 0x40) -> None:
        super().__init__()
        self.address = address
        self.pointer = 0
        self.config = 0x399F  # power-on default (§8.6.2.1): 32 V range, PGA /8, 12-bit, continuous
        self.calibration = 0
        self.shunt_uv = 0  # scripted shunt voltage in µV (signed): current * shunt resistance
        self.bus_mv = 12000
        self.cnvr = True

    def set_current(self, amps: float, shunt_ohms: float) -> None:
        self.shunt_uv = round(amps * shunt_ohms * 1_000_000)

    def reset(self) -> None:
        """A brown-out or RST bit: every register back to its default (§8.6.2.1)."""
        self.config, self.calibration = 0x399F, 0

    # register contents (§8.6.3)
    def _shunt_reg(self) -> int:
        pga = (self.config >> 11) & 0x3
        limit = 4000 << pga  # ±40 mV * 2^pga in 10 µV LSBs
        return max(-limit, min(limit, round(self.shunt_uv / 10)))

    def _bus_reg(self) -> int:
        full_scale = 32000 if self.config & 0x2000 else 16000
        mv = max(0, min(self.bus_mv, full_scale))
        ovf = int(abs(self._current_raw()) > 32767)  # math overflow flag (§8.6.3.3)
        return ((mv // 4) << 3) | (0x2 if self.cnvr else 0) | ovf

    def _current_raw(self) -> int:
        # §8.5.1 equation 4: Current = ShuntVoltage * Calibration / 4096 (integer math, toward zero)
        return int(self._shunt_reg() * self.calibration / 4096)

    def _register(self, reg: int) -> int:
        if reg == 0:
            return self.config
        if reg == 1:
            return self._shunt_reg() & 0xFFFF
        if reg == 2:
            return self._bus_reg()
        if reg == 3:  # power = current * bus voltage / 5000 (eq. 5); reading it clears CNVR
            self.cnvr = False
            current = max(-32768, min(32767, self._current_raw()))
            return min(0xFFFF, abs(current) * (self._bus_reg() >> 3) // 5000)
        if reg == 4:
            return max(-32768, min(32767, self._current_raw())) & 0xFFFF
        if reg == 5:
            return self.calibration
        return 0

    def write(self, data: bytes) -> None:
        if self.nack or not data:
            raise nack()
        self.pointer = data[0]
        if len(data) >= 3:
            value = (data[1] << 8) | data[2]
            if self.pointer == 0:
                if value & 0x8000:
                    self.reset()
                else:
                    self.config = value
                self.cnvr = True
            elif self.pointer == 5:
                self.calibration = value & 0xFFFE  # bit 0 is not used, reads 0 (§8.6.3.6)

    def read(self, n: int) -> bytes:
        if self.nack:
            raise nack()
        word = self._register(self.pointer).to_bytes(2, "big")
        return (word * ((n + 1) // 2))[:n]


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


class Ds3231Model(I2cChip):
    """DS3231 registers 00h-12h (datasheet Figure 1): BCD time, century bit 7 of 05h, OSF in 0Fh.

    Time runs from the host clock; the century bit is what was written, toggled once for each
    year-register overflow 99 -> 00 since then (datasheet: "toggled when the years register
    overflows from 99 to 00").
    """

    def __init__(self, address: int = 0x68, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.address = address
        self.clock = clock
        self.pointer = 0
        self._base = dt.datetime(2000, 1, 1)
        self._base_at = clock()
        self._century = 0
        self.control = 0x1C  # power-on: INTCN=1, RS2=RS1=1
        self.status = 0x88  # power-on: OSF=1 (time not valid), EN32kHz=1
        self.temperature_c = 25.0
        self._latched: bytearray | None = None
        self._written: dict[int, int] = {}

    def set_time(self, when: dt.datetime, century: int | None = None) -> None:
        """Scripted: the chip's time (century bit from the year unless given)."""
        self._base, self._base_at = when.replace(microsecond=0), self.clock()
        self._century = (when.year // 100) % 2 if century is None else century

    def now(self) -> tuple[dt.datetime, int]:
        elapsed = int(self.clock() - self._base_at)
        now = self._base + dt.timedelta(seconds=elapsed)
        overflows = now.year // 100 - self._base.year // 100
        return now, (self._century + overflows) % 2

    def _registers(self) -> bytearray:
        now, century = self.now()
        regs = bytearray(0x13)
        regs[0:7] = bytes([
            _bcd(now.second), _bcd(now.minute), _bcd(now.hour),  # hours: bit 6 = 0, 24-hour mode
            now.isoweekday(), _bcd(now.day), (century << 7) | _bcd(now.month), _bcd(now.year % 100),
        ])
        regs[0x0E], regs[0x0F] = self.control, self.status
        t = round(self.temperature_c * 4)  # 0x11 MSB integer (two's complement), 0x12 bits 7-6 quarters
        regs[0x11], regs[0x12] = (t >> 2) & 0xFF, (t & 0x3) << 6
        return regs

    def write(self, data: bytes) -> None:
        if self.nack or not data:
            raise nack()
        self.pointer = data[0] % 0x13
        for byte in data[1:]:
            self._store(self.pointer, byte)
            self.pointer = (self.pointer + 1) % 0x13  # auto-increment wraps after 12h
        if self._written and set(self._written) & set(range(7)):
            self._apply_time()

    def _store(self, reg: int, byte: int) -> None:
        if reg < 7:
            self._written[reg] = byte
        elif reg == 0x0E:
            self.control = byte
        elif reg == 0x0F:
            self.status = (self.status & ~0x88 & 0xFF) | (byte & 0x08) | (self.status & byte & 0x80)  # OSF: write 0 to clear

    def _apply_time(self) -> None:
        regs = self._registers()
        for reg, byte in self._written.items():
            regs[reg] = byte
        self._written.clear()
        hour_reg = regs[2]
        if hour_reg & 0x40:  # 12-hour mode: bit 5 PM
            hour = _unbcd(hour_reg & 0x1F) % 12 + (12 if hour_reg & 0x20 else 0)
        else:
            hour = _unbcd(hour_reg & 0x3F)
        century = regs[5] >> 7
        try:
            when = dt.datetime(2000 + _unbcd(regs[6]), _unbcd(regs[5] & 0x1F), _unbcd(regs[4]),
                               hour, _unbcd(regs[1]), _unbcd(regs[0] & 0x7F))
        except ValueError:
            return  # nonsense BCD: the real chip would count from it; keep the old time here
        self._base, self._base_at, self._century = when, self.clock(), century

    def read(self, n: int) -> bytes:
        if self.nack:
            raise nack()
        regs = self._registers()
        out = bytearray()
        for _ in range(n):
            out.append(regs[self.pointer])
            self.pointer = (self.pointer + 1) % 0x13
        return bytes(out)


class SimSMBus:
    """The smbus2.SMBus methods our drivers use, carried out as I2C transactions on chip models."""

    def __init__(self, chips: list[I2cChip] | None = None, bus: int = -1) -> None:
        self.bus = bus
        self.chips: dict[int, I2cChip] = {c.address: c for c in chips or []}
        self._lock = threading.Lock()  # drivers call from worker threads
        self.transactions = 0

    @classmethod
    def with_default_chips(cls) -> "SimSMBus":
        """One of each at its datasheet default address: SHT3x 0x44, INA219 0x40, DS3231 0x68."""
        return cls([Sht3xModel(), Ina219Model(), Ds3231Model()])

    def add(self, chip: I2cChip) -> I2cChip:
        self.chips[chip.address] = chip
        return chip

    def chip(self, address: int) -> Any:
        return self.chips[address]

    def _chip(self, address: int) -> I2cChip:
        chip = self.chips.get(address)
        if chip is None:
            raise nack()  # nobody acknowledges the address
        return chip

    def _write(self, address: int, data: bytes) -> None:
        with self._lock:
            self.transactions += 1
            self._chip(address).write(bytes(data))

    def _write_read(self, address: int, data: bytes, n: int) -> bytes:
        with self._lock:  # write, repeated start, read: one combined transaction
            self.transactions += 1
            chip = self._chip(address)
            chip.write(bytes(data))
            return chip.read(n)

    # -- smbus2 API --------------------------------------------------------------------
    def i2c_rdwr(self, *msgs: Any) -> None:
        with self._lock:
            self.transactions += 1
            for msg in msgs:
                chip = self._chip(msg.addr)
                if msg.flags & I2C_M_RD:
                    data = chip.read(msg.len)
                    ctypes.memmove(msg.buf, data, msg.len)
                else:
                    chip.write(bytes(msg))

    def read_byte_data(self, address: int, register: int) -> int:
        return self._write_read(address, bytes([register]), 1)[0]

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self._write(address, bytes([register, value]))

    def read_word_data(self, address: int, register: int) -> int:
        lo, hi = self._write_read(address, bytes([register]), 2)  # SMBus words are LSB first
        return lo | (hi << 8)

    def write_word_data(self, address: int, register: int, value: int) -> None:
        self._write(address, bytes([register, value & 0xFF, value >> 8]))

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        return list(self._write_read(address, bytes([register]), length))

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        self._write(address, bytes([register, *data]))

    def close(self) -> None:
        pass

    def __enter__(self) -> "SimSMBus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What the I2C sensor drivers share: where the SMBus comes from, the poll loop, fault naming.

smbus2 calls block, so every bus transaction runs in a worker thread (``asyncio.to_thread``);
waits between a command and its result (SHT3x conversion time) are ``asyncio.sleep`` on the loop.
On a Pi the bus is ``smbus2.SMBus(bus)``; under --simulate, or with ``bus = -1`` in kiosk.toml,
it is the register-level chip models of hal/emulators/i2c_chips.py, one shared bus per kiosk.
"""
from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any, Callable, ClassVar, TypeVar

from ..device import Device, DeviceError, Health

log = logging.getLogger(__name__)
T = TypeVar("T")

SIM_BUS_KEY = "i2c-sim"


class SensorFault(Exception):
    """A reading that must not be believed; ``code`` names why (crc, nack, io_error, ...)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


def open_bus(bus: int, ctx: Any) -> Any:
    """The SMBus object for ``bus``: real smbus2 on a Pi, the shared chip models when simulating."""
    if ctx.simulate or bus < 0:
        from ..emulators.i2c_chips import SimSMBus

        return ctx.share(SIM_BUS_KEY, SimSMBus.with_default_chips)
    try:
        from smbus2 import SMBus  # lazy: only kiosks with I2C sensors pay for the import

        return ctx.share(f"i2c-{bus}", lambda: SMBus(bus))
    except (OSError, ImportError) as exc:
        raise DeviceError(f"cannot open /dev/i2c-{bus}: {exc}") from exc


def io_fault(exc: OSError) -> SensorFault:
    """Name what the kernel said: EREMOTEIO (121) / ENXIO is a NACK, anything else an I/O error."""
    if exc.errno in (errno.EREMOTEIO, errno.ENXIO, errno.EIO):
        return SensorFault("nack", f"no acknowledge ({exc.strerror or exc})")
    if exc.errno == errno.ETIMEDOUT:
        return SensorFault("bus_timeout", str(exc))
    return SensorFault("io_error", str(exc))


class I2cSensor(Device):
    """Base of the I2C drivers: ``sample()`` (one reading, may raise SensorFault) polled on a timer.

    ``latest`` holds the last good reading for telemetry; a fault is reported once when it
    begins and a "recovered" event when readings are good again (no event storm from a poll loop).
    """

    kind: ClassVar[str] = "sensor"

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self.bus: Any = None
        self.latest: dict[str, Any] = {}
        self.fault: str | None = None
        self._task: asyncio.Task | None = None

    @property
    def address(self) -> int:
        return self.options.address

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """One blocking smbus2 call in a worker thread; OSError becomes a named SensorFault."""
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise io_fault(exc) from None

    async def start(self) -> None:
        self.bus = open_bus(self.options.bus, self.ctx)
        try:
            await self.setup()
        except SensorFault as exc:
            self._faulted(exc)
        if self.options.poll_interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def setup(self) -> None:
        """Configure the chip once (calibration, mode); may raise SensorFault."""

    async def sample(self) -> dict[str, Any]:
        raise NotImplementedError

    async def read(self) -> dict[str, Any]:
        """Sample now; on a fault, report it and re-raise so the caller knows the value is missing."""
        try:
            values = await self.sample()
        except SensorFault as exc:
            self._faulted(exc)
            raise
        self.latest = values
        if self.fault is not None:
            self.report("recovered", self.fault, f"{self.name}: readings good again")
            self.fault = None
        self.check(values)
        if self.health != Health.OK and not self._degraded():
            self.set_health(Health.OK)
        return values

    def check(self, values: dict[str, Any]) -> None:
        """Compare a good reading with the configured thresholds (subclasses)."""

    def _degraded(self) -> bool:
        return False

    def _faulted(self, exc: SensorFault) -> None:
        if self.fault != exc.code:
            self.report("fault", exc.code, f"{self.name}@{self.address:#04x}: {exc}")
        self.fault = exc.code
        self.set_health(Health.FAULT, str(exc))

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.read()
            except SensorFault:
                pass
            except Exception:  # a driver bug must not kill the poller silently
                log.exception("%s: poll failed", self.name)
            await asyncio.sleep(self.options.poll_interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def self_test(self) -> str:
        try:
            values = await self.read()
        except SensorFault as exc:
            return f"{self.name}: FAULT {exc}"
        return f"{self.name}: " + ", ".join(f"{k}={v}" for k, v in values.items())

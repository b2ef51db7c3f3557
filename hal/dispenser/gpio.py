"""A bare card dispenser on GPIO: a motor relay, an exit (gate) sensor, optional empty/capture lines.

For the cheap mechanisms with no protocol at all: the Pi runs the motor until the exit sensor
sees the card, and watches the same sensor to know the card was taken. gpiozero's edge
callbacks arrive on its own threads; they are handed to the loop with call_soon_threadsafe and
only the loop touches driver state. MockPin ignores bounce_time, so "taken" has its own
debounce here: the gate must stay clear for ``taken_clear_s`` (fingers flicker a sensor).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from ..device import DeviceError
from ..peripherals import DispenserStatus
from .common import DispenserBase


class GpioDispenser(DispenserBase):
    @dataclass(frozen=True)
    class Options:
        motor_pin: int  # BCM number of the motor relay output
        exit_pin: int  # BCM number of the exit (gate) sensor input
        empty_pin: int = -1  # stacker-empty sensor input; -1: not fitted
        near_empty_pin: int = -1  # low-stock sensor input; -1: not fitted
        capture_pin: int = -1  # reverse/capture relay output; -1: this unit cannot capture
        pin_factory: str = "lgpio"  # "lgpio" on the Pi, "mock" for tests (forced in --simulate)
        motor_active_high: bool = True
        sensors_active_low: bool = True  # optical sensors with pull-up pull the line low when blocked
        dispense_timeout_s: float = 3.0  # motor on this long without a card at the gate = jam
        capture_time_s: float = 1.5  # capture relay on this long
        taken_clear_s: float = 0.3  # the gate must stay clear this long to count as taken
        poll_interval_s: float = 0.05
        take_timeout_s: float = 30.0

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self._devices: list[Any] = []
        self.motor: Any = None
        self.capture_relay: Any = None
        self.exit_sensor: Any = None
        self.empty_sensor: Any = None
        self.low_sensor: Any = None
        self._at_gate = False  # loop-side copy of the exit sensor, fed by callbacks
        self._changed: asyncio.Event | None = None
        self._jammed = False

    # -- lifecycle -----------------------------------------------------------------------
    def _factory(self) -> Any:
        kind = self.options.pin_factory
        if self.ctx.simulate or kind == "mock":
            from gpiozero.pins.mock import MockFactory

            return self.ctx.share("gpio-mock", MockFactory)
        if kind == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory  # explicit: auto-detection breaks on Pi 5

            return LGPIOFactory()
        raise DeviceError(f"{self.name}: pin_factory {kind!r}: expected 'lgpio' or 'mock'")

    async def start(self) -> None:
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        o = self.options
        factory = self._factory()
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

        def output(pin: int) -> Any:
            dev = DigitalOutputDevice(pin, active_high=o.motor_active_high, initial_value=False, pin_factory=factory)
            self._devices.append(dev)
            return dev

        def sensor(pin: int) -> Any:
            dev = DigitalInputDevice(pin, pull_up=o.sensors_active_low, pin_factory=factory)
            self._devices.append(dev)
            return dev

        self.motor = output(o.motor_pin)
        if o.capture_pin >= 0:
            self.capture_relay = output(o.capture_pin)
        self.exit_sensor = sensor(o.exit_pin)
        if o.empty_pin >= 0:
            self.empty_sensor = sensor(o.empty_pin)
        if o.near_empty_pin >= 0:
            self.low_sensor = sensor(o.near_empty_pin)
        # gpiozero threads -> the loop; never touch driver state from those threads
        self.exit_sensor.when_activated = lambda: loop.call_soon_threadsafe(self._exit_seen, True)
        self.exit_sensor.when_deactivated = lambda: loop.call_soon_threadsafe(self._exit_seen, False)
        self._at_gate = bool(self.exit_sensor.is_active)
        self.note_status(await self.status())

    async def stop(self) -> None:
        await self.safe_state()
        for dev in reversed(self._devices):
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - stop must not raise
                pass
        self._devices.clear()

    async def safe_state(self) -> None:
        """Motors off: nothing moves while the door is open or the kiosk shuts down."""
        for relay in (self.motor, self.capture_relay):
            if relay is not None and not relay.closed:
                relay.off()

    async def self_test(self) -> str:
        st = await self.status()
        return f"{self.name}: ok, empty {st.empty}, card at gate {st.card_at_gate} (motor not run)"

    # -- sensors -------------------------------------------------------------------------
    def _exit_seen(self, blocked: bool) -> None:
        self._at_gate = blocked
        if self._changed is not None:
            self._changed.set()

    async def _until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait for ``predicate`` to hold, woken by sensor edges; False after ``timeout``."""
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    # -- CardDispenser -------------------------------------------------------------------
    async def status(self) -> DispenserStatus:
        return self.note_status(
            DispenserStatus(
                known=True,
                empty=bool(self.empty_sensor and self.empty_sensor.is_active),
                near_empty=bool(self.low_sensor and self.low_sensor.is_active),
                jammed=self._jammed,
                card_at_gate=self._at_gate,
            )
        )

    async def reset(self) -> DispenserStatus:
        """Motor off and forget a jam (after a technician cleared the channel)."""
        await self.safe_state()
        self._jammed = False
        return await self.status()

    async def dispense_to_gate(self) -> None:
        st = await self.status()
        if st.card_at_gate:
            self.fail("card_at_gate", "an earlier card is still at the gate")
        if st.empty:
            self.fail("empty", "stacker empty sensor")
        self.motor.on()
        try:
            arrived = await self._until(lambda: self._at_gate, self.options.dispense_timeout_s)
        finally:
            self.motor.off()
        if not arrived:
            self._jammed = True
            self.fail("jam", f"exit sensor saw no card within {self.options.dispense_timeout_s:g} s")
        self._jammed = False
        self.note_status(await self.status())

    async def wait_taken(self, timeout: float) -> bool:
        """True once the gate is clear and stays clear ``taken_clear_s``; False after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not await self._until(lambda: not self._at_gate, deadline - loop.time()):
                return False
            if not await self._until(lambda: self._at_gate, self.options.taken_clear_s):
                return True  # stayed clear: the card is gone, not a finger on the sensor

    async def capture(self) -> None:
        if self.capture_relay is None:
            self.fail("unsupported", "no capture relay wired (capture_pin)")
        self.capture_relay.on()
        try:
            await asyncio.sleep(self.options.capture_time_s)
        finally:
            self.capture_relay.off()
        if self._at_gate:
            self.fail("capture_failed", "the card is still at the gate after capturing")
        self.note_status(await self.status())

    async def move_to_read_position(self) -> None:
        self.fail("unsupported", "a GPIO dispenser has no read position")

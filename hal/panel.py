"""The kiosk's GPIO panel: door/tamper switches, service button, cash-box switch, status LEDs, relays.

Why it exists: a door opening must inhibit every acceptor within 100 ms (design "Security"). The
controller registers ``on_door_open(callback)``; the edge arrives on gpiozero's thread, is handed
to the loop with ``call_soon_threadsafe`` and the callbacks run in that very loop callback,
before anything else is reported. Door/tamper opening is never debounced (acting twice is
harmless, acting late is not); closing, the cash box and the service button are settled /
debounced here, because gpiozero's MockPin ignores ``bounce_time`` and real switches bounce.

The pin factory is chosen explicitly (test-environment.md: auto-detection broke on Pi 5):
``pin_factory = "lgpio"`` on a Pi, ``"mock"`` (MockFactory) for tests; --simulate always uses
the mock, one per kiosk via ``ctx.share("gpio-mock", MockFactory)`` so tests can drive its pins.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from .device import Device, DeviceError, Health

log = logging.getLogger(__name__)

# LED patterns: (on seconds, off seconds); None = steady on
PATTERNS: dict[str, tuple[float, float] | None] = {"steady": None, "blink": (0.5, 0.5), "fast": (0.1, 0.1)}
# What each kiosk status shows: led -> pattern (others off)
STATUS_LEDS = {
    "ready": {"ready": "steady"},
    "busy": {"busy": "blink"},
    "fault": {"fault": "fast"},
    "service": {"busy": "steady", "fault": "blink"},
    "off": {},
}


@dataclass(frozen=True)
class GpioPanelOptions:
    pin_factory: str = "lgpio"  # "lgpio" on a Pi, "mock" for tests (--simulate forces mock)
    # BCM pin numbers, -1 = not fitted
    door_pin: int = -1
    tamper_pin: int = -1
    service_button_pin: int = -1
    cashbox_pin: int = -1
    ready_led_pin: int = -1
    busy_led_pin: int = -1
    fault_led_pin: int = -1
    relays: dict[str, int] = field(default_factory=dict)  # e.g. {"acceptor_power": 23}
    relay_active_high: bool = True
    switches_to_ground: bool = True  # switch closes the pin to GND, internal pull-up on
    settle_ms: int = 50  # closing / cash box / service button debounce


@dataclass(frozen=True)
class PanelEvent:
    kind: str  # door_open, door_closed, tamper_open, tamper_closed, service_button, cashbox_removed, cashbox_inserted
    t_edge: float  # time.perf_counter() in the GPIO thread when the edge arrived
    t_loop: float  # when the loop handled it
    initial: bool = False  # the state found at start, not an edge

    @property
    def latency_s(self) -> float:
        return self.t_loop - self.t_edge


class EventStream:
    """An async iterator over panel events with its own queue; ``close()`` unsubscribes."""

    def __init__(self, queues: list[asyncio.Queue]) -> None:
        self._queues = queues
        self._queue: asyncio.Queue = asyncio.Queue()
        queues.append(self._queue)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> PanelEvent:
        return await self._queue.get()

    def close(self) -> None:
        if self._queue in self._queues:
            self._queues.remove(self._queue)


# input key -> (event when the switch opens / is released, event when it closes / is pressed)
_INPUTS = {
    "door": ("door_open", "door_closed"),
    "tamper": ("tamper_open", "tamper_closed"),
    "cashbox": ("cashbox_removed", "cashbox_inserted"),
    "service": (None, "service_button"),
}


class GpioPanel(Device):
    kind: ClassVar[str] = "panel"
    Options: ClassVar[type] = GpioPanelOptions

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self.factory: Any = None
        self._inputs: dict[str, Any] = {}
        self._leds: dict[str, Any] = {}
        self._relays: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raw: dict[str, bool] = {}  # latest level seen per input (closed / pressed = True)
        self.closed: dict[str, bool] = {}  # settled state per input
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_press = 0.0
        self._hooks: dict[str, list[Callable[[PanelEvent], Any]]] = {}
        self._queues: list[asyncio.Queue] = []
        self.led_patterns: dict[str, str] = {}

    # -- wiring --------------------------------------------------------------------------
    def _make_factory(self) -> Any:
        choice = "mock" if self.ctx.simulate else self.options.pin_factory
        if choice == "mock":
            from gpiozero.pins.mock import MockFactory

            return self.ctx.share("gpio-mock", MockFactory)
        if choice == "lgpio":
            try:
                from gpiozero.pins.lgpio import LGPIOFactory

                return self.ctx.share("gpio-lgpio", LGPIOFactory)
            except Exception as exc:  # lgpio raises its own error types when no chip can be opened
                raise DeviceError(f"{self.name}: lgpio pin factory unavailable: {exc}") from exc
        raise DeviceError(f'{self.name}: pin_factory must be "lgpio" or "mock", not {choice!r}')

    async def start(self) -> None:
        from gpiozero import LED, DigitalInputDevice, OutputDevice

        self._loop = asyncio.get_running_loop()
        self.factory = self._make_factory()
        o = self.options
        pull_up = o.switches_to_ground
        try:
            for key, pin in (("door", o.door_pin), ("tamper", o.tamper_pin), ("service", o.service_button_pin), ("cashbox", o.cashbox_pin)):
                if pin < 0:
                    continue
                # Not gpiozero's Button: its hold thread makes close() wait up to hold_time (1 s)
                switch = DigitalInputDevice(pin, pull_up=pull_up, pin_factory=self.factory)
                if self.ctx.simulate and key != "service":
                    # A simulated cabinet boots shut, as a real kiosk does: closed before it is read,
                    # so no boot-time "initial" open event reaches the hall as an alarm.
                    mock = self.factory.pin(pin)
                    mock.drive_low() if pull_up else mock.drive_high()
                switch.when_activated = lambda key=key: self._from_thread(key, True)
                switch.when_deactivated = lambda key=key: self._from_thread(key, False)
                self._inputs[key] = switch
            for key, pin in (("ready", o.ready_led_pin), ("busy", o.busy_led_pin), ("fault", o.fault_led_pin)):
                if pin >= 0:
                    self._leds[key] = LED(pin, pin_factory=self.factory)
            for key, pin in o.relays.items():
                if pin >= 0:
                    self._relays[key] = OutputDevice(pin, active_high=o.relay_active_high, initial_value=False, pin_factory=self.factory)
        except Exception as exc:  # gpiozero raises GPIOZeroError subclasses (pin in use, bad pin)
            self._close_all()
            raise DeviceError(f"{self.name}: GPIO set-up failed: {exc}") from exc
        now = time.perf_counter()
        for key, switch in self._inputs.items():
            closed = bool(switch.is_active)
            self._raw[key] = self.closed[key] = closed
            opened_kind = _INPUTS[key][0]
            if not closed and opened_kind:
                self._emit(opened_kind, now, initial=True)
        self.set_health(Health.OK)

    def _close_all(self) -> None:
        for dev in [*self._inputs.values(), *self._leds.values(), *self._relays.values()]:
            try:
                dev.close()
            except Exception:
                pass
        self._inputs.clear()
        self._leds.clear()
        self._relays.clear()

    async def stop(self) -> None:
        try:
            await self.safe_state()
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            self._close_all()

    async def safe_state(self) -> None:
        """Relays off (acceptors unpowered), fault LED on."""
        for relay in self._relays.values():
            relay.off()
        self.set_leds({"fault": "steady"})

    async def self_test(self) -> str:
        states = ", ".join(f"{k}={'closed' if v else 'open'}" for k, v in self.closed.items())
        relays = ", ".join(f"{k}={'on' if r.value else 'off'}" for k, r in self._relays.items())
        return f"{self.name}: {states or 'no inputs'}; relays: {relays or 'none'}"

    # -- inputs --------------------------------------------------------------------------
    def _from_thread(self, key: str, closed: bool) -> None:
        """gpiozero's thread: stamp the edge and hand it to the loop, nothing else."""
        t_edge = time.perf_counter()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._edge, key, closed, t_edge)

    def _edge(self, key: str, closed: bool, t_edge: float) -> None:
        self._raw[key] = closed
        opened_kind, closed_kind = _INPUTS[key]
        if key in ("door", "tamper") and not closed:
            timer = self._timers.pop(key, None)
            if timer:
                timer.cancel()
            if self.closed.get(key, True):
                self.closed[key] = False
                self._emit(opened_kind, t_edge)  # at once: this is the 100 ms path
            return
        if key == "service":
            if closed and t_edge - self._last_press >= self.options.settle_ms / 1000:
                self._emit(closed_kind, t_edge)
            if closed:
                self._last_press = t_edge
            return
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        assert self._loop is not None
        self._timers[key] = self._loop.call_later(self.options.settle_ms / 1000, self._settled, key, t_edge)

    def _settled(self, key: str, t_edge: float) -> None:
        self._timers.pop(key, None)
        level = self._raw[key]
        if level != self.closed.get(key):
            self.closed[key] = level
            opened_kind, closed_kind = _INPUTS[key]
            self._emit(closed_kind if level else opened_kind, t_edge)

    @property
    def door_open(self) -> bool:
        return not self.closed.get("door", True) or not self.closed.get("tamper", True)

    @property
    def cashbox_present(self) -> bool | None:
        return self.closed.get("cashbox")

    # -- callbacks and the event stream --------------------------------------------------
    def on(self, kind: str, callback: Callable[[PanelEvent], Any]) -> None:
        """Call ``callback(event)`` on the loop for every ``kind`` event (sync, or async: scheduled)."""
        self._hooks.setdefault(kind, []).append(callback)

    def on_door_open(self, callback: Callable[[PanelEvent], Any]) -> None:
        """The controller's inhibit hook: runs for door_open and tamper_open, first thing on the loop."""
        self.on("door_open", callback)
        self.on("tamper_open", callback)

    def events(self) -> "EventStream":
        """Every PanelEvent from this call on (subscribed at once, not at the first ``async for``)."""
        return EventStream(self._queues)

    def _emit(self, kind: str, t_edge: float, initial: bool = False) -> None:
        event = PanelEvent(kind, t_edge, time.perf_counter(), initial)
        for callback in self._hooks.get(kind, []):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:  # one broken hook must not stop the others (or the inhibit)
                log.exception("%s: %s hook failed", self.name, kind)
        for queue in self._queues:
            queue.put_nowait(event)
        self.report(kind, "initial" if initial else "", f"{self.name}: {kind.replace('_', ' ')}")

    # -- outputs -------------------------------------------------------------------------
    def set_led(self, led: str, pattern: str) -> None:
        """``pattern``: steady, blink, fast or off. Unfitted LEDs are ignored."""
        if pattern != "off" and pattern not in PATTERNS:
            raise ValueError(f"LED pattern {pattern!r}: steady, blink, fast or off")
        self.led_patterns[led] = pattern
        device = self._leds.get(led)
        if device is None:
            return
        timing = PATTERNS.get(pattern)
        if pattern == "off":
            device.off()
        elif timing is None:
            device.on()
        else:
            device.blink(on_time=timing[0], off_time=timing[1], background=True)

    def set_leds(self, patterns: dict[str, str]) -> None:
        for led in ("ready", "busy", "fault"):
            self.set_led(led, patterns.get(led, "off"))

    def show(self, status: str) -> None:
        """Kiosk status on the LEDs: ready, busy, fault, service or off (table STATUS_LEDS)."""
        self.set_leds(STATUS_LEDS[status])

    def set_relay(self, name: str, on: bool) -> None:
        try:
            relay = self._relays[name]
        except KeyError:
            raise DeviceError(f"{self.name}: no relay {name!r} configured") from None
        relay.on() if on else relay.off()

    def relay(self, name: str) -> bool:
        return bool(self._relays[name].value)

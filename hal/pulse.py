"""Pulse-output coin and bill acceptors (CH-926 class, DG600F, pulse-mode validators).

The acceptor tells us a value by a train of N pulses on one open-collector line
(pulse-acceptors.md §2.1–2.2). We count the leading edge of each valid pulse and close the
train when the line has stayed idle for ``train_gap_ms`` (§2.3).

Why our own width check and no debounce: a debounce that blanks edges for longer than the
pulse period merges a train into one count (§2.3, the RPi.GPIO ``bouncetime`` trap), gpiozero's
own debounce drops activations (issue #1039), and MockPin ignores ``bounce_time`` anyway. So
every edge is taken with its timestamp from the pin factory (kernel time on lgpio), handed to
the event loop with ``call_soon_threadsafe``, and judged here:

* a lone pulse shorter than ``min_pulse_ms`` with nothing else around it is line noise: ignored;
* any other out-of-spec pulse (too short inside a train, longer than ``max_pulse_ms``, or a
  line stuck active) makes the count untrustworthy: ``CashFault("pulse_width")``, no credit —
  money may be in the box, so the flow holds it for review instead of guessing;
* a clean train whose count is in ``pulses_to_fen``: ``CoinAccepted(fen)``;
* a clean train with any other count: ``Rejected("pulse_count")``.

A pulse acceptor cannot refuse a coin once it is in: a train that arrives while inhibited is
still credited (the coin is in the cash box), and reported.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, ClassVar, Iterable

from .cash import CashAcceptor, CashEvent, CashFault, CoinAccepted, Rejected
from .device import DeviceContext, DeviceError, Health


@dataclass(frozen=True)
class PulseOptions:
    pin: int  # BCM number of the COIN (credit pulse) line
    pin_factory: str = "lgpio"  # "lgpio" on the Pi, "mock" for tests; --simulate forces mock
    active_low: bool = True  # NO setting: idle high through the pull-up, pulses pull low
    pull_up: bool = True  # internal pull-up to 3.3 V (open-collector output; never 12 V)
    min_pulse_ms: float = 10.0  # about half the fastest nominal width (CH-926 fast = 20 ms)
    max_pulse_ms: float = 300.0  # about 3x the slowest (100 ms); longer = stuck line
    train_gap_ms: float = 300.0  # idle time that ends a train: > the gap between pulses
    pulses_to_fen: dict[str, int] = field(default_factory=lambda: {"1": 10, "2": 50, "3": 100})
    inhibit_pin: int = -1  # relay output that inhibits the acceptor (-1: none fitted)
    inhibit_active_high: bool = True  # inhibited = relay pin driven high (False: driven low)


@dataclass
class _Train:
    count: int = 0
    short: list[float] = field(default_factory=list)  # widths in ms below min_pulse_ms
    long: list[float] = field(default_factory=list)  # widths in ms above max_pulse_ms
    stuck_reported: bool = False

    @property
    def empty(self) -> bool:
        return not (self.count or self.short or self.long or self.stuck_reported)


class PulseAcceptor(CashAcceptor):
    Options: ClassVar[type] = PulseOptions

    def __init__(self, name: str, options: PulseOptions, ctx: DeviceContext) -> None:
        super().__init__(name, options, ctx)
        self.table = {int(pulses): int(fen) for pulses, fen in options.pulses_to_fen.items()}
        if not self.table or min(self.table) < 1 or min(self.table.values()) < 1:
            raise DeviceError(f"{name}: pulses_to_fen needs pulse counts >= 1 and values >= 1 fen")
        if not 0 < options.min_pulse_ms < options.max_pulse_ms:
            raise DeviceError(f"{name}: need 0 < min_pulse_ms < max_pulse_ms")
        self.inhibited = True
        self.glitches = 0
        self.trains = 0
        self._queue: asyncio.Queue[CashEvent] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Any = None
        self._own_factory = False
        self._pin: Any = None
        self._relay: Any = None
        self._train = _Train()
        self._pulse_start: float | None = None  # factory ticks of the current leading edge
        self._end_timer: asyncio.TimerHandle | None = None
        self._stuck_timer: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _make_factory(self) -> Any:
        """One factory per device on the Pi; one shared mock board in --simulate and tests."""
        if self.ctx.simulate or self.options.pin_factory == "mock":
            from gpiozero.pins.mock import MockFactory

            return self.ctx.share("gpio-mock", MockFactory)
        if self.options.pin_factory != "lgpio":
            raise DeviceError(f"{self.name}: pin_factory must be 'lgpio' or 'mock'")
        from gpiozero.pins.lgpio import LGPIOFactory  # explicit: auto-detection broke on Pi 5

        self._own_factory = True
        return LGPIOFactory()

    async def start(self) -> None:
        from gpiozero import DigitalOutputDevice

        self._loop = asyncio.get_running_loop()
        try:
            self._factory = self._make_factory()
            if self.options.inhibit_pin >= 0:
                self._relay = DigitalOutputDevice(
                    self.options.inhibit_pin,
                    active_high=self.options.inhibit_active_high,
                    initial_value=True,  # inhibited from the first instant (safe state)
                    pin_factory=self._factory,
                )
            pin = self._factory.pin(self.options.pin)
            if pin.function != "input":
                pin.function = "input"
            pull = "up" if self.options.pull_up else "floating"
            if pin.pull != pull:
                pin.pull = pull
            pin.bounce = None  # no debounce: widths are judged here
            pin.edges = "both"
            pin.when_changed = self._edge_from_thread
            self._pin = pin
        except DeviceError:
            raise
        except Exception as exc:  # no chip, pin busy, bad pin number: a named fault, not a crash
            self.set_health(Health.FAULT, f"gpio: {exc}")
            self.report("fault", "gpio_unavailable", str(exc))
            raise DeviceError(f"{self.name}: cannot open GPIO {self.options.pin}: {exc}") from exc
        self.inhibited = True
        self.set_health(Health.OK)
        self._edge(self._factory.ticks(), self._pin.state)  # active already? then time it as a pulse

    async def stop(self) -> None:
        try:
            await self.safe_state()
        finally:
            for timer in (self._end_timer, self._stuck_timer):
                if timer:
                    timer.cancel()
            if self._pin is not None:
                self._pin.when_changed = None
                self._pin = None
            if self._relay is not None:
                self._relay.close()
                self._relay = None
            if self._own_factory and self._factory is not None:
                self._factory.close()
            self._factory = None

    async def safe_state(self) -> None:
        await self.set_inhibit(True)

    async def self_test(self) -> str:
        if self._pin is None:
            return f"{self.name}: not started"
        level = self._pin.state
        idle = (not level) != self.options.active_low
        line = "line idle" if idle else "line ACTIVE (stuck or a coin in flight)"
        relay = f", inhibit relay on GPIO {self.options.inhibit_pin}" if self._relay else ", no inhibit relay"
        return f"{self.name}: GPIO {self.options.pin} {line}{relay}, {self.trains} trains, {self.glitches} glitches"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "inhibited": self.inhibited, "trains": self.trains, "glitches": self.glitches}

    # -- the CashAcceptor interface ------------------------------------------------------
    async def events(self) -> AsyncIterator[CashEvent]:
        while True:
            yield await self._queue.get()

    async def set_inhibit(self, inhibited: bool) -> None:
        self.inhibited = inhibited
        if self._relay is not None:
            self._relay.value = inhibited  # on = inhibited, at the level the config names

    async def accept_only(self, fen_values: Iterable[int]) -> None:
        """A pulse acceptor has no per-denomination inhibit: all or nothing."""
        wanted = set(fen_values)
        await self.set_inhibit(not wanted & set(self.table.values()))

    async def stack(self) -> None:
        raise DeviceError(f"{self.name}: a pulse acceptor has no escrow")

    async def return_bill(self) -> None:
        raise DeviceError(f"{self.name}: a pulse acceptor has no escrow")

    # -- edges ---------------------------------------------------------------------------
    def _edge_from_thread(self, ticks: float, state: int) -> None:
        """gpiozero's thread: hand the edge, with its edge-time stamp, to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._edge, ticks, state)
        except RuntimeError:  # loop shutting down
            pass

    def _edge(self, ticks: float, state: int) -> None:
        if self._pin is None or self._loop is None:
            return
        active = not state if self.options.active_low else bool(state)
        if active:
            if self._pulse_start is not None:
                return  # a repeated level report, not a new edge
            self._pulse_start = ticks
            if self._end_timer:
                self._end_timer.cancel()
                self._end_timer = None
            self._stuck_timer = self._loop.call_later(self.options.max_pulse_ms / 1000, self._stuck)
            return
        if self._pulse_start is None:
            return  # trailing edge of a pulse we never saw begin (started mid-pulse)
        width_ms = self._factory.ticks_diff(ticks, self._pulse_start) * 1000
        self._pulse_start = None
        if self._stuck_timer:
            self._stuck_timer.cancel()
            self._stuck_timer = None
        if self._train.stuck_reported and self.health is Health.FAULT:
            self.set_health(Health.OK, "line released")
        if width_ms < self.options.min_pulse_ms:
            self._train.short.append(round(width_ms, 1))
        elif width_ms > self.options.max_pulse_ms:
            self._train.long.append(round(width_ms, 1))
        else:
            self._train.count += 1
        self._end_timer = self._loop.call_later(self.options.train_gap_ms / 1000, self._end_of_train)

    @property
    def between_trains(self) -> bool:
        """No pulse or train in progress: the next pulse starts a new coin."""
        return self._end_timer is None and self._pulse_start is None

    def _stuck(self) -> None:
        self._stuck_timer = None
        self._train.stuck_reported = True
        detail = f"line active for more than {self.options.max_pulse_ms:g} ms"
        self.set_health(Health.FAULT, detail)
        self._emit(CashFault(self.name, "pulse_width", detail))

    def _end_of_train(self) -> None:
        self._end_timer = None
        train, self._train = self._train, _Train()
        if train.empty or train.stuck_reported:
            return  # a stuck line was reported when it stuck
        if train.count == 0 and len(train.short) == 1 and not train.long:
            self.glitches += 1  # a lone spike: noise on the line, not a coin
            return
        self.trains += 1
        if train.short or train.long:
            detail = (
                f"{train.count} good pulses, too short {train.short} ms, too long {train.long} ms "
                f"(allowed {self.options.min_pulse_ms:g}-{self.options.max_pulse_ms:g} ms)"
            )
            self._emit(CashFault(self.name, "pulse_width", detail))
            return
        fen = self.table.get(train.count)
        if fen is None:
            self._emit(Rejected(self.name, "pulse_count"))
            self.report("reject", "pulse_count", f"{train.count} pulses match no value in pulses_to_fen")
            return
        if self.inhibited:
            self.report("credit_while_inhibited", "pulse", f"{fen} fen arrived while inhibited; credited")
        self._emit(CoinAccepted(self.name, fen))

    def _emit(self, event: CashEvent) -> None:
        if isinstance(event, CashFault):
            self.report("fault", event.code, event.detail)
        self._queue.put_nowait(event)

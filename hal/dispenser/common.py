"""What the three card dispenser drivers share: named faults, health, and "take it or lose it".

Why one place: an untaken card must be captured the same way whichever mechanism holds it (a
SIM left at the gate is someone's new number), and every fault must reach the journal as the
same ``fault`` event with the same codes, so the hall can count jams across models.

Fault codes: empty, jam, silent, nak, bad_reply, bin_full, card_at_gate, not_initialised,
device_error, capture_failed, unsupported, undefined_command.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any, NoReturn

from ..device import Health
from ..peripherals import CardDispenser, DispenseFailed, DispenserStatus
from ..transport import ByteLink, LinkClosed, open_link


class LinkFault(Exception):
    """Inside a driver: the conversation failed; ``code`` is the fault to report."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class DispenserBase(CardDispenser):
    """Faults, health and the polling ``wait_taken`` every dispenser driver uses."""

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self._was_low = False
        # The error-card bin is full (last status said so, or a capture was refused for it). No
        # card is dispensed then: one the customer does not take could not be captured and would
        # wait at the gate for whoever comes next. Sale flows read it (``getattr``: not every
        # CardDispenser has a bin sensor) to stop offering cards until a technician empties it.
        self.bin_full = False

    def fail(self, code: str, detail: str = "") -> NoReturn:
        """Report the fault, mark the device and raise DispenseFailed(code)."""
        self.report("fault", code, detail)
        self.set_health(Health.FAULT, f"{code}: {detail}" if detail else code)
        raise DispenseFailed(code, detail)

    def note_bin(self, full: bool) -> None:
        """Remember the bin sensor; report a bin that became full once (staff must empty it)."""
        if full and not self.bin_full:
            self.report("fault", "bin_full", "error-card bin full: empty it (no card is sold until then)")
        self.bin_full = full

    def refuse_if_bin_full(self) -> None:
        if self.bin_full:
            self.fail("bin_full", "error-card bin full: an untaken card could not be captured")

    def note_status(self, st: DispenserStatus) -> DispenserStatus:
        """Keep health current and report low stock once when it becomes low."""
        if not st.known:
            self.set_health(Health.FAULT, "silent")
        elif st.jammed:
            self.set_health(Health.FAULT, "jam")
        elif st.empty:
            self.set_health(Health.FAULT, "empty")
        elif self.bin_full:
            self.set_health(Health.DEGRADED, "bin_full")
        elif st.near_empty:
            self.set_health(Health.DEGRADED, "near_empty")
        else:
            self.set_health(Health.OK, "")
        low = st.known and (st.near_empty or st.empty)
        if low and not self._was_low:
            self.report("stock_low", "empty" if st.empty else "near_empty", "card stock low, refill the stacker")
        if st.known:
            self._was_low = low
        return st

    async def wait_taken(self, timeout: float) -> bool:
        """Poll status until the gate is clear (True) or ``timeout`` passes (False).

        A device that stops answering while a card waits is a fault, not "taken".
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            st = await self.status()
            if not st.known:  # status() has reported the fault already
                raise DispenseFailed("silent", "no status while waiting for the card to be taken")
            if not st.card_at_gate:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(self.options.poll_interval_s, remaining))


async def give_card(dispenser: CardDispenser, timeout: float | None = None) -> str:
    """Dispense one card to the gate and see it taken: "taken", or "captured" after ``timeout``.

    ``timeout`` defaults to the device's ``take_timeout_s``. Raises DispenseFailed when no card
    reached the gate or the untaken card could not be captured. The card is checked once more
    right before capturing, so a customer who takes it at the last moment is not robbed of it.
    """
    if timeout is None:
        timeout = dispenser.options.take_timeout_s
    await dispenser.dispense_to_gate()
    if await dispenser.wait_taken(timeout):
        return "taken"
    last = await dispenser.status()
    if last.known and not last.card_at_gate:
        return "taken"
    await dispenser.capture()
    dispenser.report("card_captured", "not_taken", f"card not taken within {timeout:g} s; captured to the bin")
    return "captured"


class SerialDispenser(DispenserBase):
    """A dispenser behind a ByteLink and a sans-I/O codec (``self.codec``: feed/events/reset)."""

    codec: Any

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self.link: ByteLink | None = None
        self.lock = asyncio.Lock()  # half duplex: one conversation at a time
        self._events: collections.deque = collections.deque()

    async def open(self) -> None:
        self.link = await open_link(self.options.port, baudrate=self.options.baudrate, sim_ports=self.ctx.sim_ports)

    async def stop(self) -> None:
        try:
            await self.safe_state()
        except Exception:  # noqa: BLE001 - stop must not raise
            pass
        if self.link is not None:
            await self.link.close()
            self.link = None

    def send(self, data: bytes, fresh: bool = True) -> None:
        """Write; with ``fresh`` drop stale input first, so a late reply cannot answer this."""
        if self.link is None:
            raise LinkFault("silent", f"{self.name}: not started")
        if fresh:
            self.link.discard_input()
            self.codec.reset()
            self._events.clear()
        try:
            self.link.write(data)
        except LinkClosed as exc:
            raise LinkFault("silent", str(exc)) from None

    async def next_event(self, deadline: float) -> Any:
        """The next codec event, or None when ``deadline`` (loop time) passes first."""
        loop = asyncio.get_running_loop()
        while not self._events:
            remaining = deadline - loop.time()
            if remaining <= 0 or self.link is None:
                return None
            try:
                data = await self.link.read(remaining)
            except LinkClosed as exc:
                raise LinkFault("silent", str(exc)) from None
            self.codec.feed(data, loop.time())
            self._events.extend(self.codec.events())
        return self._events.popleft()

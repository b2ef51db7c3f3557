"""Polling and inhibit handling shared by the ccTalk coin acceptor and bill validator.

Both keep a five-deep event buffer behind a counter (headers 229 / 159, notes §1.7) and obey
the same inhibit headers (231 masks, 228 master). What differs is what a result pair means;
subclasses say that in ``_on_event``.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, AsyncIterator, ClassVar, Iterable

from hal.cash import CashAcceptor, CashEvent, CashFault, CoinAccepted, Stacked
from hal.device import DeviceContext, DeviceError, Health
from hal.protocols.cctalk import Header
from hal.protocols.cctalk_events import EventCounter

from .bus import NoReply
from .peripheral import CcTalkPeripheral

REQUEST_MASTER_INHIBIT = 227  # §1.6: same byte as 228


class CcTalkAcceptor(CcTalkPeripheral, CashAcceptor):
    poll_header: ClassVar[int] = 0

    def __init__(self, name: str, options: Any, ctx: DeviceContext) -> None:
        super().__init__(name, options, ctx)
        self._cc_init()
        self._queue: asyncio.Queue[CashEvent] = asyncio.Queue()
        self._counter = EventCounter()
        self.values: dict[int, int] = {}  # coin position / bill type -> fen
        self.enabled = False  # what the controller asked for; start in the safe state
        self.allowed: set[int] | None = None  # accept_only(); None = every known value
        self.suspended = ""  # why cash-in is held for review ("lost_events"), "" = not
        self.credited_fen = 0  # total of CoinAccepted + Stacked emitted (for the journal's cross-check)
        self._poll_task: asyncio.Task | None = None
        self._reapply = False  # re-send inhibits before the next poll (device back, reset)
        self.last_poll_at = 0.0
        self._checked_at = 0.0
        self._no_227 = False
        self._applying = 0  # inhibit commands in flight (see _apply_inhibits)
        self._event_seq: int | None = None  # the counter of the event being handled (stamped on coins)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self._open_bus()
        try:
            await self.identify()
            await self._read_values()
            await self._apply_inhibits()
            await self._poll_once()  # §1.7: the first poll only stores the counter
            self.set_health(Health.OK if not self.silent else Health.FAULT)
        except NoReply as exc:
            self._reapply = True
            self.set_health(Health.FAULT, str(exc))
            self.report("fault", "device_silent", str(exc))
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.safe_state()
        if self._poll_task:
            self._poll_task.cancel()
            with contextlib.suppress(BaseException):
                await self._poll_task
        await self._close_bus()

    async def safe_state(self) -> None:
        self.enabled = False
        with contextlib.suppress(DeviceError):
            await self._apply_inhibits()

    async def self_test(self) -> str:
        await self.ask(Header.SIMPLE_POLL)
        ident = self.identity or await self.identify()
        values = ", ".join(f"{k}:{v}" for k, v in sorted(self.values.items()))
        return f"{self.name}: {ident.get('manufacturer')} {ident.get('product')} #{ident.get('serial')} ok; values {values}"

    # -- CashAcceptor ----------------------------------------------------------------------
    async def events(self) -> AsyncIterator[CashEvent]:
        while True:
            yield await self._queue.get()

    async def set_inhibit(self, inhibited: bool) -> None:
        self.enabled = not inhibited
        await self._apply_inhibits()

    async def accept_only(self, fen_values: Iterable[int]) -> None:
        self.allowed = set(fen_values)
        await self._apply_inhibits()

    async def resume_after_review(self) -> None:
        """A technician has reviewed the lost events: take cash again if the flow wants it."""
        self.suspended = ""
        self.set_health(Health.OK)
        await self._apply_inhibits()

    @property
    def event_counter(self) -> int | None:
        """The device's event counter as of our last poll (None before the first)."""
        return self._counter.last

    @property
    def accepting(self) -> bool:
        return self.enabled and not self.suspended

    # -- subclass hooks --------------------------------------------------------------------
    async def _read_values(self) -> None:
        raise NotImplementedError

    async def _on_event(self, a: int, b: int) -> None:
        raise NotImplementedError

    async def _on_first_poll(self, data: bytes) -> None:
        """Whatever the buffer held when we started is history (§1.7: store the counter)."""

    # -- internals -------------------------------------------------------------------------
    def emit(self, event: CashEvent) -> None:
        if isinstance(event, CoinAccepted) and event.seq is None and self._event_seq:
            event = dataclasses.replace(event, seq=self._event_seq)
        if isinstance(event, (CoinAccepted, Stacked)):
            self.credited_fen += event.fen
        if isinstance(event, CashFault):
            self.report("fault", event.code, event.detail)
        self._queue.put_nowait(event)

    def _mask(self) -> int:
        if not self.accepting:
            return 0
        return sum(
            1 << (pos - 1)
            for pos, fen in self.values.items()
            if 1 <= pos <= 16 and fen > 0 and (self.allowed is None or fen in self.allowed)
        )

    async def _apply_inhibits(self) -> None:
        # §1.6 hdr 231: bit set = enabled; hdr 228: b0 = 1 normal operation, 0 = master inhibit
        if not self.values:  # start() never reached the device: learn the table first
            await self._read_values()
        mask = self._mask()
        # While the two commands are on their way the device is legitimately still inhibited: the
        # poll loop's read-back (_check_inhibit) must not take that for an unseen reset.
        self._applying += 1
        try:
            await self.ask_ack(Header.MODIFY_INHIBIT_STATUS, mask.to_bytes(2, "little"))
            await self.ask_ack(Header.MODIFY_MASTER_INHIBIT, bytes([1 if mask else 0]))
        finally:
            self._applying -= 1
            self._checked_at = time.monotonic()
        self._reapply = False

    async def _poll_loop(self) -> None:
        interval = self.options.poll_interval_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if self._reapply:
                    await self._apply_inhibits()
                await self._poll_once()
            except NoReply:
                pass  # counted by ask(); "device_silent" after silent_after in a row
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a device's nonsense must never kill the poll loop
                self.report("fault", "driver_error", repr(exc))
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    async def _poll_once(self) -> None:
        reply = await self.ask(self.poll_header)
        self.last_poll_at = time.monotonic()
        if len(reply.data) != 11:
            self.report("fault", "bad_reply", f"header {self.poll_header}: {reply.data.hex()}")
            return
        first = self._counter.last is None
        result = self._counter.update(reply.data)
        if first:
            await self._on_first_poll(reply.data)
            return
        if result.reset:
            # §1.7: counter back at 0 = power loss or reset; the device is inhibited again
            self.emit(CashFault(self.name, "device_reset", "event counter back at 0; credits may be lost"))
            await self._on_reset()
            self._reapply = True  # §1.7: re-apply inhibits/master inhibit after a reset
        if result.lost:
            # §1.7: a jump of more than 5 means lost events -> hold cash-in for review
            self.suspended = "lost_events"
            self.set_health(Health.FAULT, f"{result.lost} events lost; cash-in suspended for review")
            self.emit(CashFault(self.name, "lost_events", f"at least {result.lost} events lost; cash-in suspended"))
            self._reapply = True
        for i, (a, b) in enumerate(result.new):  # oldest first; the last one is at the counter
            back = len(result.new) - 1 - i
            self._event_seq = (reply.data[0] - 1 - back) % 255 + 1 if reply.data[0] else None
            try:
                await self._on_event(a, b)
            finally:
                self._event_seq = None
        if self._reapply:
            await self._apply_inhibits()
        elif not result.new:
            await self._check_inhibit(reply.data)

    async def _check_inhibit(self, buffer: bytes) -> None:
        """§1.7's blind spot: a reset that ends with the counter where it was looks like nothing.

        A device comes up master-inhibited, so reading the master inhibit back (hdr 227) while
        we want it enabled reveals the reset. Then the buffer is read afresh, as at start.
        """
        now = time.monotonic()
        if not self.accepting or self._applying or self._no_227 or now - self._checked_at < self.options.inhibit_check_ms / 1000:
            return
        self._checked_at = now
        try:
            reply = await self.ask(REQUEST_MASTER_INHIBIT, retries=1)
        except NoReply:
            self._no_227 = True  # unsupported: the slave stays silent (§1.5)
            self.failures = 0
            return
        if reply.data and not reply.data[0] & 1:  # §1.6: b0 = 0 master inhibit active
            self.emit(CashFault(self.name, "device_reset", "found master-inhibited while enabled: it reset unseen"))
            await self._on_reset()
            await self._on_first_poll(buffer)
            await self._apply_inhibits()

    async def _on_reset(self) -> None:
        """Subclasses forget device state that a reset clears (the escrow)."""

    def _on_back(self) -> None:
        super()._on_back()
        self._reapply = True  # it may have reset or self-inhibited while we could not reach it

    def _on_silent(self, reason: str) -> None:
        self.emit(CashFault(self.name, "device_silent", f"no reply ({reason})"))

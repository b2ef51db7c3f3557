"""The journal's outbox as the hall link drains it: a window in flight, delivered only on halld's ack.

docs/mqtt.md "Records and acks": rows go out in ``msg_seq`` order (the outbox seq: 1, 2, 3, ...
without holes), up to ``window`` published but not yet acked, so a slow hall costs one round trip
per window, not per row. A row is delivered when an ack's ``msg_seq`` (halld's contiguous high
water, committed in its database) covers it — never on PUBACK, which only means the broker has it.
We rewind (publish again from an earlier seq) when halld asks (``resend_from``), after a
reconnect, when the hall comes back online, and when acks stall; halld stores idempotently, so a
repeat costs bandwidth, never a duplicate.

The ``outbox_full`` alarm mirrors the flows' own gate (transactions.service: no new cash-taking
flow while the outbox holds more than ``flows.max_outbox`` rows): raised when the depth goes over
the limit, lifted once it is back below it, each time with an event row for the hall.
``outbox_high`` is the warning before it, at ``flows.outbox_warn`` rows (half the limit by default):
in a long outage the hall staff learn that the kiosk is filling up while it still takes cash.

Bounded on disk, whatever the outage: cash-taking flows stop at ``max_outbox``; the events the
devices report (faults, door, power, stock: a chattering device could write one a second) are
counted instead of stored once ``outbox_warn`` rows wait (``device_event``), so they never take the
room money records need, and one ``events_dropped`` record with the counts per device, kind and
code goes to the hall once the depth is back below that level (the hall acking again). Money
records — transactions, vouchers, reviews, collections, alarms — are never dropped. Delivered
rows are deleted on the ack but the newest ``max_outbox`` (records.prune_delivered says why those
are kept), so a healthy hall does not grow the journal either.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from .logs import fields

log = logging.getLogger("kioskd.outbox")

WINDOW = 64  # rows published and not yet acked
ACK_STALL_S = 10.0  # docs/mqtt.md: rewind after 10 s without ack progress
REWIND_HOLDOFF_S = 1.0  # the same resend_from again this soon is an echo of the first hole, not a new one

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]  # (leaf "txn"|"event", payload)


class Outbox:
    def __init__(self, journal: Any, max_outbox: int, *, window: int = WINDOW, stall_s: float = ACK_STALL_S,
                 warn: int | None = None) -> None:
        self.journal = journal
        self.max_outbox = max_outbox
        self.warn = warn  # None: no early warning (kioskd always sets flows.outbox_warn)
        self.high = False  # the outbox_high alarm
        self.window = window
        self.stall_s = stall_s
        self.acked = 0  # high water halld has committed (rows up to it are delivered in the journal)
        self.sent = 0  # highest msg_seq published since the last rewind
        self.depth = 0  # undelivered rows
        self.full = False  # the outbox_full alarm
        self.holding = False  # the pump waits for the hall (link down or hall offline)
        self.dropped = 0  # device events counted, not stored, since the last events_dropped record
        self.rewinds = 0
        self.on_change: Callable[[], None] = lambda: None  # depth or alarm moved (status, menu)
        self._last_progress = time.monotonic()
        self._last_rewind: tuple[int, float] = (0, 0.0)
        self._ack_target = 0
        self._ack_event = asyncio.Event()
        self._wake = asyncio.Event()

    async def load(self) -> None:
        """After a (re)start: the high water from the journal, the depth, the alarm as it stands."""
        self.acked = await self.journal.read(lambda conn: conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE delivered = 1").fetchone()[0])
        self.sent = self._ack_target = self.acked
        from transactions import records

        self.dropped = await self.journal.read(records.dropped_events)
        await self.refresh()

    # -- new rows, depth, alarm ------------------------------------------------------------------
    @property
    def event_cap(self) -> int:
        """Device events are stored while fewer rows than this wait: the outbox_high level."""
        return self.warn if self.warn is not None else self.max_outbox

    async def device_event(self, event: Any) -> int:
        """A device's event for the hall (hal.device.DeviceEvent); 0 if counted instead of stored."""
        from transactions import books

        seq = await books.device_event(self.journal, event, self.event_cap)
        if not seq:
            if not self.dropped:
                log.warning("outbox over the device-event cap: device events are counted, not stored",
                            extra=fields(depth=self.depth, cap=self.event_cap))
            self.dropped += 1
        self.wake()
        await self.refresh()
        return seq

    def wake(self) -> None:
        """Something new is in the outbox (a finished visit, a device event)."""
        self._wake.set()

    async def refresh(self) -> None:
        from transactions import books

        self.depth = await books.outbox_depth(self.journal)
        if self.dropped and self.depth < self.event_cap:
            await self._report_dropped()
        # below, not at, to lift: the lift's own row must not raise it again
        if self.warn is not None and not self.high and self.depth > self.warn:
            await self._alarm("outbox_high", True, self.warn)
        if not self.full and self.depth > self.max_outbox:
            await self._alarm("outbox_full", True, self.max_outbox)
        elif self.full and self.depth < self.max_outbox:
            await self._alarm("outbox_full", False, self.max_outbox)
        if self.high and self.warn is not None and self.depth < self.warn:
            await self._alarm("outbox_high", False, self.warn)
        self.on_change()

    async def _report_dropped(self) -> None:
        from transactions import records

        seq = await self.journal.write(records.report_dropped, time.time())
        log.warning("device events dropped while the outbox was over its cap; reported",
                    extra=fields(dropped=self.dropped, msg_seq=seq))
        self.dropped = 0
        if seq:
            self.depth += 1
            self.wake()

    def alarms(self) -> list[str]:
        return [name for name, on in (("outbox_high", self.high), ("outbox_full", self.full)) if on]

    async def _alarm(self, code: str, raised: bool, limit: int) -> None:
        from transactions import records

        if code == "outbox_full":
            self.full = raised
        else:
            self.high = raised
        event = {"kind": "alarm", "code": code, "raised": raised, "depth": self.depth, "limit": limit,
                 "at": time.time()}
        await self.journal.write(records.enqueue, "event", event, time.time())
        self.depth += 1
        (log.warning if raised else log.info)(code + (" raised" if raised else " lifted"),
                                              extra=fields(depth=self.depth, limit=limit))
        self.wake()

    # -- acks ------------------------------------------------------------------------------------
    def on_ack(self, body: Any) -> None:
        """``{"schema":1,"msg_seq":N}`` with optional ``"resend_from": M``; anything else is ignored."""
        if not isinstance(body, dict):
            log.warning("malformed ack ignored", extra=fields(ack=repr(body)[:120]))
            return
        seq, resend = body.get("msg_seq"), body.get("resend_from")
        if type(seq) is not int or seq < 0 or (resend is not None and (type(resend) is not int or resend < 1)):
            log.warning("malformed ack ignored", extra=fields(ack=repr(body)[:120]))
            return
        if seq > self._ack_target:
            self._ack_target = seq
            self._last_progress = time.monotonic()
            self._ack_event.set()
        if resend is not None:
            self._resend_from(resend)

    def _resend_from(self, first: int) -> None:
        now = time.monotonic()
        target, at = self._last_rewind
        if first > self.sent or (first == target and now - at < REWIND_HOLDOFF_S):
            return  # nothing of ours past it yet, or an echo of the hole we just rewound for
        if first <= self.acked:
            log.warning("hall asks again for rows it acknowledged; they are delivered here",
                        extra=fields(resend_from=first, acked=self.acked))
        self._last_rewind = (first, now)
        self.rewind(first - 1, "resend_from")

    def rewind(self, to: int, why: str) -> None:
        to = max(self.acked, min(self.sent, to))
        if to < self.sent:
            log.info("outbox rewinds", extra=fields(why=why, sent=self.sent, to=to, acked=self.acked))
            self.rewinds += 1
        self.sent = to
        self._last_progress = time.monotonic()
        self.wake()

    async def commit_acks(self) -> None:
        """Mark acked rows delivered, coalescing a burst of acks into one journal write."""
        from transactions import books

        while True:
            await self._ack_event.wait()
            self._ack_event.clear()
            target = self._ack_target
            if target > self.acked:
                await books.ack(self.journal, target, keep=self.max_outbox)
                self.acked = target
                self.sent = max(self.sent, target)
                self._wake.set()  # room in the window
                await self.refresh()

    # -- the pump --------------------------------------------------------------------------------
    async def pump(self, publish: Publish, may_send: asyncio.Event) -> None:
        """Publish rows after ``sent`` while ``may_send`` (link up, hall not offline); runs per connection."""
        from transactions import books

        while True:
            if not may_send.is_set():
                self.holding = True
                await may_send.wait()
                self.rewind(self.acked, "hall back")
            self.holding = False
            if self.sent > self.acked and time.monotonic() - self._last_progress > self.stall_s:
                log.warning("acks stalled; resending", extra=fields(sent=self.sent, acked=self.acked))
                self.rewind(self.acked, "ack stall")
            room = self.window - (self.sent - self.acked)
            self._wake.clear()  # before looking: a wake() during the query must not be lost
            rows = await books.outbox(self.journal, after_seq=self.sent, limit=room) if room > 0 else []
            if not rows:
                try:
                    await asyncio.wait_for(self._wake.wait(), min(1.0, self.stall_s / 2))
                except TimeoutError:
                    pass
                continue
            if self.sent == self.acked:
                self._last_progress = time.monotonic()  # the stall clock starts with the first unacked row
            # One task per row, created in seq order: each hands its packet to the client on its
            # first step, so the wire order is the seq order; the PUBACKs are awaited together.
            sends = [asyncio.ensure_future(publish(r["topic"] if r["topic"] in ("txn", "event") else "event",
                                                   {**r["payload"], "msg_seq": r["seq"]})) for r in rows]
            self.sent = rows[-1]["seq"]
            errors = [e for e in await asyncio.gather(*sends, return_exceptions=True) if isinstance(e, BaseException)]
            if errors:
                raise errors[0]  # the link is down: the connection loop reconnects and rewinds

"""Why no cash may go in now (panel door open, mains lost, the hall's inhibit_cash), shared by
kioskd and the cash intake.

kioskd's lock-down inhibits every acceptor at once, but a flow's intake enables them again when it
starts taking cash: a door opening after a customer was admitted and before their intake, or
during it, would leave the acceptors taking cash with the cabinet open. So the intake asks this
lock before it enables the acceptors and again after, and watches it while it waits for cash;
engaged, it stops and the flow pays back what is in (transactions/intake.py).

The reasons are a set, not the last one said: the kiosk serves again only when every reason is
released — the mains coming back while the door is still open leaves it locked.
"""
from __future__ import annotations

import asyncio

HALL_INHIBIT = "inhibited_by_hall"  # the hall's inhibit_cash: no cash, but the kiosk still serves


class CashLock:
    def __init__(self) -> None:
        self.reasons: list[str] = []  # in the order they came; the newest is what the screen says
        self.engaged = asyncio.Event()

    @property
    def reason(self) -> str | None:
        return self.reasons[-1] if self.reasons else None

    def engage(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)
        self.engaged.set()

    def release(self, reason: str) -> None:
        if reason in self.reasons:
            self.reasons.remove(reason)
        if not self.reasons:
            self.engaged.clear()

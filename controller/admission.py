"""Who may start a transaction now: closed on SIGTERM, power-fail or an open door.

Flows enter with ``async with admission.customer():``; shutdown closes the door and waits for
the customer in flight to finish (or park safely) before the devices go to their safe state.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator


class Refused(Exception):
    """No new customers now; the text says why (for the screen and the log)."""


class Admission:
    def __init__(self) -> None:
        self.closed_because: str | None = "starting"
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def open(self) -> None:
        self.closed_because = None

    def close(self, reason: str) -> None:
        self.closed_because = reason

    @contextlib.asynccontextmanager
    async def customer(self) -> AsyncIterator[None]:
        if self.closed_because:
            raise Refused(self.closed_because)
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def drain(self, timeout: float | None) -> bool:
        """Wait for the customers in flight (None: as long as it takes); False if they were still
        there at the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

"""Mains lost, the kiosk on its UPS battery: take no more money, let the customer in flight finish,
sync the journal, and stop cleanly while the battery still has charge; mains back first: serve again.

Why not stop at once: a mains flicker of a second would otherwise end kioskd (exit 0, which
systemd does not restart) and leave the kiosk dark until someone reboots it. The UPS gives
minutes; the battery monitor's ``battery_low`` says when they are up.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .logs import fields

if TYPE_CHECKING:
    from .kiosk import Kiosk

log = logging.getLogger("kioskd.power")


class PowerWatch:
    def __init__(self, kiosk: "Kiosk") -> None:
        self.kiosk = kiosk
        self.on_battery = False
        self.synced = asyncio.Event()  # set once the journal is synced on this stretch on battery
        self.sync_result: tuple[int, int, int] | None = None  # PRAGMA wal_checkpoint: busy, log, checkpointed
        self._settle: asyncio.Task | None = None

    def watch(self, monitor: Any) -> None:
        monitor.on("power_fail", lambda reading: self.mains_lost())
        monitor.on("power_restored", lambda reading: self.mains_back())
        monitor.on("battery_low", lambda reading: self.battery_low())
        if getattr(monitor, "on_battery", False):  # it read the battery before we listened
            self.mains_lost()
        if getattr(monitor, "battery_low", False):
            self.battery_low()

    def mains_lost(self) -> None:
        if self.on_battery:
            return
        self.on_battery = True
        self.synced.clear()
        self.kiosk._lock_down("power_fail")  # acceptors inhibited, no new customer
        desk = self.kiosk.desk
        if desk is not None:  # the customer in flight: cash intake ends, what is in is paid back
            desk.cancel()
        self._settle = asyncio.get_running_loop().create_task(self._finish_and_sync(), name="power-fail-settle")

    async def _finish_and_sync(self) -> None:
        """The visit in flight ends (served, or paid back), then every commit is in the database file."""
        await self.kiosk.admission.drain(None)
        journal = self.kiosk.journal
        if journal is not None and journal.is_open:
            self.sync_result = await journal.sync()
        self.synced.set()
        log.warning("on battery: visit in flight finished, journal synced", extra=fields(checkpoint=self.sync_result))

    def mains_back(self) -> None:
        if not self.on_battery:
            return
        self.on_battery = False
        if self._settle is not None and not self._settle.done():
            self._settle.cancel()
        self.kiosk._unlock("power_fail")

    def battery_low(self) -> None:
        """Stop now as SIGTERM does: the visit in flight gets the stop grace, then is parked."""
        log.warning("battery low: stopping while there is charge left")
        self.kiosk.stop_requested.set()

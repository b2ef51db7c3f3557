"""``kioskd --simulate``: a private pcscd with vpcd, and the virtual USIM plugged into it.

The virtual card's control socket is ``{runtime_dir}/emu-usim.sock`` like every emulator's.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..emulators.control import serve_control
from ..emulators.usim import UsimCard
from ..emulators.vpcd import VpcdSlot
from .pcscd import PrivatePcscd


class SimulatedReader:
    def __init__(self, runtime_dir: Path, port: int = 0) -> None:
        self.runtime_dir = Path(runtime_dir).resolve()  # pcscd is handed absolute paths (its cwd is not ours)
        self.pcscd = PrivatePcscd(self.runtime_dir / "pcscd", port or None)
        self.slot: VpcdSlot | None = None
        self._server = None

    async def start(self) -> None:
        self.pcscd.dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.pcscd.start)
        self.pcscd.use()
        self.slot = VpcdSlot(UsimCard(), "127.0.0.1", self.pcscd.port)
        await self.slot.start()
        await asyncio.wait_for(self.slot.connected.wait(), 10)
        self._server = await serve_control(str(self.runtime_dir / "emu-usim.sock"), self.slot.control)

    def follow(self, sim_ports: Any, feeder: str) -> None:
        """A card leaving ``feeder``'s stack (a sim: CRT-571) reaches the contacts as a new blank USIM."""
        sim_ports.path(feeder)  # started now if its device has not opened it yet
        sim_ports.model(feeder).cards.on_new_card = lambda: setattr(self.slot, "card", UsimCard())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.slot is not None:
            await self.slot.stop()
        await asyncio.to_thread(self.pcscd.stop)

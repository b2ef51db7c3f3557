"""A virtual card plugged into pcscd's vpcd reader: the card side of the vpcd TCP protocol.

vpcd notes §7.2: every message is a 2-byte big-endian length and a payload, both ways. A
1-byte payload from vpcd is a control code — 00 power off, 01 power on, 02 reset (no reply),
04 "your ATR" (reply: the ATR) — anything longer is a command APDU, answered by one R-APDU.
Closing the socket is pulling the card out; connecting again is inserting it.

    slot = VpcdSlot(UsimCard(), "127.0.0.1", 35963)
    await slot.start()          # connects (retrying until vpcd listens), serves in a task
    await slot.remove(); await slot.insert(UsimCard())
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .model import ControlError
from .usim import ATR, UsimCard

log = logging.getLogger("hal.emulators.vpcd")


class VpcdSlot:
    def __init__(self, card: UsimCard | None, host: str, port: int) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.apdus = 0
        self.connected = asyncio.Event()
        self.seen = False  # pcscd asked this card for its ATR since it was inserted: PC/SC knows it
        self._task: asyncio.Task | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        if self.card is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.1)  # vpcd listens only once pcscd has loaded it
                continue
            self._writer = writer
            self.connected.set()
            try:
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    payload = await reader.readexactly(size)
                    reply = self._answer(payload)
                    if reply is not None:
                        writer.write(len(reply).to_bytes(2, "big") + reply)
                        await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # vpcd went away (pcscd stopped): wait for it to come back
            finally:
                self.connected.clear()
                writer.close()
                self._writer = None
            await asyncio.sleep(0.1)

    def _answer(self, payload: bytes) -> bytes | None:
        card = self.card
        if card is None:
            return b""
        if len(payload) == 1:
            code = payload[0]
            if code in (0x01, 0x02):  # power on / reset
                card.power_on()
            elif code == 0x04:
                self.seen = True
                return ATR
            return None
        self.apdus += 1
        try:
            return card.apdu(payload)
        except Exception:  # noqa: BLE001 - a card bug answers "no precise diagnosis", never kills the slot
            log.exception("virtual card failed on %s", payload.hex())
            return bytes.fromhex("6F00")

    async def remove(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()

    async def insert(self, card: UsimCard) -> None:
        await self.remove()
        self.card, self.seen = card, False
        await self.start()

    async def stop(self) -> None:
        await self.remove()

    # -- the control socket ----------------------------------------------------------------
    async def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "ping":
            return "pong"
        if cmd == "state":
            card = self.card
            return {"emulator": "usim", "inserted": self._task is not None, "connected": self.connected.is_set(), "seen": self.seen,
                    "apdus": self.apdus, "iccid": card.iccid if card else None,
                    "adm_tries_left": card.adm_left if card else None,
                    "files": card.files() if card else {}}
        if cmd == "files":
            return self.card.files() if self.card else {}
        if cmd == "remove_card":
            await self.remove()
            self.card = None
            return None
        if cmd == "new_card":  # a fresh blank card at the reader (the dispenser moved the next one up)
            await self.insert(UsimCard(adm=str(args.get("adm", "3838383838383838")),
                                       adm_tries=int(args.get("adm_tries", 3))))
            return self.card.iccid
        if self.card is None:
            raise ControlError("no card in the reader")
        return self.card.control(cmd, args)

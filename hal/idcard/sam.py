"""ID card reader on the SAM_V serial protocol (reader notes §3): status once, then find → select → read.

Why the pacing: the vendor asks for find-card polls more than 300 ms apart (§3.7); a faster
loop starves the reader's RF field. ``poll_interval_s`` is never allowed below 0.3 s.

Why a failed read is not retried here: §3.7 — after a read error the card has to be taken away
and presented again, so the flow asks the customer to do that (IdReadFailed("read_failed")).
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..device import Health
from ..protocols.idcard import (
    FIND, READ_BASE, SAM_STATUS, SELECT, SW_FOUND, SW_OK, BadFrame, IdCardCodec, IdCardError, Reply,
    encode, mask_id_number, parse_text, problems, split_base_info,
)
from ..transport import ByteLink, LinkClosed, open_link
from . import IdCard, IdReader, IdReadFailed
from .wlt import no_decoder, vendor_decoder

MIN_POLL_S = 0.3  # §3.7


class SamIdReader(IdReader):
    @dataclass(frozen=True)
    class Options:
        port: str
        baudrate: int = 115200  # §3.1
        poll_interval_s: float = 0.5  # find-card polls; never below 0.3 (§3.7)
        command_timeout_s: float = 1.0
        read_timeout_s: float = 3.0  # the 1295-byte read reply takes ~0.11 s at 115200
        max_bad: int = 5  # this many bad or silent answers in a row: the reader is faulty
        wlt_library: str = ""  # vendor photo decoder, e.g. libwlt2bmp.so; "" = look for the usual names

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self.codec = IdCardCodec()
        self.link: ByteLink | None = None
        self.lock = asyncio.Lock()
        self.poll_interval = max(MIN_POLL_S, options.poll_interval_s)
        self.decode_photo = vendor_decoder(options.wlt_library or None) if not ctx.simulate else no_decoder
        self._events: collections.deque = collections.deque()
        self._last_find = float("-inf")

    async def start(self) -> None:
        self.link = await open_link(self.options.port, baudrate=self.options.baudrate, sim_ports=self.ctx.sim_ports)
        async with self.lock:
            await self._sam_status()

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.close()
            self.link = None

    async def self_test(self) -> str:
        async with self.lock:
            ok = await self._sam_status()
        return f"{self.name}: {'ok' if ok else 'FAIL ' + self.health_detail}"

    async def _sam_status(self) -> bool:
        try:
            reply = await self._ask(SAM_STATUS, self.options.command_timeout_s)
        except IdReadFailed as exc:
            self._fault(exc.code, exc.detail)
            return False
        if reply.sw3 != SW_OK:
            self._fault("sam_fault", f"SAM status {reply.sw3:02X}: {reply.meaning}")
            return False
        self.set_health(Health.OK)
        return True

    def _fault(self, code: str, detail: str) -> None:
        self.report("fault", code, detail)
        self.set_health(Health.FAULT, f"{code}: {detail}")

    # -- one question, one answer --------------------------------------------------------
    async def _ask(self, command: tuple[int, int], timeout: float) -> Reply:
        """Send, wait for one frame. Raises IdReadFailed("silent" | "bad_frame")."""
        if self.link is None:
            raise IdReadFailed("silent", f"{self.name}: not started")
        self.link.discard_input()  # a late answer must not answer this question
        self.codec.reset()
        self._events.clear()
        try:
            self.link.write(encode(command))
        except LinkClosed as exc:
            raise IdReadFailed("silent", str(exc)) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        bad: BadFrame | None = None
        while True:
            while not self._events:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    if bad is not None:
                        raise IdReadFailed("bad_frame", f"{bad.reason}: {bad.raw[:16].hex()}")
                    raise IdReadFailed("silent", f"no answer to {command[0]:02X} {command[1]:02X} in {timeout:g} s")
                try:
                    data = await self.link.read(remaining)
                except LinkClosed as exc:
                    raise IdReadFailed("silent", str(exc)) from None
                self.codec.feed(data, loop.time())
                self._events.extend(self.codec.events())
            event = self._events.popleft()
            if isinstance(event, Reply):
                if event.sw3 in (0x10, 0x11):  # the reader got our frame garbled: line noise
                    raise IdReadFailed("bad_frame", f"reader says: {event.meaning}")
                return event
            bad = event  # noise before the answer is fine; the answer may still come

    # -- the card ------------------------------------------------------------------------
    async def read_card(self, timeout: float, today: dt.date | None = None) -> IdCard:
        today = today or dt.date.today()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self.lock:
            bad = 0
            while True:
                wait = self._last_find + self.poll_interval - loop.time()
                if loop.time() + max(wait, 0) >= deadline:
                    raise IdReadFailed("no_card", f"no card within {timeout:g} s")
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_find = loop.time()
                try:
                    found = await self._ask(FIND, self.options.command_timeout_s)
                    if found.sw3 == SW_FOUND:
                        card = await self._select_and_read(today)
                        self.set_health(Health.OK)
                        return card
                    if found.sw3 != 0x80:  # 80: no card yet
                        self._fault("sam_fault", f"find card: {found.meaning}")
                        raise IdReadFailed("sam_fault", found.meaning)
                    bad = 0
                except IdReadFailed as exc:
                    if exc.code not in ("bad_frame", "silent"):
                        raise
                    bad += 1
                    if bad >= self.options.max_bad:
                        self._fault(exc.code, exc.detail)
                        raise
                    self.report("line_error", exc.code, exc.detail)

    async def _select_and_read(self, today: dt.date) -> IdCard:
        selected = await self._ask(SELECT, self.options.command_timeout_s)
        if selected.sw3 != SW_OK:
            raise IdReadFailed("read_failed", f"select card: {selected.meaning}")
        reply = await self._ask(READ_BASE, self.options.read_timeout_s)
        if reply.sw3 != SW_OK:
            raise IdReadFailed("read_failed", f"read card: {reply.meaning}")
        try:
            info = split_base_info(reply.data)
            text = parse_text(info.text)
        except IdCardError as exc:
            raise IdReadFailed("bad_frame", str(exc)) from None
        wrong = problems(text, today)
        if wrong:
            raise IdReadFailed(wrong[0], f"card {mask_id_number(text.id_number)}: {', '.join(wrong)}")
        try:
            bmp = self.decode_photo(info.photo)
        except Exception:  # noqa: BLE001 - a vendor library's failure leaves the photo undecoded
            bmp = None
        return IdCard(text, info.photo, bmp)

"""One ccTalk line shared by every device on it (multi-drop, notes §1.1).

ccTalk is half duplex with the host as the only master: a request and its reply must not
interleave with another device's, so all devices on a port share one ``CcTalkBus`` (through
``DeviceContext.share``) and take its lock for each transaction. A silent or garbled answer is
retried (§1.5: the slave stays silent on a bad checksum; the spec suggests 3 tries).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from hal.device import DeviceError
from hal.protocols.cctalk import (
    BROADCAST,
    ChecksumError,
    CcTalkCodec,
    Checksum,
    EchoMismatch,
    Header,
    Reply,
    Request,
)
from hal.transport import ByteLink, LinkClosed, open_link

SETTLE_QUIET = 0.010  # §1.5: a transmitter never leaves more than 10 ms between bytes


_STAT = {"timeout": "timeouts", "checksum": "checksum_errors", "echo": "echo_errors"}


class NoReply(DeviceError):
    """No usable reply after every retry. ``reason``: timeout, checksum, echo, link_closed."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CcTalkBus:
    """The host end of one ccTalk port: open once, transact under a lock, count what went wrong."""

    def __init__(self, port: str, *, echo: bool, sim_ports: Any = None, baudrate: int = 9600) -> None:
        self.port = port
        self.echo = echo
        self.sim_ports = sim_ports
        self.baudrate = baudrate
        self.link: ByteLink | None = None
        self.lock = asyncio.Lock()
        self._users = 0
        self._codecs: dict[str, CcTalkCodec] = {}
        self.stats = {"transactions": 0, "retries": 0, "timeouts": 0, "checksum_errors": 0, "echo_errors": 0}

    async def open(self) -> None:
        async with self.lock:
            self._users += 1
            if self.link is None:
                self.link = await open_link(self.port, baudrate=self.baudrate, sim_ports=self.sim_ports)

    async def close(self) -> None:
        async with self.lock:
            self._users -= 1
            if self._users <= 0 and self.link is not None:
                link, self.link = self.link, None
                await link.close()

    def _codec(self, checksum: Checksum) -> CcTalkCodec:
        if checksum not in self._codecs:
            self._codecs[checksum] = CcTalkCodec(echo=self.echo, checksum=checksum)
        return self._codecs[checksum]

    async def transact(
        self,
        dest: int,
        header: int,
        data: bytes = b"",
        *,
        checksum: Checksum = "simple",
        timeout: float = 0.1,
        retries: int = 3,
    ) -> Reply:
        """Send one request and return its reply (ACK, data, NAK), retrying up to ``retries`` times."""
        codec = self._codec(checksum)
        reason = "timeout"
        async with self.lock:
            for attempt in range(max(1, retries)):
                if attempt:
                    self.stats["retries"] += 1
                try:
                    reply, reason = await self._attempt(codec, Request(dest, header, bytes(data)), timeout)
                except (LinkClosed, OSError):
                    self.link = None  # reopened on the next try: an adapter may come back
                    reason = "link_closed"
                    continue
                if reply is not None:
                    self.stats["transactions"] += 1
                    return reply
                self.stats[_STAT[reason]] += 1
        raise NoReply(f"{self.port}: address {dest} header {header}: no reply ({reason})", reason)

    async def _attempt(self, codec: CcTalkCodec, request: Request, timeout: float) -> tuple[Reply | None, str]:
        if self.link is None:
            self.link = await open_link(self.port, baudrate=self.baudrate, sim_ports=self.sim_ports)
        link = self.link
        link.discard_input()  # a late reply must not answer this question
        codec.reset()
        link.write(codec.encode(request))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reason = "timeout"
        while (remaining := deadline - loop.time()) > 0:
            # read in slices no longer than the 50 ms gap, so the codec can see silences (§1.5)
            chunk = await link.read(min(remaining, codec.gap))
            codec.feed(chunk, time.monotonic())
            for reply in codec.replies():
                if reply.header not in (Header.REPLY, Header.NAK, Header.BUSY):
                    continue
                if reply.src is not None and request.dest != BROADCAST and reply.src != request.dest:
                    continue  # another device's answer (§1.2: replies carry the source under simple checksum)
                if reply.header == Header.BUSY:
                    return None, "timeout"
                return reply, ""
            problems = list(codec.errors())
            if any(isinstance(p, (ChecksumError, EchoMismatch)) for p in problems):
                reason = "checksum" if any(isinstance(p, ChecksumError) for p in problems) else "echo"
                await self._settle(link)
                return None, reason
        return None, reason

    async def _settle(self, link: ByteLink) -> None:
        """After garbage, wait until the line is quiet so the retry starts in step."""
        for _ in range(50):
            if not await link.read(SETTLE_QUIET):
                return

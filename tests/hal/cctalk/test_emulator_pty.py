"""The ccTalk bus emulator on a real pty pair, scripted over its control socket."""
import asyncio

import pytest

from hal.emulators.cctalk import CcTalkBus
from hal.emulators.control import call
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort
from hal.transport import open_link
from tests.hal.cctalk.test_emulator import decode, frame


class Wire:
    """The host's end of the line: whole frames out of whatever chunks the pty delivers."""

    def __init__(self, link) -> None:
        self.link = link
        self.rx = b""

    def write(self, data: bytes) -> None:
        self.link.write(data)

    async def read_exactly(self, n: int, max_wait: float = 2.0) -> bytes:
        while len(self.rx) < n:
            chunk = await self.link.read(max_wait)
            assert chunk, f"silence after {list(self.rx)}"
            self.rx += chunk
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    async def read_frame(self) -> bytes:
        head = await self.read_exactly(2)
        return head + await self.read_exactly(head[1] + 3)

    async def silent(self, max_wait: float) -> bool:
        return not self.rx and await self.link.read(max_wait) == b""


@pytest.fixture
async def wire(tmp_path):
    sock = str(tmp_path / "emu-cctalk.sock")
    port = SimPort("cctalk", EmulatorRunner(CcTalkBus()))
    await port.start(sock)
    link = await open_link(port.path)
    yield Wire(link), sock
    await link.close()
    await port.stop()


async def test_coin_credit_over_a_real_pty(wire):
    link, sock = wire
    link.write(bytes([2, 0, 1, 254, 255]))  # §1.3 simple poll
    assert await link.read_frame() == bytes([1, 0, 2, 0, 253])
    for tx in (frame(2, 1, 231, 255, 255), frame(2, 1, 228, 1), frame(2, 1, 229)):
        link.write(tx)
        await link.read_frame()
    assert await call(sock, "insert_coin", value=100) == "accepted"
    link.write(bytes([2, 0, 1, 229, 24]))
    _, _, _, data = decode(await link.read_frame())
    assert data[:3] == bytes([1, 3, 0])  # counter 1, coin position 3 (1 yuan), no sorter
    state = await call(sock, "state")
    assert state["emulator"] == "cctalk" and state["coins_accepted_fen"] == 100


async def test_bad_checksum_is_silence_on_the_wire(wire):
    link, sock = wire
    link.write(bytes([2, 0, 1, 254, 254]))
    assert await link.silent(0.15)
    link.write(bytes([2, 0, 1, 254, 255]))
    assert await link.read_frame() == bytes([1, 0, 2, 0, 253])


async def test_runner_corrupt_gives_a_reply_that_fails_the_checksum(wire):
    link, sock = wire
    await call(sock, "corrupt", count=1)
    link.write(bytes([2, 0, 1, 254, 255]))
    reply = await link.read_frame()
    assert sum(reply) % 256 != 0


async def test_echo_on_the_wire(wire):
    link, sock = wire
    assert await call(sock, "set_echo", on=True) is True
    poll = frame(40, 1, 254)
    link.write(poll)
    assert await link.read_exactly(len(poll)) == poll  # our own bytes first
    assert await link.read_frame() == bytes([1, 0, 40, 0, 215])


async def test_escrow_and_stack_over_the_wire(wire):
    link, sock = wire
    for tx in (frame(40, 1, 231, 255, 255), frame(40, 1, 228, 1)):
        link.write(tx)
        await link.read_frame()
    assert await call(sock, "insert_bill", value=10000) == "escrow"
    link.write(bytes([40, 0, 1, 159, 56]))
    assert decode(await link.read_frame())[3][:3] == bytes([1, 6, 1])  # type 6 pending
    link.write(bytes([40, 1, 1, 154, 1, 59]))
    assert await link.read_frame() == bytes([1, 0, 40, 0, 215])
    async with asyncio.timeout(2):
        assert (await call(sock, "state"))["bills_stacked_fen"] == 10000

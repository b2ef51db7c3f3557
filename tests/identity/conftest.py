"""Identity tests: devices on real pty pairs (ID reader) and real pcscd + vpcd (SIM)."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from hal.device import DeviceContext, DeviceEvent
from hal.emulators.control import call
from hal.emulators.idcard import IdCardReaderModel
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort
from hal.idcard.sam import SamIdReader


@dataclass
class ReaderRig:
    driver: SamIdReader
    model: IdCardReaderModel
    runner: EmulatorRunner
    sock: str
    events: list[DeviceEvent] = field(default_factory=list)

    async def emu(self, cmd: str, **args: Any) -> Any:
        return await call(self.sock, cmd, **args)


@contextlib.asynccontextmanager
async def reader_rig(tmp_path, model: IdCardReaderModel | None = None, **options: Any):
    model = model or IdCardReaderModel()
    runner = EmulatorRunner(model)
    port = SimPort("idcard", runner)
    sock = str(tmp_path / "emu-idcard.sock")
    await port.start(sock)
    events: list[DeviceEvent] = []
    driver = SamIdReader("idreader", SamIdReader.Options(port=port.path, **options), DeviceContext(report=events.append))
    try:
        async with driver:
            yield ReaderRig(driver, model, runner, sock, events)
    finally:
        await port.stop()


@pytest.fixture
def rig_factory(tmp_path):
    return lambda model=None, **options: reader_rig(tmp_path, model, **options)


# -- smart cards: one private pcscd with vpcd for the session ------------------------------

@pytest.fixture(scope="session")
def pcscd(tmp_path_factory):
    """Real pcscd on a private socket (socket activation), vpcd on a free port pair."""
    from hal.simcard.pcscd import PrivatePcscd

    daemon = PrivatePcscd(tmp_path_factory.mktemp("pcscd"))
    daemon.start()
    daemon.use()  # before pyscard's first context in this process
    yield daemon
    daemon.stop()


@pytest.fixture
async def usim(pcscd):
    """A fresh blank virtual USIM in vpcd's first slot, for one test."""
    from hal.emulators.usim import UsimCard
    from hal.emulators.vpcd import VpcdSlot

    if pcscd.pid is None:  # a test stopped it (pcscd gone): bring it back on the same socket and port
        pcscd.start()
    slot = VpcdSlot(UsimCard(), "127.0.0.1", pcscd.port)
    await slot.start()
    await asyncio.wait_for(slot.connected.wait(), 10)
    yield slot
    await slot.stop()


@pytest.fixture
async def writer(pcscd):
    from hal.simcard.writer import PcscSimWriter

    w = PcscSimWriter("sim", PcscSimWriter.Options(reader="Kiosk vpcd 00 00"), DeviceContext())
    await w.start()
    yield w
    await w.stop()

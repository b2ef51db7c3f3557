"""Identity tests: devices on real pty pairs (ID reader) and real pcscd + vpcd (SIM)."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from hal.device import DeviceContext, DeviceEvent
from hal.emulators.idcard import IdCardReaderModel
from hal.idcard.sam import SamIdReader
from tests.rig import lines


@dataclass
class ReaderRig:
    driver: SamIdReader
    line: lines.Line
    events: list[DeviceEvent] = field(default_factory=list)

    @property
    def model(self) -> Any:
        return self.line.model  # under pytest --rig: skips (the emulator is another process)

    @property
    def runner(self) -> Any:
        return self.line.runner or self.line.model.runner

    async def emu(self, cmd: str, **args: Any) -> Any:
        return await self.line.control(cmd, **args)


@contextlib.asynccontextmanager
async def reader_rig(tmp_path, model: IdCardReaderModel | None = None, **options: Any):
    """The SAM reader on the emulator over a pty pair, or on the rig's reader (tests/rig/lines.py)."""
    model = model or IdCardReaderModel()
    async with lines.device_line("idcard", model, str(tmp_path / "emu-idcard.sock")) as line:
        events: list[DeviceEvent] = []
        on_rig = lines.rig_device("idcard").options if lines.rig_mode() else {}
        driver = SamIdReader("idreader", SamIdReader.Options(port=line.path, **{**options, **on_rig}),
                             DeviceContext(report=events.append))
        async with driver:
            yield ReaderRig(driver, line, events)


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

"""Identity tests: devices on real pty pairs (ID reader) and real pcscd + vpcd (SIM)."""
from __future__ import annotations

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

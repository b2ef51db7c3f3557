"""A dispenser driver talking to its emulator over a real pty pair, with a control socket."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from hal.device import DeviceContext, DeviceEvent
from hal.emulators.control import call
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort


@dataclass
class Rig:
    driver: Any
    model: Any
    sock: str
    events: list[DeviceEvent] = field(default_factory=list)

    async def emu(self, cmd: str, **args: Any) -> Any:
        return await call(self.sock, cmd, **args)

    def faults(self) -> list[str]:
        return [e.code for e in self.events if e.kind == "fault"]


@contextlib.asynccontextmanager
async def rig(driver_cls, model, tmp_path, **options: Any):
    port = SimPort(model.name, EmulatorRunner(model))
    sock = str(tmp_path / f"emu-{model.name}.sock")
    await port.start(sock)
    events: list[DeviceEvent] = []
    ctx = DeviceContext(report=events.append)
    driver = driver_cls("dispenser", driver_cls.Options(port=port.path, **options), ctx)
    try:
        async with driver:
            yield Rig(driver, model, sock, events)
    finally:
        await port.stop()

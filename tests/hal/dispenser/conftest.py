"""A dispenser driver talking to its emulator over a real pty pair, with a control socket, or
under ``pytest --rig rig.toml`` to the rig's dispenser (tests/rig/lines.py)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from hal.device import DeviceContext, DeviceEvent
from tests.rig import lines


@dataclass
class Rig:
    driver: Any
    line: lines.Line
    events: list[DeviceEvent] = field(default_factory=list)

    @property
    def model(self) -> Any:
        return self.line.model  # on the rig: skips (the emulator is another process)

    async def emu(self, cmd: str, **args: Any) -> Any:
        return await self.line.control(cmd, **args)

    def faults(self) -> list[str]:
        return [e.code for e in self.events if e.kind == "fault"]


@contextlib.asynccontextmanager
async def rig(driver_cls, model, tmp_path, **options: Any):
    async with lines.device_line(model.name, model, str(tmp_path / f"emu-{model.name}.sock")) as line:
        events: list[DeviceEvent] = []
        ctx = DeviceContext(report=events.append)
        on_rig = lines.rig_device(model.name).options if lines.rig_mode() else {}
        driver = driver_cls("dispenser", driver_cls.Options(port=line.path, **{**options, **on_rig}), ctx)
        async with driver:
            yield Rig(driver, line, events)
            lines.note_identity(model.name, firmware=getattr(driver, "firmware", None))

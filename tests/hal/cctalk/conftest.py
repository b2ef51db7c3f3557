"""The ccTalk drivers against the bus emulator (hal/emulators/cctalk.py) on a real pty pair,
or under ``pytest --rig rig.toml`` against the rig's bus (tests/rig/lines.py)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from hal.cash import CashEvent
from hal.device import DeviceContext, DeviceEvent
from hal.emulators.cctalk import CcTalkBus
from tests.rig import lines

FAST = {"poll_interval_ms": 20, "reply_timeout_ms": 50, "echo": False}  # the emulator starts without echo


PARTS = {"CcTalkCoinAcceptor": "coin", "CcTalkBillValidator": "bill", "CcTalkHopper": "hopper"}


@dataclass
class Emu:
    line: lines.Line
    reports: list[DeviceEvent] = field(default_factory=list)
    ctx: DeviceContext = field(default_factory=DeviceContext)
    drivers: list[Any] = field(default_factory=list)

    async def __call__(self, cmd: str, **args: Any) -> Any:
        """A control command over the emulator's control socket."""
        return await self.line.control(cmd, **args)

    @property
    def path(self) -> str:
        return self.line.path

    @property
    def model(self) -> Any:
        """The bus emulator's own objects (a test that reads them skips on the rig)."""
        return self.line.model

    @property
    def runner(self) -> Any:
        if self.line.runner is None:
            return self.line.model.runner  # skips: the rig's emulator is another process
        return self.line.runner

    def driver(self, cls: type, **options: Any) -> Any:
        part = PARTS.get(cls.__name__)
        on_rig = lines.rig_device("cctalk", part).options if lines.rig_mode() else {}
        opts = cls.Options(port=self.path, **{**FAST, **options, **on_rig})
        driver = cls(cls.__name__, opts, self.ctx)
        self.drivers.append((part, driver))
        return driver

    def note_identities(self) -> None:
        for part, driver in self.drivers:
            ident = getattr(driver, "identity", None) or {}
            if part and ident.get("category"):
                lines.note_identity(f"cctalk.{part}", manufacturer=ident.get("manufacturer"),
                                    product=ident.get("product"), serial=ident.get("serial"),
                                    software=ident.get("software"))

    def reported(self, code: str) -> list[DeviceEvent]:
        return [r for r in self.reports if r.code == code]


@pytest.fixture
async def emu(tmp_path, request):
    options = getattr(request, "param", {})
    async with lines.device_line("cctalk", CcTalkBus(**options), str(tmp_path / "emu.sock")) as line:
        e = Emu(line)
        e.ctx = DeviceContext(report=e.reports.append)
        yield e
        e.note_identities()


async def until(dev: Any, kind: type, timeout: float = 15.0) -> tuple[CashEvent, list[CashEvent]]:
    """Read ``dev``'s events until one of ``kind``; returns it and everything seen on the way."""
    seen: list[CashEvent] = []
    async with asyncio.timeout(timeout):
        async for event in dev.events():
            seen.append(event)
            if isinstance(event, kind):
                return event, seen
    raise AssertionError("unreachable")


async def condition(predicate, timeout: float = 15.0, step: float = 0.01) -> None:
    """Wait until ``predicate()`` is true (state reached through the line, not a sleep for luck)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)

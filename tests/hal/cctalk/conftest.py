"""The ccTalk drivers against the bus emulator (hal/emulators/cctalk.py) on a real pty pair."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from hal.cash import CashEvent
from hal.device import DeviceContext, DeviceEvent
from hal.emulators.cctalk import CcTalkBus
from hal.emulators.control import call
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort

FAST = {"poll_interval_ms": 20, "reply_timeout_ms": 50, "echo": False}  # the emulator starts without echo


@dataclass
class Emu:
    port: SimPort
    sock: str
    reports: list[DeviceEvent] = field(default_factory=list)
    ctx: DeviceContext = field(default_factory=DeviceContext)

    async def __call__(self, cmd: str, **args: Any) -> Any:
        """A control command over the emulator's control socket."""
        return await call(self.sock, cmd, **args)

    @property
    def path(self) -> str:
        return self.port.path

    def driver(self, cls: type, **options: Any) -> Any:
        opts = cls.Options(port=self.path, **{**FAST, **options})
        return cls(cls.__name__, opts, self.ctx)

    def reported(self, code: str) -> list[DeviceEvent]:
        return [r for r in self.reports if r.code == code]


@pytest.fixture
async def emu(tmp_path, request):
    options = getattr(request, "param", {})
    port = SimPort("cctalk", EmulatorRunner(CcTalkBus(**options)))
    sock = str(tmp_path / "emu.sock")
    await port.start(sock)
    e = Emu(port, sock)
    e.ctx = DeviceContext(report=e.reports.append)
    yield e
    await port.stop()


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

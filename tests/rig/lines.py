"""Where a device test's driver finds its device: an emulator on a pty here, or the rig's port.

Without ``--rig`` every call makes a fresh emulator on a real pty pair in this process, with its
control socket, as the device tests always did. With ``--rig rig.toml`` (plugin.py) the same call
hands out the port rig.toml names: a real device, or an emulator on the rig's second machine that
is reset before each test. What the rig cannot give skips the test with the reason:

- a device rig.toml does not have;
- an emulator built with options other than the defaults (the rig's emulators run with defaults);
- the emulator's control (insert a coin, jam a card) when the device is real;
- the emulator's memory (``line.model``), which is in another process on the rig.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest

from hal.emulators.control import call
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort

from .config import RigConfig, RigDevice

ACTIVE: RigConfig | None = None  # set by plugin.py under --rig
USED: dict[str, set[str]] = defaultdict(set)  # test node id -> devices it asked for (the report's rows)
IDENTITY: dict[str, dict[str, Any]] = {}  # device -> what it said about itself
CURRENT: list[str] = [""]  # the node id of the test running now


def rig_mode() -> bool:
    return ACTIVE is not None


def real(name: str) -> bool:
    """A real device on this rig: a test checks that it names itself, not that it is our emulator."""
    return ACTIVE is not None and name in ACTIVE.devices and ACTIVE.devices[name].real


def note_identity(device: str, **fields: Any) -> None:
    """What a device reported about itself (manufacturer, product, serial, firmware...) for the report."""
    IDENTITY.setdefault(device, {}).update({k: v for k, v in fields.items() if v not in (None, "", {})})


class _InAnotherProcess:
    def __init__(self, device: str) -> None:
        self._device = device

    def __getattr__(self, name: str) -> Any:
        pytest.skip(f"reads the {self._device} emulator's memory ({name}); on the rig it is another process")


@dataclass
class Line:
    device: str
    path: str  # what the driver opens as its port
    sock: str | None  # the emulator's control socket; None for a real device
    _model: Any
    runner: Any = None

    @property
    def model(self) -> Any:
        """The emulator's model object (tests here); on the rig a stand-in that skips the test."""
        return self._model if self.runner is not None else _InAnotherProcess(self.device)

    async def control(self, cmd: str, /, **args: Any) -> Any:
        if self.sock is None:
            pytest.skip(f"needs the emulator's control ({cmd}): {self.device} is a real device on this rig")
        return await call(self.sock, cmd, **args)


def rig_device(name: str, part: str | None = None) -> RigDevice:
    """rig.toml's entry for ``name`` (and, on a ccTalk bus, ``part``), or skip the test saying why."""
    assert ACTIVE is not None
    USED[CURRENT[0]].add(f"{name}.{part}" if part else name)
    device = ACTIVE.devices.get(name)
    if device is None:
        pytest.skip(f"the rig has no {name} ({ACTIVE.path} has no [devices.{name}])")
    if part and part not in device.has:
        pytest.skip(f"the rig's ccTalk bus has no {part} ({ACTIVE.path}: has = {list(device.has)})")
    return device


def _plain(value: Any) -> bool:
    """Settings-like data (numbers, text, containers of them), not objects compared by identity."""
    if isinstance(value, (int, float, str, bool, bytes, type(None))):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def _default(model: Any) -> bool:
    """Built with the defaults, as the rig's emulators are (``python -m hal.emulators NAME``)?
    Its snapshot and every plain attribute (one level into its parts) must match a fresh one's."""
    fresh = type(model)()
    if model.snapshot() != fresh.snapshot():
        return False

    def same(a: Any, b: Any, depth: int) -> bool:
        for key, theirs in vars(b).items():
            mine = getattr(a, key, None)
            if _plain(theirs):
                if mine != theirs:
                    return False
            elif depth and hasattr(theirs, "__dict__") and not same(mine, theirs, depth - 1):
                return False
        return True

    return same(model, fresh, 1)


@contextlib.asynccontextmanager
async def device_line(name: str, model: Any, sock: str | None) -> AsyncIterator[Line]:
    """The line to device ``name`` for one test; ``model`` is the emulator the test wants."""
    if ACTIVE is None:
        port = SimPort(name, EmulatorRunner(model))
        await port.start(sock)
        try:
            yield Line(name, port.path, sock, model, port.runner)
        finally:
            await port.stop()
        return
    device = rig_device(name)
    if not _default(model):
        pytest.skip(f"needs a {name} emulator built with other settings than the rig's defaults")
    line = Line(name, device.port, device.control, model)
    if not device.real:
        await line.control("reset")
    yield line

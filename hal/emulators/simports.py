"""Emulators living inside kioskd (--simulate) or a test, each on its own pty pair.

The driver opens the pty's slave path like any serial port, so the same driver code and the
same bytes run as on a real kiosk. Each emulator also gets a control socket
``{runtime_dir}/emu-{name}.sock`` so the demo, kioskctl and tests can insert money or inject faults.
"""
from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path
from typing import Any

from . import create_model
from .runner import EmulatorRunner


class SimPort:
    def __init__(self, name: str, runner: EmulatorRunner) -> None:
        self.name = name
        self.runner = runner
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: a serial line, not a terminal
        self.path = os.ttyname(self.slave)
        self.control_path: str | None = None
        self._server: Any = None

    async def start(self, control_path: str | None) -> None:
        self.runner.attach_fd(self.master)
        if control_path:
            self._server = await self.runner.serve_control(control_path)
            self.control_path = control_path

    async def stop(self) -> None:
        self.runner.detach_fd(self.master)
        await self.runner.stop()
        if self._server:
            self._server.close()
            if self.control_path and os.path.exists(self.control_path):
                os.unlink(self.control_path)
        os.close(self.master)
        os.close(self.slave)


class SimPorts:
    """Starts emulators on first use of "sim:NAME" and hands out their pty paths.

    ``NAME-LABEL`` is another instance of emulator NAME (``sim:crt571-sims``: a second dispenser).
    """

    def __init__(self, control_dir: Path | None = None) -> None:
        self.control_dir = control_dir
        self.ports: dict[str, SimPort] = {}
        self._starting: list[asyncio.Task] = []

    def path(self, name: str) -> str:
        """The pty path of emulator ``name``, started on first use (inside the running loop)."""
        port = self.ports.get(name)
        if port is None:  # "crt571-sims": a second CRT-571 (the SIM dispenser) with its own pty and socket
            port = SimPort(name, EmulatorRunner(create_model(name.split("-", 1)[0])))
            self.ports[name] = port
            control = str(self.control_dir / f"emu-{name}.sock") if self.control_dir else None
            self._starting.append(asyncio.get_running_loop().create_task(port.start(control)))
        return port.path

    async def started(self) -> None:
        """Wait until every emulator made so far serves its line and its control socket."""
        starting, self._starting = self._starting, []
        await asyncio.gather(*starting)

    def model(self, name: str) -> Any:
        return self.ports[name].runner.model

    def runner(self, name: str) -> EmulatorRunner:
        return self.ports[name].runner

    async def stop(self) -> None:
        await self.started()
        for port in self.ports.values():
            await port.stop()
        self.ports.clear()

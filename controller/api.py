"""kioskd's local API: a unix socket speaking JSON lines, for kioskctl and the kiosk's screen.

The wire format is the emulators' control protocol (docs/emulators.md), served by the same code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from hal.emulators.control import serve_control
from hal.emulators.model import ControlError

Command = Callable[[dict[str, Any]], Any]  # may return an awaitable


class LocalApi:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.commands: dict[str, Command] = {}
        self._server: Any = None

    def command(self, name: str, handler: Command) -> None:
        self.commands[name] = handler

    def _dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        handler = self.commands.get(cmd)
        if handler is None:
            raise ControlError(f"unknown command {cmd!r}; known: {', '.join(sorted(self.commands))}")
        return handler(args)

    async def __aenter__(self) -> "LocalApi":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await serve_control(str(self.path), self._dispatch)
        os.chmod(self.path, 0o660)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        if self.path.exists():
            self.path.unlink()

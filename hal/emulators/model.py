"""The device side of an emulator, without I/O: bytes in, bytes out, commands from the control socket.

Emulators are written from the device's specification, not from our driver, so that a
misunderstanding shared by both cannot cancel out.
"""
from __future__ import annotations

from typing import Any


class ControlError(Exception):
    """A control command the emulator cannot carry out; the text goes back to the caller."""


class EmulatorModel:
    """Subclass per device (or per bus). The runner calls these from one asyncio loop."""

    name: str = ""
    # Seconds between ``tick`` calls, or None when the device never speaks unasked.
    tick_interval: float | None = None

    def receive(self, data: bytes, now: float) -> bytes:
        """Bytes from the host (any chunking) at monotonic time ``now``; returns bytes to send back."""
        raise NotImplementedError

    def tick(self, now: float) -> bytes:
        """Unsolicited output (a modem's URC, a status push); called every ``tick_interval``."""
        return b""

    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        """Device-specific script commands ("insert_coin", "jam", ...). Raise ControlError if unknown."""
        raise ControlError(f"unknown command {cmd!r}")

    def snapshot(self) -> dict[str, Any]:
        """Everything a test or the demo may want to check (totals, stock, paper)."""
        return {}

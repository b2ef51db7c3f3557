"""Runs an EmulatorModel on a byte stream (pty master fd, serial port, TCP) plus its control socket.

Line faults every emulator shares live here, not in the models:
  mute / unmute          stop answering (the device went dead) / answer again
  corrupt {count}        flip a bit in the next ``count`` replies
  inject {hex}           put raw bytes on the line, as line noise or a rogue device would
  reset                  a fresh device as it comes out of the box (the rig runs many tests on one emulator)
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

from .control import serve_control
from .model import ControlError, EmulatorModel

log = logging.getLogger("hal.emulators")


class EmulatorRunner:
    def __init__(self, model: EmulatorModel) -> None:
        self.model = model
        self.muted = False
        self.corrupt_next = 0
        self._write: Callable[[bytes], None] = lambda data: None
        self._tick_task: asyncio.Task | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    # -- bytes ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.bytes_in += len(data)
        try:
            reply = self.model.receive(data, time.monotonic())
        except Exception:  # a model bug must not take the line down: a real device would just not answer
            log.exception("emulator %s failed on %r; no reply", self.model.name, data[:32])
            return
        self._send(reply)

    def _send(self, reply: bytes) -> None:
        if not reply or self.muted:
            return
        if self.corrupt_next > 0:
            self.corrupt_next -= 1
            reply = reply[:-1] + bytes([reply[-1] ^ 0x01])
        self.bytes_out += len(reply)
        self._write(reply)

    async def _ticks(self) -> None:
        interval = self.model.tick_interval
        assert interval
        while True:
            await asyncio.sleep(interval)
            self._send(self.model.tick(time.monotonic()))

    def _start_ticks(self) -> None:
        if self.model.tick_interval and self._tick_task is None:
            self._tick_task = asyncio.get_running_loop().create_task(self._ticks())

    # -- transports ----------------------------------------------------------------------
    def attach_fd(self, fd: int) -> None:
        """Serve on a file descriptor (pty master or opened serial port) in the running loop."""
        loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EIO: the slave side is closed right now; keep serving
                return
            if data:
                self.feed(data)

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    continue
                view = view[n:]

        self._write = write
        loop.add_reader(fd, readable)
        self._start_ticks()

    def detach_fd(self, fd: int) -> None:
        asyncio.get_running_loop().remove_reader(fd)

    async def serve_tcp(self, host: str, port: int) -> asyncio.AbstractServer:
        """Serve one TCP client at a time (the device has one cable)."""

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            write = self._write = writer.write
            try:
                while data := await reader.read(4096):
                    self.feed(data)
            finally:
                if self._write is write:  # a host that reconnected first keeps its line
                    self._write = lambda data: None
                writer.close()

        self._start_ticks()
        return await asyncio.start_server(client, host, port)

    async def stop(self) -> None:
        if self._tick_task:
            self._tick_task.cancel()

    # -- control -------------------------------------------------------------------------
    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "ping":
            return "pong"
        if cmd == "mute":
            self.muted = True
            return None
        if cmd == "unmute":
            self.muted = False
            return None
        if cmd == "corrupt":
            self.corrupt_next = int(args.get("count", 1))
            return None
        if cmd == "inject":
            try:
                raw = bytes.fromhex(str(args.get("hex", "")))
            except ValueError as exc:
                raise ControlError(f"inject: bad hex: {exc}") from None
            self.bytes_out += len(raw)
            self._write(raw)
            return None
        if cmd == "reset":
            self.model = type(self.model)()
            self.muted, self.corrupt_next = False, 0
            return None
        if cmd == "state":
            return {
                "emulator": self.model.name,
                "muted": self.muted,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                **self.model.snapshot(),
            }
        return self.model.control(cmd, args)

    async def serve_control(self, path: str) -> asyncio.AbstractServer:
        return await serve_control(path, self.control)

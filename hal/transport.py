"""Byte streams to devices: a real serial port, a pty, TCP, or an emulator kioskd runs itself.

Drivers never know which: they get a ``ByteLink`` from ``open_link(port)``.

    /dev/ttyUSB0, /dev/pts/7   serial (pyserial-asyncio-fast)
    tcp://HOST:PORT            a device (or emulator) on another machine of the rig
    sim:NAME                   --simulate: the emulator NAME on a pty pair inside kioskd
"""
from __future__ import annotations

import asyncio
from typing import Any


class LinkClosed(ConnectionError):
    """The other end went away (unplugged adapter, closed pty, dropped TCP)."""


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.closed = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.arrived.set()


class ByteLink:
    """A duplex byte stream with timed reads and a way to throw away stale input."""

    def __init__(self, transport: Any, receiver: _Receiver, port: str) -> None:
        self._transport = transport
        self._rx = receiver
        self.port = port

    def write(self, data: bytes) -> None:
        if self._rx.closed:
            raise LinkClosed(f"{self.port}: link closed")
        self._transport.write(data)

    async def read(self, max_wait: float, max_bytes: int = 4096) -> bytes:
        """Whatever has arrived, waiting at most ``max_wait`` s for the first byte; b"" on silence."""
        if not self._rx.buffer and not self._rx.closed:
            self._rx.arrived.clear()
            try:
                await asyncio.wait_for(self._rx.arrived.wait(), max_wait)
            except TimeoutError:
                return b""
        if not self._rx.buffer and self._rx.closed:
            raise LinkClosed(f"{self.port}: link closed")
        data = bytes(self._rx.buffer[:max_bytes])
        del self._rx.buffer[:max_bytes]
        return data

    def discard_input(self) -> bytes:
        """Drop (and return) bytes nobody asked for: late replies must not answer the next question."""
        stale = bytes(self._rx.buffer)
        self._rx.buffer.clear()
        return stale

    @property
    def pending(self) -> int:
        """Bytes received and not yet read."""
        return len(self._rx.buffer)

    @property
    def closed(self) -> bool:
        return self._rx.closed

    async def close(self) -> None:
        if not self._rx.closed:
            self._transport.close()
        await asyncio.sleep(0)


async def open_link(port: str, *, baudrate: int = 9600, sim_ports: Any = None) -> ByteLink:
    """Open ``port`` (see the module docstring for the forms it takes)."""
    loop = asyncio.get_running_loop()
    receiver = _Receiver()
    if port.startswith("sim:"):
        if sim_ports is None:
            raise ValueError(f"{port}: sim: ports exist only when kioskd runs with --simulate")
        port_path = sim_ports.path(port[4:])
        return await open_link(port_path, baudrate=baudrate)
    if port.startswith("tcp://"):
        host, _, tcp_port = port[6:].rpartition(":")
        transport, _ = await loop.create_connection(lambda: receiver, host, int(tcp_port))
    else:
        import serial_asyncio_fast  # lazy: keeps kioskd's start-up imports lean

        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: receiver, port, baudrate=baudrate
        )
    return ByteLink(transport, receiver, port)

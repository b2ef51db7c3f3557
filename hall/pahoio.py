"""paho's per-packet socket I/O, batched: what halld's event loop spent most of its time on.

Under aiomqtt, paho reads a packet with three or four recv calls (the command byte, each byte of
the remaining length, then the rest), handles one packet per wake-up of the event loop (its
loop_read reads one packet when nothing of ours is in flight), and writes every packet with its
own send, among them the PUBACK of each record received. Measured with bench/hall.py (a), those
syscalls and wake-ups were most of halld's event-loop CPU per record.

`lean(client)` puts a `BufferedSocket` under a connected paho client: one recv takes whatever the
kernel holds and `pending()` (which aiomqtt asks, for TLS) says more is buffered, so one wake-up
reads every packet that has arrived; the packets paho writes in one `loop_write` leave in one
send. The MQTT bytes and their order are unchanged. `share_property_tables()` makes paho's MQTT v5
`Properties` (one per message received) stop rebuilding their name/type tables.

Both lean on paho internals (`_sock`, `loop_write`, `Properties` attributes) checked against
paho-mqtt 2.1/2.2; they back off (leave paho as it is) when those are not what they expect.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

_NOT_NOW = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


class BufferedSocket:
    """A paho socket with a read buffer and a write buffer; everything else is the socket's."""

    __slots__ = ("_sock", "_buf", "_pos", "_out", "_loop", "_write_more")

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop, write_more: Callable[[], Any]) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._out = bytearray()
        self._loop = loop
        self._write_more = write_more  # paho's loop_write, then flush()

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(65536)  # BlockingIOError, SSLWantReadError and EOF (b"") as before
            if len(data) <= n:
                return data
            self._buf, self._pos = data, 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Taken whole (so paho's loop_write always empties its queue); it leaves at flush()."""
        self._out += data
        return len(data)

    def flush(self) -> None:
        """Send what is buffered; what the kernel will not take yet leaves when the socket is
        writable. Our writer callback may replace aiomqtt's: both run paho's loop_write and this."""
        out = self._out
        while out:
            try:
                sent = self._sock.send(out)
            except _NOT_NOW:
                self._loop.add_writer(self._sock.fileno(), self._writable)
                return
            del out[:sent]

    def _writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())
        try:
            self._write_more()
        except OSError:
            pass  # the link is broken: paho's next read or keepalive finds it and reconnects

    def close(self) -> None:
        """paho closes right after writing DISCONNECT: that packet must still leave (else the
        broker publishes our will). Best effort, never blocking."""
        try:
            if self._out:
                self._sock.send(self._out)
        except OSError:
            pass
        finally:
            self._out.clear()
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._sock.fileno())
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def lean(paho_client: Any) -> None:
    """Batch a connected paho client's reads and writes (see the module doc). Call it from the
    event loop that serves the client, right after connecting."""
    sock = getattr(paho_client, "_sock", None)
    loop_write = getattr(paho_client, "loop_write", None)
    if sock is None or isinstance(sock, BufferedSocket) or not hasattr(sock, "recv") or loop_write is None:
        return

    def flushing_loop_write() -> Any:
        try:
            return loop_write()
        finally:
            if paho_client._sock is buffered:  # not closed meanwhile
                buffered.flush()

    buffered = BufferedSocket(sock, asyncio.get_running_loop(), flushing_loop_write)
    paho_client._sock = buffered
    paho_client.loop_write = flushing_loop_write


def share_property_tables() -> None:
    """paho's ``Properties()`` rebuilds its name and type tables each time, and ``clear()`` (at
    every decode) probes all 27 names: a tenth of halld's event loop under load, before the
    socket batching. The tables are never written after __init__, so every instance can share
    one copy; clear() then drops only what is set. Same behaviour, a few µs less per message."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    if getattr(Properties, "_halld_shared", False):
        return
    proto = Properties(PacketTypes.PUBLISH)
    tables = {"types": proto.types, "names": proto.names, "properties": proto.properties}
    if set(vars(proto)) != {"packetType", *tables}:  # not the paho this was written against: leave it be
        return
    fixed = {"packetType", *tables}

    def __init__(self: Any, packetType: int) -> None:
        self.__dict__.update(tables, packetType=packetType)

    def clear(self: Any) -> None:
        for name in [n for n in self.__dict__ if n not in fixed]:
            delattr(self, name)

    Properties.__init__, Properties.clear, Properties._halld_shared = __init__, clear, True

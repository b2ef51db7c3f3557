"""A TCP proxy on loopback that a test controls: the kiosk's (or halld's) network, with faults.

Why: a link that is merely *closed* (broker stopped) is the easy case; a kiosk on 4G meets
routes that reset every connection, and routes that swallow bytes without a word (the client
only learns from its own timers). Put the proxy between a client and the broker and:

- ``cut()``         reset every open connection (RST); with ``refuse=True`` the proxy also
                    stops listening until ``restore()``, so dialling fails at once (ECONNREFUSED).
- ``blackhole()``   connections stay open (and new ones are accepted) but every byte in either
                    direction is dropped: only keepalives and timeouts notice.
- ``restore()``     forward normally again. Connections that lost bytes in the blackhole carry
                    a broken stream (MQTT framing cannot resume mid-packet), so they are reset:
                    that is what TCP would eventually do to them too.

It runs in the test's own event loop; only loopback addresses are accepted as targets.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct

PASS, BLACKHOLE, REFUSE = "pass", "blackhole", "refuse"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


class _Conn:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tainted = False  # lost bytes in a blackhole: the stream is broken
        self.closing = False  # we reset it
        self.tasks: list[asyncio.Task] = []

    def reset(self) -> None:
        """Abort both sides with RST (SO_LINGER 0), as a broken route would."""
        self.closing = True
        for w in (self.client, self.upstream):
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        for t in self.tasks:
            t.cancel()


class TcpProxy:
    """``async with TcpProxy(port_of_broker) as proxy: connect clients to proxy.port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        if not _loopback(target_host):
            raise ValueError(f"tcpproxy only forwards to loopback, not {target_host}")
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.port = 0
        self.mode = PASS
        self.conns: set[_Conn] = set()
        self.accepted = 0
        self.hangups = 0  # connections the client closed (or reset) itself: it gave up on them
        self.dropped_bytes = 0
        self.forwarded_bytes = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "TcpProxy":
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in list(self.conns):
            conn.reset()
        self.conns.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or self.listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- faults ---------------------------------------------------------------------------------
    def cut(self, refuse: bool = False) -> int:
        """Reset every open connection; with ``refuse``, stop listening until restore().
        Returns how many connections were cut."""
        n = len(self.conns)
        for conn in list(self.conns):
            conn.reset()
        self.conns.clear()
        if refuse and self._server is not None:
            self.mode = REFUSE
            self._server.close()
            self._server = None
        return n

    def blackhole(self) -> None:
        self.mode = BLACKHOLE

    async def restore(self) -> None:
        for conn in [c for c in self.conns if c.tainted]:
            conn.reset()
            self.conns.discard(conn)
        if self._server is None:
            await self._listen()  # the same port: clients dial the address they know
        self.mode = PASS

    # -- plumbing -------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:  # the target is down: the client sees its connection closed
            writer.transport.abort()
            return
        conn = _Conn(writer, up_writer)
        if self.mode == BLACKHOLE:
            conn.tainted = True
        self.conns.add(conn)
        conn.tasks = [asyncio.ensure_future(self._pipe(conn, reader, up_writer, from_client=True)),
                      asyncio.ensure_future(self._pipe(conn, up_reader, writer))]
        await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        conn.reset()  # one side closed or failed: close the other too
        self.conns.discard(conn)

    async def _pipe(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    from_client: bool = False) -> None:
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    if from_client and not conn.closing:  # the client hung up (not us, not the target)
                        self.hangups += 1
                    return
                if self.mode != PASS or conn.tainted:
                    conn.tainted = True
                    self.dropped_bytes += len(data)
                    continue
                writer.write(data)
                self.forwarded_bytes += len(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return

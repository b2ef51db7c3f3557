"""hall/pahoio.py: batching paho's socket I/O changes neither the bytes nor their order."""
from __future__ import annotations

import asyncio
import socket

import aiomqtt

from hall.pahoio import BufferedSocket, lean, share_property_tables


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def test_reads_hand_out_what_one_recv_took_piece_by_piece_and_say_what_is_left():
    a, b = _pair()
    with a, b:
        sock = BufferedSocket(a, asyncio.get_running_loop(), lambda: None)
        b.sendall(b"\x30\x05hello" + b"\x40\x02\x00\x01")
        await asyncio.sleep(0)
        assert sock.recv(1) == b"\x30"  # the command byte, as paho asks
        assert sock.pending() == 10
        assert sock.recv(1) == b"\x05"
        assert sock.recv(5) == b"hello"
        assert sock.recv(100) == b"\x40\x02\x00\x01"  # a short read: what is buffered, no more
        assert sock.pending() == 0
        try:
            sock.recv(1)
        except BlockingIOError:
            pass
        else:
            raise AssertionError("an empty non-blocking socket must say so, as paho expects")


async def test_writes_the_kernel_refuses_leave_in_order_once_the_peer_reads():
    a, b = _pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with a, b:
        loop = asyncio.get_running_loop()
        flushed = asyncio.Event()

        def write_more() -> None:  # what lean() passes: paho's loop_write, then flush
            sock.flush()
            flushed.set()

        sock = BufferedSocket(a, loop, write_more)
        packets = [bytes([i % 256]) * 1000 for i in range(3000)]  # 3 MB: far beyond the socket buffers
        for p in packets:
            assert sock.send(p) == len(p)  # taken whole: paho's queue always empties
        sock.flush()
        assert sock._out, "the kernel took 3 MB at once: the test did not fill the socket"
        got = bytearray()
        async with asyncio.timeout(10):
            while len(got) < 3_000_000:
                try:
                    got += b.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.001)  # the peer reading slowly; bounded by the timeout
        assert flushed.is_set()
        assert bytes(got) == b"".join(packets)


async def test_a_lean_client_publishes_and_receives_every_message_in_order(broker):
    share_property_tables()
    n = 3000
    async with aiomqtt.Client(broker.host, broker.port, identifier="pahoio-sub",
                              protocol=aiomqtt.ProtocolVersion.V5) as sub, \
            aiomqtt.Client(broker.host, broker.port, identifier="pahoio-pub", protocol=aiomqtt.ProtocolVersion.V5,
                           max_inflight_messages=500) as pub:
        lean(sub._client)
        lean(pub._client)
        await sub.subscribe("pahoio/t", qos=1)
        for i in range(n):
            pub._client.publish("pahoio/t", f"{i:06d}".encode() * 50, qos=1)
        got = []
        async with asyncio.timeout(20):
            async for m in sub.messages:
                got.append(int(m.payload[:6]))
                if len(got) == n:
                    break
        assert got == list(range(n))
        async with asyncio.timeout(10):  # every PUBACK comes back through the buffered reads
            while pub._client._out_messages:
                await asyncio.sleep(0.01)

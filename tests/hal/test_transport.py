"""The byte link and the emulator runner over a real pty pair and real TCP."""
import asyncio

import pytest

from hal.emulators.control import call
from hal.emulators.model import ControlError, EmulatorModel
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort
from hal.transport import open_link


class Upper(EmulatorModel):
    """Answers each byte string upper-cased; enough to prove the plumbing."""

    name = "upper"

    def receive(self, data: bytes, now: float) -> bytes:
        return data.upper()

    def control(self, cmd, args):
        if cmd == "shout":
            return "HEY"
        return super().control(cmd, args)


async def read_exactly(link, n, max_wait=2.0):
    data = b""
    while len(data) < n:
        chunk = await link.read(max_wait)
        if not chunk:
            break
        data += chunk
    return data


async def test_pty_round_trip_and_line_faults(tmp_path):
    port = SimPort("upper", EmulatorRunner(Upper()))
    sock = str(tmp_path / "emu.sock")
    await port.start(sock)
    link = await open_link(port.path)
    try:
        link.write(b"abc")
        assert await read_exactly(link, 3) == b"ABC"

        await call(sock, "corrupt", count=1)
        link.write(b"abc")
        assert await read_exactly(link, 3) == b"ABB"  # last byte's low bit flipped

        await call(sock, "mute")
        link.write(b"abc")
        assert await link.read(0.2) == b""  # silence is silence, not an empty answer
        await call(sock, "unmute")

        await call(sock, "inject", hex="0102ff")
        assert await read_exactly(link, 3) == b"\x01\x02\xff"

        state = await call(sock, "state")
        assert state["emulator"] == "upper" and state["bytes_in"] == 9
        assert await call(sock, "shout") == "HEY"
        with pytest.raises(ControlError, match="unknown command"):
            await call(sock, "frobnicate")
    finally:
        await link.close()
        await port.stop()


async def test_discard_input_drops_late_replies():
    port = SimPort("upper", EmulatorRunner(Upper()))
    await port.start(None)
    link = await open_link(port.path)
    try:
        link.write(b"late")
        async with asyncio.timeout(2):
            while link.pending < 4:  # the whole late reply is in our buffer, unread
                await asyncio.sleep(0)
        assert link.discard_input() == b"LATE"
        link.write(b"x")
        assert await read_exactly(link, 1) == b"X"
    finally:
        await link.close()
        await port.stop()


async def test_tcp_transport_runs_the_same_driver_code():
    runner = EmulatorRunner(Upper())
    server = await runner.serve_tcp("127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    link = await open_link(f"tcp://{host}:{port}")
    try:
        link.write(b"tcp")
        assert await read_exactly(link, 3) == b"TCP"
    finally:
        await link.close()
        server.close()


async def test_socket_urls_and_a_tcp_control_socket_reach_an_emulator_on_another_machine():
    """The rig's second machine: pyserial's socket://HOST:PORT for the line, tcp://HOST:PORT for control;
    ``reset`` gives a fresh device for the next test."""
    from hall.broker import free_port

    runner = EmulatorRunner(Upper())
    server = await runner.serve_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    control = f"tcp://127.0.0.1:{free_port()}"
    ctl = await runner.serve_control(control)
    link = await open_link(f"socket://127.0.0.1:{port}")
    try:
        await call(control, "mute")
        link.write(b"x")
        assert await link.read(0.2) == b""
        first = runner.model
        await call(control, "reset")
        assert runner.model is not first and isinstance(runner.model, Upper) and not runner.muted
        link.write(b"socket")
        assert await read_exactly(link, 6) == b"SOCKET"
        assert (await call(control, "state"))["bytes_in"] == 7
    finally:
        await link.close()
        ctl.close()
        server.close()

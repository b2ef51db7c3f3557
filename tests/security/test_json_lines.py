"""Case 7 of issue 16 on the JSON-lines sockets (kioskd's local API, every emulator's control
socket): an over-long or too deeply nested line gets an error reply, and the same connection
answers the next request."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

MAX_LINE = 1 << 16  # hal/emulators/control.py MAX_LINE (64 KiB, also asyncio's readline limit)

from .conftest import timeout

HOSTILE = [
    b"x" * (MAX_LINE * 3) + b"\n",  # over-long, arriving in many reads
    b'{"cmd": "' + b"a" * (MAX_LINE + 10) + b'"}\n',
    b'{"cmd": "ping", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",  # also over-long
    b'{"cmd": "ping", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n",  # within the limit, too deep
    b"\xff\xfe\n",
]


async def exchange(path: str, ping: bytes) -> list[dict]:
    import json

    reader, writer = await asyncio.open_unix_connection(path)
    try:
        replies = []
        for line in (*HOSTILE, ping):
            writer.write(line)
            await writer.drain()
            async with timeout(10, f"a reply to {line[:40]!r}"):
                raw = await reader.readline()
            assert raw, f"connection dropped after {line[:40]!r}"
            replies.append(json.loads(raw))
        return replies
    finally:
        writer.close()


def check(replies: list[dict]) -> None:
    *bad, last = replies
    assert [r["ok"] for r in bad] == [False] * len(HOSTILE), bad
    assert "longer than" in bad[0]["error"] and "longer than" in bad[1]["error"] and "nested too deep" in bad[3]["error"]
    assert last["ok"] is True


async def test_kioskd_local_api_answers_hostile_lines_and_keeps_the_connection(kioskd_k1):
    kioskd_k1.start()
    check(await exchange(kioskd_k1.sock, b'{"cmd": "menu"}\n'))
    assert "Traceback" not in kioskd_k1.log()


@pytest.fixture
def emulator(tmp_path):
    from hall.broker import free_port

    sock = tmp_path / "emu.sock"
    log = open(tmp_path / "emu.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hal.emulators", "escpos", "--tcp", f"127.0.0.1:{free_port()}",
                             "--control", str(sock)], stdout=log, stderr=subprocess.STDOUT)
    yield proc, sock, tmp_path / "emu.log"
    proc.terminate()
    proc.wait(10)
    log.close()


async def test_an_emulators_control_socket_answers_hostile_lines_and_keeps_the_connection(emulator):
    proc, sock, log = emulator
    async with timeout(20, "the emulator's control socket"):
        while not sock.exists():
            await asyncio.sleep(0.05)  # polling for the socket file; bounded by the timeout
    check(await exchange(str(sock), b'{"cmd": "ping"}\n'))
    assert proc.poll() is None and "Traceback" not in log.read_text()

"""WATCHDOG=1 flows only while every critical task is alive: a dead task means systemd restarts us."""
import asyncio
import logging
import socket

from controller.config import load
from controller.kiosk import Kiosk
from controller.sdnotify import Notifier
from tests.support.kioskd import write_config


def drain(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


async def test_watchdog_is_withheld_once_a_critical_task_dies(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="kioskd")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify.sock"))
    kiosk = Kiosk(load(write_config(tmp_path, 1)), Notifier(str(tmp_path / "notify.sock")))
    critical = asyncio.create_task(asyncio.Event().wait(), name="poller")
    kiosk._critical.append(critical)
    watchdog = asyncio.create_task(kiosk._watchdog(0.01))
    try:
        async with asyncio.timeout(5):
            while "WATCHDOG=1" not in drain(receiver):
                await asyncio.sleep(0.01)
        critical.cancel()

        def withheld():
            return sum("withholding watchdog" in r.getMessage() for r in caplog.records)

        async with asyncio.timeout(5):
            while withheld() < 1:
                await asyncio.sleep(0.01)
        drain(receiver)  # pings sent before the task's death was noticed
        async with asyncio.timeout(5):
            while withheld() < 3:
                await asyncio.sleep(0.01)
        assert "WATCHDOG=1" not in drain(receiver)
        assert "poller" in str(caplog.records[-1].__dict__.get("fields"))
    finally:
        watchdog.cancel()
        receiver.close()

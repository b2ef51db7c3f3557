"""End to end: the kiosk's link against the real halld (as a process) with bosssim behind its BOSS
gateway, on a real broker. Records are acked by halld's commits; a credit travels kiosk -> halld
-> bosssim and back, once per key; halld going away says offline and the kiosk refuses at once."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid

import pytest

from controller.boss_link import HallBossTransport
from tests.e2e.conftest import BossSim
from transactions.boss import Boss, BossUnavailable

from .linkkit import enqueue, kiosk_config, kiosk_link, unique, until


@pytest.fixture
async def bosssim(tmp_path):
    boss = BossSim(tmp_path / "boss.db")
    await boss.start()
    yield boss
    boss.stop()


def start_halld(tmp_path, port: int, hall: str, boss_url: str) -> subprocess.Popen:
    log = open(tmp_path / "halld.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", str(tmp_path / "hall.db"),
                             "--mqtt-port", str(port), "--hall", hall, "--boss", boss_url, "--http", "off",
                             "--worker", f"halld-{uuid.uuid4().hex[:6]}"], stdout=log, stderr=log)


async def test_kiosk_to_halld_to_bosssim_and_back(tmp_path, broker, bosssim):
    hall = f"H-{uuid.uuid4().hex[:6]}"
    config = kiosk_config(tmp_path, broker.port, kiosk=unique(), hall=hall)
    ledger = await bosssim.ledger()
    phone = next(p for p, a in ledger["accounts"].items() if a.get("status", "active") == "active")
    before = await bosssim.balance(phone)
    halld = start_halld(tmp_path, broker.port, hall, bosssim.url)
    transports = []
    try:
        async with kiosk_link(config, setup=lambda link: transports.append(HallBossTransport(link))) as (link, journal, outbox):
            await until(lambda: link.hall_online is True, timeout=20)  # halld's retained hall state
            boss = Boss(transports[0], timeout=5)

            await enqueue(journal, 3, outbox)
            await until(lambda: outbox.acked == 3 and outbox.depth == 0)  # acked after halld's commit

            result = await boss.credit(phone, 1000, f"{config.kiosk.id}-1-1:credit")
            again = await boss.credit(phone, 1000, f"{config.kiosk.id}-1-1:credit")  # the same key: applied once
            assert result.boss_ref == again.boss_ref
            assert await bosssim.balance(phone) == before + 1000
            assert (await boss.credit_status(f"{config.kiosk.id}-1-1:credit")).found

            halld.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(halld.wait, 20) == 0
            await until(lambda: link.hall_online is False)  # its goodbye says offline
            async with asyncio.timeout(2):
                with pytest.raises(BossUnavailable):
                    await boss.query_balance(phone)
    finally:
        if halld.poll() is None:
            halld.kill()
            halld.wait()

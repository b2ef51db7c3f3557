"""halld over a real mosquitto: acks after commit, resend on a hole, malformed input survives,
hall state, two workers on one PostgreSQL database, SIGTERM. docs/mqtt.md is the contract."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid

from hall import queries
from hall.db import connect

from .kiosk_client import FakeKiosk, running_halld, staff_headers


def ids() -> tuple[str, str]:
    """A hall and a worker of this test's own: the broker (and its retained messages) is shared."""
    tag = uuid.uuid4().hex[:6]
    return f"H{tag}", f"halld-{tag}"


def read(db_url: str, fn, *args):
    db = connect(db_url)
    try:
        return fn(db, *args)
    finally:
        db.close()


async def test_records_are_acked_with_the_high_water_after_commit(broker, db_url):
    hall, worker = ids()
    async with running_halld(broker.port, db_url, worker=worker), FakeKiosk(broker.port, hall) as k:
        await k.birth(session=4, outbox_depth=3, card_stock={"3000": 40})
        for seq in range(1, 51):
            await k.txn(seq)
        ack = await k.ack_reaching(50)
        assert ack == {"schema": 1, "msg_seq": 50}
        # the ack came after the commit: everything it covers is in the database now
        assert len(read(db_url, queries.txns, "K1", 100)) == 50
        [row] = [r for r in read(db_url, queries.fleet, hall)]
        assert (row["online"], row["session"], row["card_stock"]) == (True, 4, {"3000": 40})


async def test_a_hole_in_msg_seq_is_answered_with_resend_from(broker, tmp_path):
    hall, worker = ids()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=worker), FakeKiosk(broker.port, hall) as k:
        await k.txn(1)
        assert (await k.ack_reaching(1))["msg_seq"] == 1
        await k.txn(3)  # 2 was lost on the way; the kiosk's window goes on until the hall asks
        ack, seq = None, 3
        async with asyncio.timeout(15):
            while ack is None:
                seq += 1
                await k.txn(seq)
                with contextlib.suppress(TimeoutError):
                    _, ack = await k.next("/ack", where=lambda b: "resend_from" in b, timeout=0.2)
        assert ack == {"schema": 1, "msg_seq": 1, "resend_from": 2}
        for again in range(2, seq + 1):  # the kiosk rewinds and publishes again from 2
            await k.txn(again)
        assert (await k.ack_reaching(seq))["msg_seq"] == seq


async def test_malformed_messages_are_counted_and_halld_carries_on(broker, tmp_path):
    hall, worker = ids()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=worker) as halld, \
            FakeKiosk(broker.port, hall) as k:
        await k.publish("txn", b"\xff\xfe not json")
        await k.publish("txn", {"msg_seq": "seven", "txn": "x"})
        await k.publish("event", {"msg_seq": 1.5, "kind": "fault"})
        await k.publish("status", b"[]", retain=False)
        await k.publish("txn", json.dumps({"schema": 99, "msg_seq": 1, "txn": "x"}).encode())
        await k.publish("boss/req", b"{", ResponseTopic=f"{k.base}/resp/boss", CorrelationData=b"c1")
        await k.txn(1)
        assert (await k.ack_reaching(1))["msg_seq"] == 1
        _, reply = await k.next("/resp/boss")  # even a bad BOSS request gets an answer
        assert (reply["ok"], reply["code"]) == (False, "bad_request")
        assert halld.snapshot()["malformed"] == 6


async def test_hall_state_is_retained_online_and_offline_after_a_clean_stop(broker, tmp_path):
    hall, worker = ids()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=worker, halls=[hall]):
        async with FakeKiosk(broker.port, hall) as k:  # connects after halld: sees the retained state
            _, state = await k.next(f"hall/v1/{hall}/state")
            assert (state["online"], state["worker"]) == (True, worker)
    async with FakeKiosk(broker.port, hall) as k:
        _, state = await k.next(f"hall/v1/{hall}/state")
        assert state["online"] is False


async def test_a_hall_first_seen_in_a_birth_is_announced_online(broker, tmp_path):
    hall, worker = ids()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=worker) as halld, \
            FakeKiosk(broker.port, hall) as k:
        await k.birth()
        _, state = await k.next(f"hall/v1/{hall}/state")
        assert state["online"] is True and hall in halld.halls


async def test_two_workers_on_postgresql_split_the_records_and_lose_none(broker, postgres):
    """Shared subscription: mosquitto hands each message to one of the two workers."""
    hall, _ = ids()
    url = postgres.new_database()
    async with running_halld(broker.port, url, worker=f"{hall}-w1", halls=[hall]) as w1, \
            running_halld(broker.port, url, worker=f"{hall}-w2", halls=[hall]) as w2:
        kiosks = [FakeKiosk(broker.port, hall, f"K{i}") for i in (1, 2)]
        async with kiosks[0] as k1, kiosks[1] as k2:
            for seq in range(1, 101):
                await k1.txn(seq)
                await k2.publish("event", {"msg_seq": seq, "kind": "fault", "device": "bill"})
            # a hole seen by one worker before its sibling commits may ask a spurious resend;
            # the kiosk would resend (duplicates are harmless) — here every row was sent, so the
            # high water still reaches the end
            assert (await k1.ack_reaching(100, timeout=20))["msg_seq"] == 100
            assert (await k2.ack_reaching(100, timeout=20))["msg_seq"] == 100
        both = w1.snapshot(), w2.snapshot()
        assert both[0]["records"] > 0 and both[1]["records"] > 0, both
        assert both[0]["records"] + both[1]["records"] == 200
    db = connect(url)
    try:
        assert db.one("SELECT COUNT(*) FROM records WHERE hall = ?", (hall,))[0] == 200
        assert db.query("SELECT kiosk, msg_seq FROM highwater WHERE hall = ? ORDER BY kiosk", (hall,)) == \
            [("K1", 100), ("K2", 100)]
    finally:
        db.close()


async def test_a_surviving_worker_says_online_again_when_a_sibling_leaves(broker, tmp_path):
    hall, _ = ids()
    db = str(tmp_path / "h.db")
    async with running_halld(broker.port, db, worker=f"{hall}-w1", halls=[hall]):
        async with running_halld(broker.port, db, worker=f"{hall}-w2", halls=[hall], http_port=None):
            pass  # w2 stops cleanly: its goodbye says offline
        async with FakeKiosk(broker.port, hall) as k:
            _, state = await k.next(f"hall/v1/{hall}/state", where=lambda b: b["online"])
            assert state["worker"] == f"{hall}-w1"


async def test_sigterm_stops_halld_cleanly_and_the_will_is_not_needed(broker, tmp_path):
    hall, worker = ids()
    proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", str(tmp_path / "h.db"),
                             "--mqtt-port", str(broker.port), "--worker", worker, "--hall", hall, "--http", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        assert "listening" in line
        async with FakeKiosk(broker.port, hall) as k:
            await k.txn(1)
            await k.ack_reaching(1)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 10) == 0
            _, state = await k.next(f"hall/v1/{hall}/state", where=lambda b: not b["online"])
            assert state["worker"] == worker
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert read(str(tmp_path / "h.db"), queries.txns)[0]["txn"] == "K1-1-1"


async def test_a_killed_halld_leaves_its_will_offline(broker, tmp_path):
    hall, worker = ids()
    proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", str(tmp_path / "h.db"),
                             "--mqtt-port", str(broker.port), "--worker", worker, "--hall", hall, "--http", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening" in await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        async with FakeKiosk(broker.port, hall) as k:
            await k.next(f"hall/v1/{hall}/state", where=lambda b: b["online"])
            proc.kill()
            _, state = await k.next(f"hall/v1/{hall}/state", where=lambda b: not b["online"])
            assert state["worker"] == worker
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


async def test_without_a_broker_halld_keeps_trying_and_its_api_still_answers(tmp_path):
    import aiohttp

    from hall.broker import free_port
    from hall.halld import Halld, HalldConfig

    async with asyncio.timeout(10):
        async with Halld(HalldConfig(db=str(tmp_path / "h.db"), mqtt_port=free_port(), http_port=0)) as halld:
            async with aiohttp.ClientSession(headers=await staff_headers(halld, "viewer")) as http:
                async with http.get(f"http://127.0.0.1:{halld.http_port}/api/stats") as resp:
                    stats = await resp.json()
            assert stats["connected"] is False and not halld.connected.is_set()

"""Hall -> kiosk commands through the HTTP API and `halld cmd`, and the API's read side.

The kiosk here is a bare MQTT client answering by docs/mqtt.md "Commands" (kioskd's own command
handling is tested with kioskd)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid

import aiohttp

from .kiosk_client import FakeKiosk, birth_stored, running_halld, staff_headers


async def answer_commands(k: FakeKiosk, handled: list[tuple[str, dict]], reply_for=None) -> None:
    """The kiosk's side: answer each cmd/{name} on its response topic with its correlation data."""
    while True:
        m, body = await k.next("", timeout=60, where=lambda b: "args" in b)
        name = str(m.topic).rsplit("/cmd/", 1)[-1]
        handled.append((name, body["args"]))
        reply = reply_for(name, body["args"]) if reply_for else {"ok": True, "result": {"done": name}}
        if reply is None:
            continue  # silence: the hall times out
        await k.client.publish(m.properties.ResponseTopic, json.dumps({"schema": 1, **reply}).encode(), qos=1,
                               properties=_corr(m.properties.CorrelationData))


def _corr(data: bytes):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    p = Properties(PacketTypes.PUBLISH)
    p.CorrelationData = data
    return p


async def post(halld, path: str, body: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=await staff_headers(halld, "operator")) as http:
        async with http.post(f"http://127.0.0.1:{halld.http_port}{path}", json=body or {}) as resp:
            return resp.status, await resp.json()


async def get(halld, path: str) -> tuple[int, object]:
    async with aiohttp.ClientSession(headers=await staff_headers(halld, "viewer")) as http:
        async with http.get(f"http://127.0.0.1:{halld.http_port}{path}") as resp:
            return resp.status, await resp.json()


def hall() -> str:
    return f"H{uuid.uuid4().hex[:6]}"


async def test_a_command_is_sent_with_a_response_topic_and_the_reply_comes_back_over_http(broker, db_url):
    h = hall()
    handled: list = []
    async with running_halld(broker.port, db_url, worker=f"{h}-w") as halld, FakeKiosk(broker.port, h) as k:
        await birth_stored(halld, k)
        responder = asyncio.create_task(answer_commands(k, handled))
        try:
            status, reply = await post(halld, "/api/kiosks/K1/cmd/disable_service",
                                       {"args": {"service": "topup"}})
        finally:
            responder.cancel()
        assert (status, reply) == (200, {"schema": 1, "ok": True, "result": {"done": "disable_service"}})
        assert handled == [("disable_service", {"service": "topup"})]
        status, log = await get(halld, "/api/commands?kiosk=K1")
        assert log[0]["name"] == "disable_service" and log[0]["ok"] is True and log[0]["reply"] == reply


async def test_a_kiosk_that_does_not_answer_is_a_504_timeout(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w") as halld, \
            FakeKiosk(broker.port, h) as k:
        responder = asyncio.create_task(answer_commands(k, [], reply_for=lambda name, args: None))
        try:
            status, reply = await post(halld, "/api/kiosks/K1/cmd/restart", {"hall": h, "timeout": 0.5})
        finally:
            responder.cancel()
        assert (status, reply["ok"], reply["code"]) == (504, False, "timeout")


async def test_commands_refuse_unknown_kiosks_and_names_that_are_not_a_topic_level(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w") as halld:
        status, reply = await post(halld, "/api/kiosks/NOPE/cmd/restart")
        assert (status, reply["code"]) == (404, "not_found")
        status, reply = await post(halld, "/api/kiosks/K1/cmd/a+b", {"hall": h})
        assert (status, reply["code"]) == (400, "bad_request")


async def test_resolving_a_review_by_command_closes_the_halls_review(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w") as halld, \
            FakeKiosk(broker.port, h) as k:
        await k.birth()
        await k.publish("event", {"msg_seq": 1, "kind": "txn_review", "txn": "K1-1-9", "reason": "unbalanced",
                                  "held_for_review": 1000})
        await k.ack_reaching(1)
        _, open_reviews = await get(halld, "/api/reviews?state=open")
        assert [r["txn"] for r in open_reviews] == ["K1-1-9"]
        responder = asyncio.create_task(answer_commands(k, []))
        try:
            status, _ = await post(halld, "/api/kiosks/K1/cmd/resolve_review",
                                   {"args": {"txn": "K1-1-9", "resolution": "refunded", "note": "paid at desk"}})
        finally:
            responder.cancel()
        assert status == 200
        _, closed = await get(halld, "/api/reviews?state=closed")
        assert [(r["txn"], r["resolution"], r["note"]) for r in closed] == [("K1-1-9", "refunded", "paid at desk")]


async def test_the_api_answers_fleet_kiosk_txns_events_refunds_and_stats(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w") as halld, \
            FakeKiosk(broker.port, h) as k:
        await k.birth(session=2, cashbox={"fen": 8000}, card_stock={"3000": 12}, devices={"bill": "ok", "printer": "fault"})
        await k.txn(1)
        await k.publish("event", {"msg_seq": 2, "kind": "refund_voucher", "txn": "K1-1-1", "fen": 300,
                                  "claim_code": "QWERTYUP23"})
        await k.ack_reaching(2)
        port = halld
        _, fleet = await get(port, f"/api/fleet?hall={h}")
        assert [(f["kiosk"], f["online"], f["cashbox_fen"], f["card_stock"], f["devices"]["printer"]) for f in fleet] == \
            [("K1", True, 8000, {"3000": 12}, "fault")]
        status, detail = await get(port, "/api/kiosks/K1")
        assert status == 200 and detail["acked_msg_seq"] == 2 and detail["open_refunds"][0]["claim_code"] == "QWERTYUP23"
        _, txns = await get(port, "/api/txns?kiosk=K1")
        assert [t["txn"] for t in txns] == ["K1-1-1"]
        _, events = await get(port, "/api/events?kind=refund_voucher")
        assert [e["msg_seq"] for e in events] == [2]
        assert (await get(port, "/api/txns?limit=x"))[0] == 400
        assert (await get(port, "/api/kiosks/NOPE"))[0] == 404
        _, stats = await get(port, "/api/stats")
        assert stats["records"] == 2 and stats["connected"] is True


async def test_the_cli_sends_a_command_and_reads_the_tables(broker, tmp_path):
    h = hall()
    db = str(tmp_path / "h.db")
    async with running_halld(broker.port, db, worker=f"{h}-w") as halld, FakeKiosk(broker.port, h) as k:
        await k.birth(session=5, outbox_depth=1)
        await k.txn(1)
        await k.ack_reaching(1)
        responder = asyncio.create_task(answer_commands(k, [], reply_for=lambda n, a: {"ok": True, "result": a}))
        token = (await staff_headers(halld, "operator"))["Authorization"].removeprefix("Bearer ")
        try:
            out = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "hall.halld", "cmd", "K1", "inhibit_cash", "--args", '{"inhibit": true}',
                "--api", f"http://127.0.0.1:{halld.http_port}", "--json"], capture_output=True, text=True, timeout=30,
                env={**os.environ, "HALLD_TOKEN": token})
        finally:
            responder.cancel()
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"schema": 1, "ok": True, "result": {"inhibit": True}}
    fleet = subprocess.run([sys.executable, "-m", "hall.halld", "fleet", "--db", db], capture_output=True, text=True)
    [row] = [re.split(r"\s{2,}", line) for line in fleet.stdout.splitlines() if line.startswith(f"{h}/K1")]
    assert row[1:4] == ["在线 online", "ready", "5"]  # KIOSK, LINK, STATE, SESSION
    txns = subprocess.run([sys.executable, "-m", "hall.halld", "txns", "--db", db, "--json"], capture_output=True, text=True)
    assert [t["txn"] for t in json.loads(txns.stdout)] == ["K1-1-1"]


async def test_a_refund_paid_at_the_counter_by_command_is_claimed_in_the_hall(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w") as halld, \
            FakeKiosk(broker.port, h) as k:
        await k.birth()
        await k.publish("event", {"msg_seq": 1, "kind": "refund_voucher", "txn": "K1-1-3", "fen": 500,
                                  "claim_code": "7KQ2MX9PAB", "reason": "hopper empty"})
        await k.ack_reaching(1)
        responder = asyncio.create_task(answer_commands(k, []))
        try:
            status, _ = await post(halld, "/api/kiosks/K1/cmd/resolve_refund",
                                   {"args": {"claim": "7KQ2MX9PAB", "resolution": "paid"}})
        finally:
            responder.cancel()
        assert status == 200
        assert (await get(halld, "/api/refunds?state=issued"))[1] == []
        _, claimed = await get(halld, "/api/refunds?state=claimed")
        assert [(r["claim_code"], r["fen"]) for r in claimed] == [("7KQ2MX9PAB", 500)]

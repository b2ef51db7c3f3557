"""BOSS over the hall (docs/mqtt.md): kiosk -> boss/req -> halld -> bosssim -> resp with the
correlation data; timeouts and unreachable BOSS as codes; idempotency keys untouched end to end."""
from __future__ import annotations

import time
import uuid

import aiohttp
import pytest

from bosssim.server import start as start_bosssim
from hall.broker import free_port

from .kiosk_client import FakeKiosk, running_halld


@pytest.fixture
async def bosssim(tmp_path):
    runner, sim, port = await start_bosssim(str(tmp_path / "boss.db"))
    sim.url = f"http://127.0.0.1:{port}"
    yield sim
    await runner.cleanup()


async def fault(sim, **body) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}/control/fault", json=body) as resp:
            assert (await resp.json())["ok"]


async def ask(k: FakeKiosk, op: str, params: dict, correlation: bytes, expiry: int = 5) -> dict:
    await k.publish("boss/req", {"op": op, "params": params}, ResponseTopic=f"{k.base}/resp/boss",
                    CorrelationData=correlation, MessageExpiryInterval=expiry)
    m, reply = await k.next("/resp/boss", timeout=expiry + 2, where=lambda b: True)
    assert m.properties.CorrelationData == correlation  # the answer names the question it answers
    return reply


def hall() -> str:
    return f"H{uuid.uuid4().hex[:6]}"


async def test_a_credit_travels_kiosk_to_boss_and_back(broker, bosssim, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w", boss_url=bosssim.url), \
            FakeKiosk(broker.port, h) as k:
        reply = await ask(k, "credit", {"phone": "13800138000", "fen": 5000, "key": "K1-1-1:credit"}, b"q1")
        assert reply["ok"] is True and reply["result"]["balance_fen"] == 1250 + 5000
        assert bosssim.books.ledger()["ops"][0]["key"] == "K1-1-1:credit"  # the key, untouched


async def test_a_repeated_key_credits_once_and_answers_the_same(broker, bosssim, tmp_path):
    h = hall()
    params = {"phone": "13800138000", "fen": 2000, "key": "K1-1-7:credit"}
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w", boss_url=bosssim.url), \
            FakeKiosk(broker.port, h) as k:
        first = await ask(k, "credit", params, b"a")
        again = await ask(k, "credit", params, b"b")  # the kiosk's retry after a lost reply
        assert first == again
        status = await ask(k, "op_status", {"key": "K1-1-7:credit"}, b"c")
        assert status["result"]["found"] is True
    assert bosssim.books.ledger()["accounts"]["13800138000"]["balance_fen"] == 1250 + 2000


async def test_a_refusal_passes_through_with_the_boss_code(broker, bosssim, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w", boss_url=bosssim.url), \
            FakeKiosk(broker.port, h) as k:
        reply = await ask(k, "credit", {"phone": "13800000000", "fen": 500, "key": "k-nobody"}, b"r")
        assert (reply["ok"], reply["code"]) == (False, "no_such_number")


async def test_a_boss_that_does_not_answer_within_the_expiry_is_a_timeout(broker, bosssim, tmp_path):
    h = hall()
    await fault(bosssim, op="credit", mode="drop_reply", delay=10)  # applied, but the answer is lost
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w", boss_url=bosssim.url), \
            FakeKiosk(broker.port, h) as k:
        started = time.monotonic()
        reply = await ask(k, "credit", {"phone": "13800138000", "fen": 100, "key": "k-lost"}, b"t", expiry=2)
        assert (reply["ok"], reply["code"]) == (False, "timeout")
        assert time.monotonic() - started < 2.5  # answered within the kiosk's own deadline
        # a timeout leaves a write's fate unknown: op_status with the same key tells it was applied
        status = await ask(k, "op_status", {"key": "k-lost"}, b"s")
        assert status["result"]["found"] is True


async def test_an_unreachable_boss_is_unavailable(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w",
                             boss_url=f"http://127.0.0.1:{free_port()}"), FakeKiosk(broker.port, h) as k:
        reply = await ask(k, "credit", {"phone": "13800138000", "fen": 100, "key": "k-x"}, b"u")
        assert (reply["ok"], reply["code"]) == (False, "unavailable")


async def test_a_hall_without_a_boss_adapter_answers_unavailable(broker, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w"), FakeKiosk(broker.port, h) as k:
        reply = await ask(k, "query_balance", {"phone": "13800138000"}, b"n")
        assert reply["code"] == "unavailable"


async def test_an_answer_is_never_sent_into_another_kiosks_subtree(broker, bosssim, tmp_path):
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w", boss_url=bosssim.url) as halld, \
            FakeKiosk(broker.port, h, "K1") as k1, FakeKiosk(broker.port, h, "K2") as k2:
        await k1.publish("boss/req", {"op": "query_balance", "params": {"phone": "13800138000"}},
                         ResponseTopic=f"{k2.base}/resp/boss", CorrelationData=b"x")
        reply = await ask(k1, "query_balance", {"phone": "13800138000"}, b"y")  # a sentinel after it
        assert reply["ok"] and not [m for m in k2.inbox if "/resp/" in str(m.topic)]
        assert halld.snapshot()["malformed"] == 1
        assert bosssim.requests == ["query_balance"]  # the refused request never reached the BOSS


async def test_a_refusal_quoting_a_lone_surrogate_is_still_answered(broker, tmp_path):
    """A parameter name UTF-8 cannot carry ("\\udfff", legal as a JSON escape) is quoted in the
    refusal: the reply must still go out (it raised UnicodeEncodeError and the kiosk waited)."""
    h = hall()
    async with running_halld(broker.port, str(tmp_path / "h.db"), worker=f"{h}-w"), FakeKiosk(broker.port, h) as k:
        reply = await ask(k, "credit", {"phone": "13800138000", "fen": 500, "key": "k", "\udfff": 1}, b"s")
        assert reply["ok"] is False and "\udfff" in reply["message"]

"""BOSS over the hall (docs/mqtt.md "BOSS over the hall") against a tiny responder on a real broker:
request/response with correlation data and message expiry, and the error mapping exactly as the
contract says. The flows' typed ``Boss`` runs unchanged on top."""
from __future__ import annotations

import asyncio

import pytest

from controller.boss_link import HallBossTransport
from transactions.boss import Boss, BossError, BossRefused, BossTimeout, BossUnavailable

from .linkkit import clear_hall_state, hall_client, kiosk_config, kiosk_link, unique, until


@pytest.fixture
async def rig(tmp_path, broker):
    """(hall, link, Boss over the hall) with the hall online."""
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid, hall="H-BOSS")
    await clear_hall_state(broker.port, "H-BOSS")
    transports = []
    async with hall_client(broker.port, "H-BOSS", kid) as hall, \
            kiosk_link(config, setup=lambda link: transports.append(HallBossTransport(link))) as (link, journal, outbox):
        await until(lambda: link.connected.is_set())
        await hall.state(True)
        await until(lambda: link.hall_online is True)
        yield hall, link, Boss(transports[0], timeout=5.0)


async def test_a_credit_travels_as_a_request_with_response_topic_correlation_and_expiry(rig):
    hall, link, boss = rig
    call = asyncio.ensure_future(boss.credit("13800138000", 5000, "K-1-7-credit"))
    req = await hall.next("boss/req")
    assert req.body == {"schema": 1, "op": "credit", "params": {"phone": "13800138000", "fen": 5000, "key": "K-1-7-credit"}}
    assert req.props.ResponseTopic == hall.base + "resp/boss"
    assert len(req.props.CorrelationData) == 16
    assert 1 <= req.props.MessageExpiryInterval <= 5  # the call's timeout: a late pick-up is dropped
    await hall.reply(req, {"schema": 1, "ok": True, "result": {"balance_fen": 12000, "boss_ref": "B-1"}})
    result = await call
    assert result.applied and result.balance_fen == 12000 and result.boss_ref == "B-1"


async def test_concurrent_requests_are_matched_by_correlation_not_by_order(rig):
    hall, link, boss = rig
    a = asyncio.ensure_future(boss.query_balance("13800000001"))
    b = asyncio.ensure_future(boss.query_balance("13800000002"))
    reqs = [await hall.next("boss/req"), await hall.next("boss/req")]
    for req in reversed(reqs):  # answer the second first
        phone = req.body["params"]["phone"]
        await hall.reply(req, {"schema": 1, "ok": True, "result": {"balance_fen": int(phone[-1]) * 100, "arrears_fen": 0}})
    assert (await a).balance_fen == 100 and (await b).balance_fen == 200


@pytest.mark.parametrize("code, error", [
    ("timeout", BossTimeout),          # the BOSS did not answer halld: a write's fate is unknown
    ("unavailable", BossUnavailable),  # the BOSS could not be reached: nothing applied
    ("no_such_number", BossRefused),   # any other code is a refusal
    ("closed", BossRefused),
])
async def test_reply_codes_map_to_the_flows_errors(rig, code, error):
    hall, link, boss = rig
    call = asyncio.ensure_future(boss.check_number("13800138000"))
    await hall.reply(await hall.next("boss/req"), {"schema": 1, "ok": False, "code": code, "message": "m"})
    with pytest.raises(error) as exc:
        await call
    assert type(exc.value) is error and exc.value.code == code


async def test_no_reply_within_the_timeout_is_a_timeout(rig):
    hall, link, boss = rig
    boss.timeout = 0.3
    with pytest.raises(BossTimeout):
        await boss.credit("13800138000", 100, "k-silent")
    assert (await hall.next("boss/req")).body["params"]["key"] == "k-silent"  # it did go out


async def test_garbage_replies_are_bad_replies_and_strangers_are_ignored(rig):
    hall, link, boss = rig
    call = asyncio.ensure_future(boss.query_balance("13800000009"))
    req = await hall.next("boss/req")
    await hall.reply(req, {"schema": 1, "ok": True, "result": {"balance_fen": 1, "arrears_fen": 0}}, correlation=b"not-ours")
    await hall.reply(req, b"\x00not json")
    with pytest.raises(BossError) as exc:
        await call
    assert exc.value.code == "bad_reply" and not isinstance(exc.value, (BossRefused, BossTimeout, BossUnavailable))


async def test_hall_offline_is_unavailable_at_once_and_nothing_is_sent(rig):
    hall, link, boss = rig
    boss.timeout = 30.0  # "at once": far sooner than this
    await hall.state(False)
    await until(lambda: link.hall_online is False)
    async with asyncio.timeout(2):
        with pytest.raises(BossUnavailable):
            await boss.credit("13800138000", 100, "k-offline")
        assert await boss.ping() is False
    await link.publish_telemetry()  # sentinel: a request published before it would have arrived first
    await hall.next("telemetry")
    assert not [g for g in hall.seen if g.leaf == "boss/req"]


async def test_link_down_is_unavailable_at_once(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, 1, kiosk=kid)  # port 1: nothing listens, the link never comes up
    transports = []
    async with kiosk_link(config, setup=lambda link: transports.append(HallBossTransport(link))) as (link, _, _):
        boss = Boss(transports[0], timeout=30.0)
        async with asyncio.timeout(2):
            with pytest.raises(BossUnavailable):
                await boss.credit("13800138000", 100, "k-down")

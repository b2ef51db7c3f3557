"""Case 2 of issue 16: a kiosk cannot make halld call anything on the BOSS but the operations
kiosks need, with parameters of the right shape (transactions/boss.py OPS)."""
from __future__ import annotations

import json

import pytest

from .conftest import halld, kiosk


async def ask(k, op, params, correlation: bytes) -> dict:
    await k.publish("boss/req", {"op": op, "params": params}, ResponseTopic=f"{k.base}/resp/boss",
                    CorrelationData=correlation, MessageExpiryInterval=5)
    m, reply = await k.next("/resp/boss", timeout=8, where=lambda b: True)
    assert m.properties.CorrelationData == correlation
    return reply


HOSTILE = [
    ("../../admin/reset?all=1", {}, "unknown_op"),
    ("%2e%2e/%2e%2e/admin/reset", {}, "unknown_op"),
    ("credit/../../admin", {"phone": "13800138000", "fen": 100, "key": "k1"}, "unknown_op"),
    ("delete_account", {"phone": "13800138000"}, "unknown_op"),
    (["credit"], {}, "unknown_op"),
    ("credit", {"phone": "13800138000", "fen": 10**30, "key": "k2"}, "bad_request"),  # no int64 in the BOSS
    ("credit", {"phone": "13800138000", "fen": 100, "key": "k3", "admin": True}, "bad_request"),
    ("credit", {"phone": "13800138000", "fen": 100}, "bad_request"),  # a write without its key
    ("query_balance", {"phone": "1380013800'; DROP TABLE accounts;--"}, "bad_request"),
    ("query_balance", {"phone": {"$ne": None}}, "bad_request"),
    ("statement", {"phone": "13800138000", "month": "../../etc"}, "bad_request"),
]


async def test_only_allowed_operations_with_well_formed_params_reach_the_boss(hall_broker, pki, recording_boss, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db"), boss_url=recording_boss.url) as h, \
            kiosk(hall_broker, pki, "K1") as k1:
        for i, (op, params, code) in enumerate(HOSTILE):
            reply = await ask(k1, op, params, f"bad-{i}".encode())
            assert (reply["ok"], reply["code"]) == (False, code), (op, params, reply)
        reply = await ask(k1, "query_balance", {"phone": "13800138000"}, b"good")
        assert reply["ok"] is True
        assert h.snapshot()["boss_not_allowed"] == len(HOSTILE)
    assert recording_boss.seen == ["POST /boss/v1/query_balance"]  # nothing else reached the operator


@pytest.mark.parametrize("payload", [b"[" * 20_000 + b"]" * 20_000,
                                     json.dumps({"schema": 1, "op": "ping", "params": {"a": [[[[]]]] * 3}}).encode(),
                                     b"\xff\xfe not utf-8", b"{}"])
async def test_a_malformed_boss_request_gets_an_answer_at_once(hall_broker, pki, recording_boss, tmp_path, payload):
    """Case 7 for boss/req: a nested-too-deep request killed the handler and the kiosk waited out
    its whole timeout; now every malformed request is answered bad_request and halld carries on."""
    async with halld(hall_broker, pki, str(tmp_path / "h.db"), boss_url=recording_boss.url), \
            kiosk(hall_broker, pki, "K1") as k1:
        await k1.publish("boss/req", payload, ResponseTopic=f"{k1.base}/resp/boss", CorrelationData=b"deep",
                         MessageExpiryInterval=30)
        m, reply = await k1.next("/resp/boss", timeout=5)  # well before the request's own 30 s
        assert (m.properties.CorrelationData, reply["ok"], reply["code"]) == (b"deep", False, "bad_request")
        assert (await ask(k1, "ping", {}, b"after"))["ok"] is True
    assert recording_boss.seen == ["POST /boss/v1/ping"]

"""bosssim's back office for the hall (issue 14): the day statement, top-up reversal inside its
window, commission and its transfer to the hall's wallet, through HTTP as halld calls them."""
from __future__ import annotations

import datetime as dt
import time

import aiohttp

from bosssim.state import BUSINESS_TZ_S


async def call(sim, op: str, **params) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sim.url}/boss/v1/{op}", json=params) as r:
            return await r.json()


async def control(sim, path: str, **body) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sim.url}/control/{path}", json=body) as r:
            return await r.json()


def today() -> str:
    return dt.datetime.fromtimestamp(time.time() + BUSINESS_TZ_S, dt.timezone.utc).date().isoformat()


async def test_the_day_statement_lists_each_money_op_with_its_key_and_a_reversal_as_negative(sim):
    assert (await call(sim, "credit", phone="13800138000", fen=5000, key="K1-1-1:credit"))["ok"]
    assert (await call(sim, "pay_bill", phone="13912345678", fen=8650, key="K1-1-2:pay"))["ok"]
    assert (await call(sim, "change_plan", phone="13800138000", plan="4G-88", key="K1-1-3:plan"))["ok"]  # no money
    assert (await call(sim, "reverse_credit", of="K1-1-1:credit", reason="wrong number", key="rev:K1-1-1"))["ok"]
    st = (await call(sim, "day_statement", date=today()))["result"]
    assert [(o["key"], o["op"], o["fen"]) for o in st["ops"]] == [
        ("K1-1-1:credit", "credit", 5000), ("K1-1-2:pay", "pay_bill", 8650), ("rev:K1-1-1", "reverse_credit", -5000)]
    assert st["total_fen"] == 8650 and st["ops"][2]["of"] == "K1-1-1:credit"
    yesterday = (dt.date.fromisoformat(today()) - dt.timedelta(days=1)).isoformat()
    assert (await call(sim, "day_statement", date=yesterday))["result"]["ops"] == []
    assert (await call(sim, "day_statement", date="2026-13-01"))["code"] == "bad_date"


async def test_a_reversal_inside_the_window_takes_the_credit_back_once_and_is_refused_outside(sim):
    await call(sim, "credit", phone="18612345678", fen=2000, key="K1-1-7:credit")
    r = await call(sim, "reverse_credit", of="K1-1-7:credit", reason="", key="rev:K1-1-7")
    assert r["ok"] and r["result"]["balance_fen"] == 30000
    again = await call(sim, "reverse_credit", of="K1-1-7:credit", reason="", key="rev:K1-1-7")
    assert again["result"] == r["result"]  # the same key: applied once, the same answer
    assert (await call(sim, "reverse_credit", of="K1-1-7:credit", reason="", key="rev2"))["code"] == "already_reversed"
    await call(sim, "credit", phone="18612345678", fen=3000, key="K1-1-8:credit")
    assert (await control(sim, "age", key="K1-1-8:credit", seconds=24 * 3600 + 1))["ok"]
    late = await call(sim, "reverse_credit", of="K1-1-8:credit", reason="", key="rev:K1-1-8")
    assert late["code"] == "window_closed"
    assert (await call(sim, "reverse_credit", of="nope", reason="", key="rev:x"))["code"] == "no_such_op"
    await call(sim, "credit", phone="13800138000", fen=100000, key="K1-1-9:credit")
    await call(sim, "pay_bill", phone="13800138000", fen=1, key="K1-1-10:pay")
    assert (await call(sim, "reverse_credit", of="K1-1-10:pay", reason="", key="rev:x"))["code"] == "not_a_credit"
    balance = (await call(sim, "query_balance", phone="18612345678"))["result"]["balance_fen"]
    assert balance == 30000 + 3000  # the refused reversals changed nothing


async def test_commission_per_op_less_reversals_and_its_transfer_to_the_wallet(sim):
    await call(sim, "credit", phone="18612345678", fen=10000, key="a:credit")  # 150
    await call(sim, "credit", phone="18612345678", fen=999, key="b:credit")  # 14 (14.985 rounded down)
    await call(sim, "pay_bill", phone="13912345678", fen=8650, key="c:pay")  # 43
    await call(sim, "reverse_credit", of="b:credit", reason="", key="rev:b")  # -14
    month = today()[:7]
    st = (await call(sim, "commission_statement", month=month))["result"]
    assert {line["op"]: line["commission_fen"] for line in st["lines"]} == {"credit": 150, "pay_bill": 43}
    assert st["commission_fen"] == st["available_fen"] == 193 and st["wallet_fen"] == 0
    assert (await call(sim, "commission_transfer", fen=194, key="t1"))["code"] == "exceeds_available"
    t = await call(sim, "commission_transfer", fen=100, key="t1")
    assert t["ok"] and t["result"]["wallet_fen"] == 100 and t["result"]["available_fen"] == 93
    st = (await call(sim, "commission_statement", month=month))["result"]
    assert (st["transferred_fen"], st["available_fen"], st["wallet_fen"]) == (100, 93, 100)
    assert (await call(sim, "commission_statement", month="2026-1"))["code"] == "bad_month"

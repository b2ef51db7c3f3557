"""bosssim: the seeded books, idempotent keyed writes, and injected faults, through the real client."""
import asyncio
import sys

import pytest
from hypothesis import given, settings, strategies as st

from bosssim.state import Books, Refused
from transactions.boss import BossRefused, BossTimeout, BossUnavailable, http_boss


async def fault(sim, **body):
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.post(sim.url + "/control/fault", json=body) as r:
            assert r.status == 200


async def ledger(sim):
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.get(sim.url + "/control/ledger") as r:
            return await r.json()


async def test_the_seeded_subscribers_answer_number_balance_plans_and_bills(boss):
    info = await boss.check_number("13800138000")
    assert info.active and info.prepaid and info.holder_masked == "张*"
    assert (await boss.query_balance("13800138000")).balance_fen == 1250
    plans = await boss.query_plans("13800138000")
    assert plans.current == "4G-58" and [p.code for p in plans.available][0] == "4G-38"
    bill = await boss.query_bill("13912345678")
    assert bill.due_fen == 8650 + 9120
    assert not (await boss.check_number("13700000000")).active
    with pytest.raises(BossRefused) as exc:
        await boss.check_number("13300000000")
    assert exc.value.code == "no_such_number"


async def test_a_credit_repeated_with_the_same_key_is_applied_once_and_answers_the_same(boss, sim):
    first = await boss.credit("13800138000", 5000, "K1-1-1:credit")
    again = await boss.credit("13800138000", 5000, "K1-1-1:credit")
    assert first == again and first.balance_fen == 1250 + 5000
    assert (await boss.query_balance("13800138000")).balance_fen == 6250
    status = await boss.credit_status("K1-1-1:credit")
    assert status.found and status.result["balance_fen"] == 6250
    assert not (await boss.credit_status("K1-1-2:credit")).found
    with pytest.raises(BossRefused) as exc:  # the same key for another amount is a bug, not a new credit
        await boss.credit("13800138000", 100, "K1-1-1:credit")
    assert exc.value.code == "key_reused"
    book = await ledger(sim)
    assert [o["key"] for o in book["ops"]] == ["K1-1-1:credit"]


async def test_a_duplicated_delivery_applies_once(boss, sim):
    await fault(sim, op="credit", mode="duplicate")
    result = await boss.credit("18612345678", 2000, "dup")
    assert result.balance_fen == 32000
    assert (await ledger(sim))["accounts"]["18612345678"]["balance_fen"] == 32000


async def test_a_dropped_reply_times_out_the_caller_but_the_credit_was_applied(sim):
    boss = http_boss(sim.url, timeout=0.3)
    try:
        await fault(sim, op="credit", mode="drop_reply", delay=5)
        with pytest.raises(BossTimeout):
            await boss.credit("13800138000", 1000, "lost-reply")
        status = await boss.credit_status("lost-reply")
        assert status.found and status.result["balance_fen"] == 2250
    finally:
        await boss.close()


async def test_a_timeout_applies_nothing(sim):
    boss = http_boss(sim.url, timeout=0.3)
    try:
        await fault(sim, op="credit", mode="timeout", delay=5)
        with pytest.raises(BossTimeout):
            await boss.credit("13800138000", 1000, "t1")
        assert not (await boss.credit_status("t1")).found
    finally:
        await boss.close()


async def test_refusal_slowness_and_a_dead_boss(boss, sim):
    await fault(sim, op="credit", mode="refuse", code="system_busy")
    with pytest.raises(BossRefused) as exc:
        await boss.credit("13800138000", 1000, "r1")
    assert exc.value.code == "system_busy"
    await fault(sim, op="*", mode="slow", delay=0.2)
    assert (await boss.query_balance("13800138000")).balance_fen == 1250
    dead = http_boss("http://127.0.0.1:9", timeout=1.0)  # nothing listens on the discard port
    try:
        with pytest.raises(BossUnavailable):
            await dead.check_number("13800138000")
        assert not await dead.ping()
    finally:
        await dead.close()


async def test_pay_bill_settles_the_oldest_month_first_and_keeps_the_excess_as_balance(boss, sim):
    await boss.pay_bill("13912345678", 10000, "p1")
    bill = await boss.query_bill("13912345678")
    assert [m["paid_fen"] for m in bill.months] == [8650, 1350]
    await boss.pay_bill("13912345678", 9000, "p2")
    assert (await boss.query_balance("13912345678")).balance_fen == 9000 - (9120 - 1350)


async def test_plan_change_suspend_password_and_sms_code(boss, sim):
    assert await boss.verify_service_password("13800138000", "123456")
    assert not await boss.verify_service_password("13800138000", "000000")
    await boss.send_sms_code("13800138000")
    code = sim.books.last_sms_code("13800138000")
    assert await boss.verify_sms_code("13800138000", code)
    assert not await boss.verify_sms_code("13800138000", "x" + code)
    await boss.change_plan("13800138000", "4G-88", "c1")
    assert (await boss.query_plans("13800138000")).current == "4G-88"
    await boss.suspend_number("13800138000", "s1")
    assert (await boss.check_number("13800138000")).status == "suspended"
    st_ = await boss.statement("13912345678", "2026-09")
    assert st_.total_fen == 8650 and sum(f for _, f in st_.lines) == 8650


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 10000)), max_size=20))
def test_any_sequence_of_keyed_credits_moves_the_balance_once_per_key(tmp_path_factory, calls):
    books = Books(str(tmp_path_factory.mktemp("b") / "boss.db"))
    first: dict[str, int] = {}
    for key, fen in calls:
        try:
            books.keyed("credit", {"phone": "18612345678", "fen": fen, "key": key})
            first.setdefault(key, fen)
        except Refused as exc:
            assert exc.code == "key_reused" and first[key] != fen
    assert books.query_balance("18612345678")["balance_fen"] == 30000 + sum(first.values())


async def test_it_runs_as_its_own_process(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bosssim", "--port", "0", "--db", str(tmp_path / "b.db"),
        stdout=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("bosssim listening on http://127.0.0.1:")
        boss = http_boss(line.split()[-1])
        try:
            assert (await boss.check_number("13912345678")).holder_masked == "李*"
        finally:
            await boss.close()
    finally:
        proc.terminate()
        assert await proc.wait() == 0

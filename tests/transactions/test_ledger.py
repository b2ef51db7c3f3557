"""The ledger rule: cash_in = applied + change_paid + refunded + held_for_review, in int fen."""
import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from transactions import records
from transactions.journal import Journal
from transactions.ledger import Ledger, LedgerError, LedgerUnbalanced, split_payout


def test_money_is_integer_fen_never_float_or_bool():
    led = Ledger()
    for bad in (1.0, 0.5, True, "100"):
        with pytest.raises(LedgerError):
            led.record("cash_in", bad)
    with pytest.raises(LedgerError):
        led.record("cash_in", -1)
    with pytest.raises(LedgerError):
        led.record("tip", 100)


def test_a_ledger_with_money_unaccounted_for_does_not_check():
    led = Ledger.from_rows([("cash_in", 5000), ("applied", 3000), ("change", 1000)])
    assert led.outstanding == 1000
    with pytest.raises(LedgerUnbalanced):
        led.check()
    led.record("refunded", 1000)
    led.check()


@given(st.integers(0, 10**7), st.integers(1, 10**4), st.one_of(st.none(), st.integers(0, 10**4)))
def test_a_payout_split_pays_whole_coins_and_leaves_the_rest_for_a_voucher(fen, coin, available):
    count, rest = split_payout(fen, coin, available)
    assert count * coin + rest == fen
    assert 0 <= count and (available is None or count <= available)
    if available is None or count < available:
        assert rest < coin  # only a short hopper leaves a whole coin's worth or more


# A random life of one transaction: money in, some applied, the rest paid or owed.
inserts = st.lists(st.sampled_from([10, 50, 100, 500, 1000, 2000, 5000, 10000]), max_size=12)


@settings(max_examples=60, deadline=None)
@given(inserts, st.integers(0, 100), st.integers(0, 30), st.sampled_from([10, 100, 500]), st.booleans())
def test_any_sequence_of_events_settled_by_the_rules_finishes_balanced(ins, applied_pct, hopper_coins, coin, unknown):
    async def scenario(path):
        async with Journal(path) as j:
            txn = await j.write(records.new_txn, "K", j.boot, "topup", "13800138000", "collecting", 0.0)
            for fen in ins:
                await j.write(records.add_money, txn, [("cash_in", fen, "bill")], 0.0, None,
                              [("cashbox", f"bill:{fen}", 1)])
            cash = sum(ins)
            applied = cash * applied_pct // 100
            await j.write(records.add_money, txn, [("applied", applied, "boss")], 0.0)
            rest = cash - applied
            if unknown and rest:  # e.g. the last payout was cut: a person decides
                await j.write(records.finish_for_review, txn, "payout unknown", 0.0)
            else:
                count, left = split_payout(rest, coin, hopper_coins)
                await j.write(records.add_money, txn, [("change", count * coin, "hopper")], 0.0)
                if left:
                    await j.write(records.issue_voucher, txn, left, "hopper short", 0.0)
                await j.write(records.finish_txn, txn, "done", 0.0)
            return await j.read(records.get_txn, txn), await j.read(records.cashbox_fen)

    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        txn, box = asyncio.run(scenario(os.path.join(d, "j.db")))
    led = Ledger(**txn["ledger"])
    assert led.balanced and led.cash_in == sum(ins) == box
    assert txn["state"] in ("done", "review") and txn["seq"] == 1
    assert sum(v["fen"] for v in txn["vouchers"]) == led.refunded


async def test_a_finish_that_does_not_balance_raises_and_the_transaction_can_go_to_review(tmp_path):
    async with Journal(tmp_path / "j.db") as j:
        txn = await j.write(records.new_txn, "K", j.boot, "card_sale", None, "collecting", 0.0)
        await j.write(records.add_money, txn, [("cash_in", 5000, "bill")], 0.0)
        with pytest.raises(LedgerUnbalanced):
            await j.write(records.finish_txn, txn, "done", 0.0)
        assert (await j.read(records.get_txn, txn))["state"] == "open"  # nothing half-written
        seq = await j.write(records.finish_for_review, txn, "unbalanced", 0.0)
        t = await j.read(records.get_txn, txn)
        out = await j.read(records.outbox_pending)
    assert t["state"] == "review" and t["ledger"]["held_for_review"] == 5000 and t["seq"] == seq
    assert [o["payload"]["kind"] for o in out if o["topic"] == "event"] == ["txn_review"]
    assert [o["payload"]["txn"] for o in out if o["topic"] == "txn"] == [txn]


async def test_the_cash_box_counts_what_was_stacked_since_the_last_collection(tmp_path):
    async with Journal(tmp_path / "j.db") as j:
        txn = await j.write(records.new_txn, "K", j.boot, "topup", None, "collecting", 0.0)
        for fen in (10000, 2000, 2000):
            await j.write(records.add_money, txn, [("cash_in", fen, "bill")], 0.0, None, [("cashbox", f"bill:{fen}", 1)])
        assert await j.read(records.cashbox_fen) == 14000
        record = await j.write(records.collect, "staff 007", 1.0)
        assert record["total_fen"] == 14000 and record["detail"] == {"bill:10000": 1, "bill:2000": 2}
        assert await j.read(records.cashbox_fen) == 0
        await j.write(records.add_money, txn, [("cash_in", 100, "coin")], 0.0, None, [("cashbox", "coin:100", 1)])
        assert await j.read(records.cashbox_fen) == 100
        events = [o["payload"] for o in await j.read(records.outbox_pending) if o["topic"] == "event"]
    assert events[0]["kind"] == "collection" and events[0]["total_fen"] == 14000


async def test_the_outbox_drains_in_order_and_an_ack_marks_everything_up_to_its_seq(tmp_path):
    async with Journal(tmp_path / "j.db") as j:
        seqs = [await j.write(records.enqueue, "event", {"n": i}, 0.0) for i in range(5)]
        assert await j.write(records.mark_delivered, seqs[2], 1.0) == 3
        pending = await j.read(records.outbox_pending)
        assert [p["seq"] for p in pending] == seqs[3:]
        assert await j.read(records.outbox_depth) == 2


async def test_vouchers_have_unique_claim_codes_and_are_claimed_once(tmp_path):
    async with Journal(tmp_path / "j.db") as j:
        txn = await j.write(records.new_txn, "K", j.boot, "topup", None, "refunding", 0.0)
        await j.write(records.add_money, txn, [("cash_in", 3000, "bill")], 0.0)
        codes = {await j.write(records.issue_voucher, txn, 1000, "hopper empty", 0.0) for _ in range(3)}
        assert len(codes) == 3 and all(len(c) == 10 for c in codes)
        code = codes.pop()
        await j.write(records.claim_voucher, code, 2.0)
        with pytest.raises(ValueError):
            await j.write(records.claim_voucher, code, 3.0)

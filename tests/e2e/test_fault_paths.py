"""Money safety when a device or the BOSS fails mid-flow (issue 15), on the simulated kiosk: real
drivers on real ptys against the emulators, bosssim over HTTP, a real journal.

Each test is one way a fault lost a fen or counted one twice; each failed on the code before the
fix. What the emulators say physically happened is the truth the journal is held to.
"""
from __future__ import annotations

import asyncio

from transactions import records
from transactions.customer import ScriptedCustomer
from transactions.journal import Journal
from transactions.ledger import Ledger
from transactions.recovery import recover
from transactions.service import run_flow

from .conftest import customer_inserting

PHONE = "13800138000"  # bosssim's 张伟, prepaid


def balanced(result) -> Ledger:
    led = Ledger(**result.ledger)
    assert led.balanced, result.ledger
    return led


async def journal_cash_in(kiosk) -> int:
    return await kiosk.journal.read(
        lambda c: c.execute("SELECT COALESCE(SUM(fen), 0) FROM money WHERE kind = 'cash_in'").fetchone()[0])


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_a_bill_whose_stack_went_unanswered_is_never_the_next_customers_cash(kiosk):
    """Case 1: the validator ACKs the route, then is busy past the stack timeout; the late Stacked
    is a device event for the review of transaction 1, not credit for transaction 2."""
    kiosk.services.config.stack_timeout = 0.5
    kiosk.emu("cctalk", "silence", device="bill", seconds=1.5, after_header=154)
    first = ScriptedCustomer([PHONE, "2000"])
    first.on_show = customer_inserting([2000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", first)
    assert result.state == "review", first.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.held_for_review, led.applied) == (2000, 2000, 0)
    bill = kiosk.devices["bill"]

    async def caught_up():  # the validator answers again and the driver has read its buffer
        return not kiosk.cash()["silenced"] and bill.event_counter == kiosk.cash()["bill"]["event_counter"]
    await until(caught_up)

    second = ScriptedCustomer([PHONE, "1000"])
    second.on_show = customer_inserting([1000], kiosk=kiosk)
    result2 = await run_flow(kiosk.services, "topup", second)
    assert result2.state == "done", second.shown_keys
    assert balanced(result2).cash_in == 1000  # only what this customer put in
    cash = kiosk.cash()
    assert cash["bills_stacked_fen"] == 3000
    assert await journal_cash_in(kiosk) == 3000  # one 20-yuan bill, counted once (held for review)
    events = await kiosk.journal.read(lambda c: [dict(r) for r in c.execute(
        "SELECT code, data FROM device_events WHERE code = 'bill_result_after_unknown'")])
    assert len(events) == 1 and result.txn in events[0]["data"] and '"stacked"' in events[0]["data"]


async def test_a_stack_that_raises_ends_in_a_payback_now_not_an_open_transaction(kiosk):
    """Case 3: every reply to the route is lost, stack() raises; the coins already in are paid
    back at once and the bill is held for review — the transaction does not wait for a reboot."""
    kiosk.emu("cctalk", "silence", device="bill", header=154, count=3)
    customer = ScriptedCustomer([PHONE, "2000"])
    customer.on_show = customer_inserting([1000], [100] * 5, kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)
    assert result.state == "review", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.refunded, led.held_for_review) == (1500, 500, 1000)
    assert "cash_fault_refund" in customer.shown_keys and "take_coins" in customer.shown_keys
    assert kiosk.cash()["hopper_paid_fen"] == 500
    assert not await kiosk.journal.read(records.open_txns)


async def test_an_acceptor_that_cannot_be_enabled_ends_the_visit_politely(kiosk):
    """Case 3: enabling the acceptors raises (no reply): no cash was taken, nothing is left open."""
    customer = ScriptedCustomer([PHONE, "2000"])

    def mute(key, fmt):
        if key == "confirm_number":
            kiosk.sim.runner("cctalk").muted = True
    customer.on_show = mute
    result = await run_flow(kiosk.services, "topup", customer)
    kiosk.sim.runner("cctalk").muted = False
    assert result.state == "cancelled" and "cash_fault_refund" in customer.shown_keys
    assert not await kiosk.journal.read(records.open_txns)


async def test_a_bill_too_large_that_cannot_be_returned_still_pays_back_what_is_in(kiosk):
    """Case 3: return_bill() raises (route replies lost): the coins already in come back now."""
    kiosk.services.config.overpay = "credit"  # no change: a bill beyond the amount due goes back
    customer = ScriptedCustomer([PHONE, "2000"])
    fed = []

    def big_bill(key, fmt):
        if key == "insert_cash" and not fed:
            for _ in range(3):
                assert kiosk.emu("cctalk", "insert_coin", value=100) == "accepted"
        if key == "paid_so_far" and fmt["paid"] == "3.00" and not fed:
            kiosk.emu("cctalk", "silence", device="bill", header=154, count=3)
            fed.append(kiosk.emu("cctalk", "insert_bill", value=2000))  # 3 + 20 > 20 yuan due
    customer.on_show = big_bill
    result = await run_flow(kiosk.services, "topup", customer)
    assert fed == ["escrow"]
    assert result.state == "refunded", customer.shown_keys
    led = balanced(result)
    vouchers = sum(v["fen"] for v in (await kiosk.txn(result.txn))["vouchers"])
    assert (led.cash_in, led.refunded) == (300, 300) and kiosk.cash()["hopper_paid_fen"] + vouchers == 300
    assert kiosk.cash()["bills_stacked_fen"] == 0
    assert "cash_fault_refund" in customer.shown_keys


async def test_a_payout_whose_status_replies_are_lost_is_read_only_once_the_hopper_has_finished(kiosk):
    """Case 4: the hopper goes quiet for three status polls mid-payout; the driver gives up, and the
    figures read at once would be a payout still running: the rest on a voucher while coins keep
    coming. The payout is final only when the hopper says so."""
    await kiosk.boss.fault(op="credit", mode="refuse")
    kiosk.emu("cctalk", "silence", device="hopper", header=166, count=3, after_header=167)
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)
    assert result.state == "refunded", customer.shown_keys
    led = balanced(result)
    cash = kiosk.cash()
    assert cash["lost"] == 3 and cash["hopper_unpaid"] == 0
    vouchers = sum(v["fen"] for v in (await kiosk.txn(result.txn))["vouchers"])
    refunded_by_hopper = await kiosk.journal.read(
        lambda c: c.execute("SELECT COALESCE(SUM(fen), 0) FROM money WHERE source LIKE 'hopper:%'").fetchone()[0])
    # what the journal says the hopper paid is what it paid; the voucher covers only the rest
    assert refunded_by_hopper == cash["hopper_paid_fen"] and led.refunded == refunded_by_hopper + vouchers == 1000


async def test_a_hopper_that_cannot_say_its_counter_pays_nothing_and_the_change_goes_on_a_voucher(kiosk):
    """Case 6 (at the source): without the counter in the intent no answer could tell this payout
    from the previous one, so the hopper is not asked to pay."""
    await kiosk.boss.fault(op="credit", mode="refuse")
    kiosk.emu("cctalk", "silence", device="hopper", header=166, count=3)
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)
    assert result.state == "refunded"
    led = balanced(result)
    assert kiosk.cash()["hopper_paid"] == 0 and led.refunded == 1000 and len(result.vouchers) == 1
    steps = (await kiosk.txn(result.txn))["steps"]
    assert not [s for s in steps if s["kind"] == "payout"]


async def test_recovery_never_takes_the_previous_payout_for_one_without_a_counter(kiosk, tmp_path):
    """Case 6: an intent without the hopper's counter (a journal from before the counter was
    journalled), cut before the hopper started. The last payout — the previous customer's 10
    coins — matches its count; trusting it gives this customer nothing."""
    await kiosk.boss.fault(op="credit", mode="refuse")
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    first = await run_flow(kiosk.services, "topup", customer)
    assert first.state == "refunded" and kiosk.cash()["hopper_paid"] == 10
    j = kiosk.journal

    def cut_payout(c):
        txn = records.new_txn(c, j.kiosk, j.boot, "topup", PHONE, "collecting", 1.0)
        records.add_money(c, txn, [("cash_in", 1000, "bill:bill")], 1.0)
        records.set_flow_state(c, txn, "refunding", 1.0)
        records.open_intent(c, txn, "payout", {"count": 10, "coin_fen": 100, "purpose": "refunded",
                                               "device": "hopper"}, 1.0)
        return txn
    txn = await j.write(cut_payout)
    await j.close()
    async with Journal(tmp_path / "journal.db", kiosk="K01") as journal:
        s = kiosk.services
        s.journal = journal
        [rec] = await recover(s)
        got = await journal.read(records.get_txn, txn)
    assert rec.txn == txn and rec.final == "review", rec
    assert got["ledger"]["change_paid"] + got["ledger"]["refunded"] == 0 and got["ledger"]["held_for_review"] == 1000
    assert kiosk.cash()["hopper_paid"] == 10  # nothing more left the hopper


async def test_a_card_the_customer_leaves_and_the_kiosk_cannot_capture_is_not_refunded_too(kiosk):
    """Case 7: the error-card bin fills while the card waits at the gate; the capture fails with
    the card still there. Refunding the price as well would let card and money both walk away:
    the price is held for review, the overpayment paid back."""
    def bin_fills(key, fmt):
        if key == "take_card":
            kiosk.emu("crt571", "set_bin", capacity=0)
    customer = ScriptedCustomer(["3000"])
    customer.on_show = customer_inserting([2000, 2000], kiosk=kiosk, also=bin_fills)
    result = await run_flow(kiosk.services, "card_sale", customer)
    assert result.state == "review", customer.shown_keys
    led = balanced(result)
    cards = kiosk.emu("crt571", "state")
    assert cards["position"] == "gate" and cards["captured"] == 0
    assert (led.cash_in, led.held_for_review, led.refunded) == (4000, 3000, 1000)
    assert kiosk.cash()["hopper_paid_fen"] == 1000

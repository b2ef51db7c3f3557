"""The transaction flows on the simulated kiosk: real drivers, real ptys, emulators, bosssim over HTTP.

Every test checks the books three ways: the journal's ledger balances (cash_in = applied + change
+ refunded + held), the emulators' own counters say the same money physically moved (bills
stacked, coins accepted, coins paid by the hopper), and the outside world (BOSS balance, paper,
SMS, card) shows the service was (or was not) delivered.
"""
from __future__ import annotations

from transactions import books
from transactions.customer import ScriptedCustomer
from transactions.ledger import Ledger
from transactions.service import run_flow

from .conftest import customer_inserting

PHONE = "13800138000"  # bosssim's 张伟, prepaid, balance 12.50
MASKED = "138****8000"


def balanced(result) -> Ledger:
    led = Ledger(**result.ledger)
    assert led.cash_in == led.applied + led.change_paid + led.refunded + led.held_for_review, result.ledger
    return led


def physically_in(cash: dict) -> int:
    """What the emulated acceptors took: stacked bills and accepted coins (fen)."""
    return cash["bills_stacked_fen"] + cash["coins_accepted_fen"]


async def test_a_fifty_yuan_top_up_with_three_bills_is_credited_once_with_sms_receipt_and_outbox(kiosk):
    before = await kiosk.boss.balance(PHONE)
    customer = ScriptedCustomer([PHONE, "5000"])
    customer.on_show = customer_inserting([2000, 2000, 1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "done", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid, led.refunded) == (5000, 5000, 0, 0)
    cash = kiosk.cash()
    assert physically_in(cash) == led.cash_in and cash["bills_stacked_fen"] == 5000
    assert cash["bills_returned_fen"] == 0 and cash["hopper_paid"] == 0
    assert await kiosk.boss.balance(PHONE) == before + 5000
    receipts = kiosk.emu("escpos", "receipts")
    assert len(receipts) == 1 and MASKED in receipts[0] and "50.00" in receipts[0], receipts
    assert "充值凭条" in receipts[0]
    sent = kiosk.emu("modem", "sent")
    assert len(sent) == 1 and sent[0]["number"].endswith(PHONE[-11:]) and "50.00" in sent[0]["text"], sent
    rows = await books.outbox(kiosk.journal)
    mine = [r for r in rows if r["topic"] == "txn" and r["payload"]["txn"] == result.txn]
    assert len(mine) == 1 and mine[0]["payload"]["state"] == "done"
    assert kiosk.reports == []  # no device complained on the way


async def test_overpayment_is_paid_back_as_change_coin_by_coin_by_the_hopper(kiosk):
    before = await kiosk.boss.balance(PHONE)
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([2000], kiosk=kiosk)  # 20 yuan for a 10 yuan top-up
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "done", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (2000, 1000, 1000)
    cash = kiosk.cash()
    assert physically_in(cash) == led.cash_in
    assert cash["hopper_paid_fen"] == led.change_paid and (cash["hopper_paid"], cash["hopper_unpaid"]) == (10, 0)
    assert await kiosk.boss.balance(PHONE) == before + 1000
    assert "take_coins" in customer.shown_keys


async def test_a_card_sale_dispenses_one_card_the_customer_takes_with_a_receipt(kiosk):
    def take(key, fmt):
        if key == "take_card":
            kiosk.emu("crt571", "take_card")
    customer = ScriptedCustomer(["3000"])
    customer.on_show = customer_inserting([2000, 1000], kiosk=kiosk, also=take)
    result = await run_flow(kiosk.services, "card_sale", customer)

    assert result.state == "done", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (3000, 3000, 0)
    assert physically_in(kiosk.cash()) == 3000
    cards = kiosk.emu("crt571", "state")
    assert (cards["dispensed"], cards["taken"], cards["captured"]) == (1, 1, 0)
    receipts = kiosk.emu("escpos", "receipts")
    assert len(receipts) == 1 and "充值卡销售凭条" in receipts[0] and "30.00" in receipts[0], receipts
    counts = await books.counters(kiosk.journal)
    assert counts["cashbox_fen"] == 3000 and counts["card_serial"]["3000"] == 1


async def test_a_card_left_at_the_gate_is_captured_and_the_money_paid_back_by_the_hopper(kiosk):
    customer = ScriptedCustomer(["3000"])
    customer.on_show = customer_inserting([2000, 1000], kiosk=kiosk)  # and never takes the card
    result = await run_flow(kiosk.services, "card_sale", customer)

    assert result.state == "refunded", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.refunded) == (3000, 0, 3000)
    cards = kiosk.emu("crt571", "state")
    assert (cards["dispensed"], cards["taken"], cards["captured"]) == (1, 0, 1)
    cash = kiosk.cash()
    assert physically_in(cash) == 3000 and cash["hopper_paid_fen"] == 3000 and result.vouchers == []
    assert "card_captured" in customer.shown_keys
    counts = await books.counters(kiosk.journal)
    assert counts["card_reject"]["3000"] == 1


async def test_a_boss_refusal_after_cash_is_in_is_paid_back_by_the_hopper(kiosk):
    before = await kiosk.boss.balance(PHONE)
    await kiosk.boss.fault(op="credit", mode="refuse", code="system_busy")
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([500], [100] * 5, kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "refunded", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.refunded, led.held_for_review) == (1000, 0, 1000, 0)
    cash = kiosk.cash()
    assert physically_in(cash) == 1000 and cash["coins_accepted_fen"] == 500
    assert cash["hopper_paid_fen"] == 1000 and result.vouchers == []
    assert await kiosk.boss.balance(PHONE) == before


async def test_a_boss_refusal_with_a_hopper_running_dry_pays_coins_then_a_voucher_for_the_rest(kiosk):
    await kiosk.boss.fault(op="credit", mode="refuse")
    kiosk.emu("cctalk", "hopper_empty_after", count=3)
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "refunded", customer.shown_keys
    led = balanced(result)
    cash = kiosk.cash()
    assert (cash["hopper_paid"], cash["hopper_unpaid"]) == (3, 7)
    assert [r.code for r in kiosk.reports if r.device == "hopper"] == ["hopper_empty"]
    txn = await kiosk.txn(result.txn)
    vouchers = txn["vouchers"]
    assert [v["fen"] for v in vouchers] == [700] and result.vouchers == [vouchers[0]["claim_code"]]
    # every fen accounted: 3 coins physically paid + 7.00 owed on the voucher == the 10.00 taken
    assert led.cash_in == physically_in(cash) == cash["hopper_paid_fen"] + vouchers[0]["fen"] == led.refunded
    receipts = kiosk.emu("escpos", "receipts")
    assert any(f"[QR:{vouchers[0]['claim_code']}]" in r for r in receipts), receipts


async def test_a_boss_refusal_with_an_empty_hopper_owes_everything_on_a_voucher(kiosk):
    await kiosk.boss.fault(op="credit", mode="refuse")
    kiosk.emu("cctalk", "hopper_fill", count=0)
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "refunded", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.refunded) == (1000, 1000)
    assert kiosk.cash()["hopper_paid"] == 0
    vouchers = (await kiosk.txn(result.txn))["vouchers"]
    assert [v["fen"] for v in vouchers] == [1000] and "voucher_issued" in customer.shown_keys


async def test_offline_the_top_up_is_refused_before_any_cash_and_a_card_sale_still_works(kiosk):
    kiosk.boss.stop()
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "declined" and "boss_offline" in customer.shown_keys
    assert "insert_cash" not in customer.shown_keys
    cash = kiosk.cash()
    assert not cash["bill"]["master_enabled"] and not cash["coin"]["master_enabled"]  # never enabled
    assert kiosk.emu("cctalk", "insert_bill", value=1000) == "inhibited"  # a bill pushed in anyway
    assert physically_in(kiosk.cash()) == 0 and balanced(result).cash_in == 0

    def take(key, fmt):
        if key == "take_card":
            kiosk.emu("crt571", "take_card")
    sale = ScriptedCustomer(["3000"])
    sale.on_show = customer_inserting([2000, 1000], kiosk=kiosk, also=take)
    result = await run_flow(kiosk.services, "card_sale", sale)
    assert result.state == "done", sale.shown_keys
    assert balanced(result).applied == 3000 and kiosk.emu("crt571", "state")["taken"] == 1


async def test_the_customer_cancelling_mid_payment_gets_the_money_back_from_the_hopper(kiosk):
    before = await kiosk.boss.balance(PHONE)

    def cancel(key, fmt):
        if key == "paid_so_far":
            customer.cancel()
    customer = ScriptedCustomer([PHONE, "5000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk, also=cancel)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "refunded" and "cancel_refund" in customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.refunded) == (1000, 0, 1000)
    cash = kiosk.cash()
    assert physically_in(cash) == 1000 and cash["hopper_paid_fen"] == 1000
    assert not cash["bill"]["master_enabled"] and not cash["coin"]["master_enabled"]
    assert await kiosk.boss.balance(PHONE) == before


async def test_a_lost_boss_reply_is_repeated_with_the_same_key_and_credited_once(kiosk):
    before = await kiosk.boss.balance(PHONE)
    await kiosk.boss.fault(op="credit", mode="drop_reply", delay=1.5)  # applied; the answer comes too late
    customer = ScriptedCustomer([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "done", customer.shown_keys
    assert balanced(result).applied == 1000 and physically_in(kiosk.cash()) == 1000
    assert await kiosk.boss.balance(PHONE) == before + 1000  # not 2000: the repeat carried the same key
    book = await kiosk.boss.ledger()
    assert book["requests"].count("credit") == 2 and kiosk.cash()["hopper_paid"] == 0

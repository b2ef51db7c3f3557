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

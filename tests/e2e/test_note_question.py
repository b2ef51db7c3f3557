"""收下这张纸币? / Accept this note?: a note that fits waits in escrow, uncredited, until the customer
says so; returned on their word, on no answer, and never counted when it went back."""
from __future__ import annotations

import asyncio

from transactions import records
from transactions.customer import IDLE, ScriptedCustomer
from transactions.service import run_flow

from .conftest import customer_inserting
from .test_flows import PHONE, balanced, physically_in


async def test_a_note_the_customer_returns_goes_back_uncredited_and_the_next_one_is_kept(kiosk):
    before = await kiosk.boss.balance(PHONE)
    customer = ScriptedCustomer([PHONE, "2000"], decisions=["return", "accept"])
    customer.on_show = customer_inserting([5000, 2000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "done", customer.shown_keys
    assert customer.decided == [("accept_note", "return"), ("accept_note", "accept")]
    assert ("note_returned", {"amount": "50.00"}) in customer.shown
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (2000, 2000, 0)
    cash = kiosk.cash()
    assert (cash["bills_returned_fen"], cash["bills_stacked_fen"]) == (5000, 2000)
    assert physically_in(cash) == led.cash_in
    assert await kiosk.boss.balance(PHONE) == before + 2000
    txn = await kiosk.txn(result.txn)
    assert [s["kind"] for s in txn["steps"]][:1] == ["stack_bill"]  # one stack: the kept note


async def test_no_answer_gives_the_note_back_and_nothing_is_taken(kiosk):
    customer = ScriptedCustomer([PHONE, "2000"], decisions=[IDLE])
    customer.on_show = customer_inserting([2000], kiosk=kiosk)  # then walks away
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "cancelled", customer.shown_keys
    assert customer.decided == [("accept_note", "return")]
    cash = kiosk.cash()
    assert (cash["bills_returned_fen"], cash["bills_stacked_fen"], cash["hopper_paid"]) == (2000, 0, 0)
    assert balanced(result).cash_in == 0
    assert (await kiosk.txn(result.txn))["data"]["note"] == {"device": "bill", "fen": 2000, "answer": "return"}


async def test_coins_that_arrive_while_the_question_is_up_are_credited_at_once(kiosk):
    seen: list[int] = []

    class Slow(ScriptedCustomer):
        async def decide(self, prompt, options, default, within_s, **fmt):
            [txn] = await kiosk.journal.read(records.open_txns)
            assert kiosk.emu("cctalk", "insert_coin", value=100) == "accepted"
            async with asyncio.timeout(10):  # the coin is journalled while the note still waits
                while (cash_in := (await kiosk.journal.read(records.ledger, txn)).cash_in) < 100:
                    await asyncio.sleep(0.01)
            seen.append(cash_in)
            return await super().decide(prompt, options, default, within_s, **fmt)

    customer = Slow([PHONE, "1000"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "topup", customer)

    assert result.state == "done", customer.shown_keys
    assert seen == [100]
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (1100, 1000, 100)
    assert physically_in(kiosk.cash()) == 1100

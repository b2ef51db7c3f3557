"""空中充值: the happy path and every way it can fail after (and before) cash is in."""
import pytest

from transactions.customer import CANCEL, ScriptedCustomer
from transactions.ledger import Ledger
from transactions.service import run_flow

from .conftest import txn_of

PHONE = "13800138000"  # 张伟, balance 12.50


def balanced(result):
    led = Ledger(**result.ledger)
    assert led.balanced, result.ledger
    return led


async def test_a_top_up_paid_exactly_is_credited_once_with_sms_and_receipt(services, sim, hw):
    bv, coin = hw.acceptors
    bv.inserts = [2000, 2000]
    coin.inserts = [500, 500]
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "5000"]))
    assert result.state == "done"
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (5000, 5000, 0)
    assert await sim.balance(PHONE) == 1250 + 5000
    book = await sim.ledger()
    assert [op["key"] for op in book["ops"]] == [f"{result.txn}:credit"]
    assert hw.modem.sent and "50.00" in hw.modem.sent[0][1]
    assert hw.printer.printed[0].title.startswith("充值凭条")
    txn = await txn_of(services, result.txn)
    assert txn["seq"] == 1 and txn["phone"] == PHONE
    assert [s["kind"] for s in txn["steps"]] == ["stack_bill", "stack_bill", "boss_credit", "sms", "print"]
    assert all(s["closed_at"] is not None for s in txn["steps"])


async def test_a_bill_beyond_the_due_amount_plus_change_limit_is_returned_not_stacked(services, sim, hw):
    bv, _ = hw.acceptors
    bv.inserts = [10000, 2000]  # 100 yuan for a 20 yuan top-up: change would be 80 > 50 allowed
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "2000"]))
    assert result.state == "done"
    assert bv.returned == [10000] and bv.stacked == [2000]
    assert balanced(result).cash_in == 2000


async def test_overpayment_is_paid_back_as_change_by_the_hopper(services, sim, hw):
    hw.acceptors[0].inserts = [5000]
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "2000"]))
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (5000, 2000, 3000)
    assert hw.hopper.paid_total == 30
    assert await sim.balance(PHONE) == 1250 + 2000


async def test_overpayment_is_credited_when_the_config_says_so(services, sim, hw):
    services.config.overpay = "credit"
    hw.acceptors[0].inserts = [1000]
    hw.acceptors[1].inserts = [100] * 11  # coins cannot be refused: one more than due
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "2000"]))
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid) == (2100, 2100, 0)
    assert await sim.balance(PHONE) == 1250 + 2100


async def test_a_boss_refusal_after_cash_is_in_pays_everything_back(services, sim, hw):
    hw.acceptors[0].inserts = [2000, 1000]
    await sim.fault(op="credit", mode="refuse", code="system_busy")
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "3000"]))
    assert result.state == "refunded"
    led = balanced(result)
    assert (led.cash_in, led.applied, led.refunded) == (3000, 0, 3000)
    assert hw.hopper.paid_total == 30 and result.vouchers == []
    assert await sim.balance(PHONE) == 1250


async def test_a_lost_boss_reply_is_retried_with_the_same_key_and_applied_once(services, sim, hw):
    hw.acceptors[0].inserts = [5000]
    await sim.fault(op="credit", mode="drop_reply", delay=3)
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "5000"]))
    assert result.state == "done"
    assert await sim.balance(PHONE) == 1250 + 5000  # not 10000: the repeat used the same key
    assert (await sim.ledger())["requests"].count("credit") == 2


async def test_a_credit_nobody_can_confirm_goes_to_review_with_the_money_held(services, sim, hw):
    hw.acceptors[0].inserts = [2000]
    await sim.fault(op="credit", mode="timeout", delay=3, times=3)
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "2000"]))
    assert result.state == "review"
    led = balanced(result)
    assert (led.cash_in, led.held_for_review) == (2000, 2000)
    assert hw.hopper.paid_total == 0  # never refund what the BOSS may still apply


async def test_offline_the_top_up_is_refused_before_any_cash(services, sim, hw):
    from transactions.boss import http_boss
    await services.boss.close()
    services.boss = http_boss("http://127.0.0.1:9", timeout=0.3)
    hw.acceptors[0].inserts = [2000]
    customer = ScriptedCustomer([PHONE, "2000"])
    result = await run_flow(services, "topup", customer)
    assert result.state == "declined" and "boss_offline" in customer.shown_keys
    assert hw.acceptors[0].inhibited and hw.acceptors[0].stacked == []
    assert balanced(result).cash_in == 0


async def test_the_customer_cancelling_mid_payment_gets_the_money_back(services, sim, hw):
    bv, _ = hw.acceptors
    bv.inserts = [2000]

    def on_show(key, fmt):
        if key == "paid_so_far":
            customer.cancel()
    customer = ScriptedCustomer([PHONE, "5000"], on_show=on_show)
    result = await run_flow(services, "topup", customer)
    assert result.state == "refunded" and "cancel_refund" in customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.refunded) == (2000, 2000)
    assert bv.inhibited and await sim.balance(PHONE) == 1250


async def test_a_customer_who_walks_away_is_refunded_after_the_idle_timeout(services, sim, hw):
    hw.acceptors[1].inserts = [100, 100]
    customer = ScriptedCustomer([PHONE, "1000"])
    result = await run_flow(services, "topup", customer)
    assert result.state == "refunded" and "idle_refund" in customer.shown_keys
    assert balanced(result).refunded == 200


async def test_what_an_empty_hopper_cannot_pay_becomes_a_refund_voucher(services, sim, hw):
    hw.hopper.coins = 12
    hw.acceptors[0].inserts = [2000]
    await sim.fault(op="credit", mode="refuse")
    customer = ScriptedCustomer([PHONE, "2000"])
    result = await run_flow(services, "topup", customer)
    led = balanced(result)
    assert led.refunded == 2000 and hw.hopper.paid_total == 12
    assert len(result.vouchers) == 1
    txn = await txn_of(services, result.txn)
    assert txn["vouchers"][0]["fen"] == 800
    assert hw.printer.printed[-1].qr == result.vouchers[0]
    assert "voucher_issued" in customer.shown_keys


async def test_a_jammed_bill_validator_stops_intake_and_refunds_what_was_in(services, sim, hw):
    hw.acceptors[0].inserts = [1000, "bill_jammed"]
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "5000"]))
    assert result.state == "refunded"
    assert balanced(result).refunded == 1000


async def test_a_stack_with_no_answer_holds_the_bill_for_review(services, sim, hw):
    hw.acceptors[0].on_stack = "silent"
    hw.acceptors[0].inserts = [2000]
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "2000"]))
    assert result.state == "review"
    led = balanced(result)
    assert (led.cash_in, led.held_for_review) == (2000, 2000)


@pytest.mark.parametrize("phone,key", [("13700000000", "number_closed"), ("13300000000", "number_unknown")])
async def test_a_closed_or_unknown_number_is_refused_before_cash(services, sim, hw, phone, key):
    customer = ScriptedCustomer([phone])
    result = await run_flow(services, "topup", customer)
    assert result.state == "declined" and key in customer.shown_keys
    assert hw.acceptors[0].inhibited


async def test_cancel_before_paying_takes_nothing(services, sim, hw):
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, CANCEL]))
    assert result.state == "cancelled" and result.ledger["cash_in"] == 0


async def test_a_fault_no_flow_path_catches_is_settled_at_once_and_the_voucher_shown(services, sim, hw):
    """Issue 15, case 3: whatever escapes a flow after cash is in (here the screen itself failing
    as the credit starts) ends the transaction now, with the money on a voucher the customer sees,
    not an open transaction until the next reboot."""
    hw.acceptors[0].inserts = [2000]
    shown = []

    def screen(key, fmt):
        shown.append((key, fmt))
        if key == "crediting":
            raise RuntimeError("touch screen driver crashed")
    result = await run_flow(services, "topup", ScriptedCustomer([PHONE, "2000"], on_show=screen))
    assert result.state == "refunded"
    led = balanced(result)
    assert (led.cash_in, led.refunded) == (2000, 2000) and len(result.vouchers) == 1
    assert ("voucher_issued", {"amount": "20.00", "code": result.vouchers[0]}) in shown
    assert await sim.balance(PHONE) == 1250  # never credited

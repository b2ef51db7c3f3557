"""Card sale, bill payment and the no-cash services: happy paths, failures, balanced books."""
from transactions import records
from transactions.customer import CANCEL, ScriptedCustomer
from transactions.ledger import Ledger
from transactions.service import run_flow

from .conftest import txn_of


def balanced(result):
    led = Ledger(**result.ledger)
    assert led.balanced, result.ledger
    return led


# --- 充值卡销售 -------------------------------------------------------------------------------

async def test_a_card_sale_needs_no_boss_and_prints_the_card_serial(services, hw):
    await services.boss.close()
    services.boss = None
    await services.journal.write(records.set_counter, "card_serial", "3000", 1201, 0.0)
    hw.acceptors[0].inserts = [2000, 1000]
    result = await run_flow(services, "card_sale", ScriptedCustomer(["3000"]))
    assert result.state == "done"
    led = balanced(result)
    assert (led.cash_in, led.applied) == (3000, 3000)
    assert hw.dispensers[3000].given == 1
    serial = dict(hw.printer.printed[0].lines)["卡序列号 / Card serial"]
    assert serial == "003000001201"
    counts = await services.journal.read(records.counters)
    assert counts["card_serial"]["3000"] == 1202
    assert "3000" not in counts.get("card_stock", {})  # a stock nobody counted is not taken below zero


async def test_a_jammed_dispenser_pays_the_money_back(services, hw):
    hw.dispensers[3000].jam = True
    hw.acceptors[0].inserts = [5000]
    result = await run_flow(services, "card_sale", ScriptedCustomer(["3000"]))
    assert result.state == "refunded"
    led = balanced(result)
    assert (led.cash_in, led.refunded, led.applied) == (5000, 5000, 0)


async def test_a_card_left_at_the_gate_is_captured_and_refunded(services, hw):
    d = hw.dispensers[5000]
    d.customer_takes = False
    hw.acceptors[0].inserts = [5000]
    customer = ScriptedCustomer(["5000"])
    result = await run_flow(services, "card_sale", customer)
    assert result.state == "refunded" and d.captured == 1
    assert balanced(result).refunded == 5000
    assert "card_captured" in customer.shown_keys
    assert (await services.journal.read(records.counters))["card_reject"]["5000"] == 1


async def test_change_for_a_card_is_paid_by_the_hopper(services, hw):
    hw.acceptors[0].inserts = [5000]
    result = await run_flow(services, "card_sale", ScriptedCustomer(["3000"]))
    led = balanced(result)
    assert (led.applied, led.change_paid) == (3000, 2000) and hw.hopper.paid_total == 20


async def test_empty_dispensers_refuse_the_sale_before_cash(services, hw):
    for d in hw.dispensers.values():
        d.cards = 0
    customer = ScriptedCustomer([])
    result = await run_flow(services, "card_sale", customer)
    assert result.state == "declined" and "cards_sold_out" in customer.shown_keys


# --- 缴费 ----------------------------------------------------------------------------------

async def test_a_bill_is_paid_with_everything_inserted_going_to_the_boss(services, sim, hw):
    hw.acceptors[0].inserts = [10000, 5000, 2000, 1000]  # 177.70 due: the last note overshoots by 2.30
    result = await run_flow(services, "bill_pay", ScriptedCustomer(["13912345678", "pay"]))
    assert result.state == "done"
    led = balanced(result)
    assert led.cash_in == led.applied == 18000 and led.change_paid == 0
    account = (await sim.ledger())["accounts"]["13912345678"]
    assert account["arrears_fen"] == 0 and account["balance_fen"] == 230


async def test_nothing_due_is_declined(services, sim):
    customer = ScriptedCustomer(["18612345678"])
    result = await run_flow(services, "bill_pay", customer)
    assert result.state == "declined" and "nothing_due" in customer.shown_keys


async def test_a_refused_bill_payment_is_refunded(services, sim, hw):
    hw.acceptors[0].inserts = [10000, 5000, 2000, 1000]
    await sim.fault(op="pay_bill", mode="refuse")
    result = await run_flow(services, "bill_pay", ScriptedCustomer(["13912345678", "pay"]))
    assert result.state == "refunded"
    assert balanced(result).refunded == result.ledger["cash_in"] > 0


# --- no cash ---------------------------------------------------------------------------------

async def test_balance_query_with_the_service_password_prints_on_request(services, sim, hw):
    customer = ScriptedCustomer(["13800138000", "123456", "print"])
    result = await run_flow(services, "balance_query", customer)
    assert result.state == "done"
    assert ("balance_info", {"phone": "138****8000", "balance": "12.50", "arrears": "0.00",
                             "plan": {"zh": "4G畅享58元套餐", "en": "4G Plus 58"}}) in customer.shown
    assert len(hw.printer.printed) == 1


async def test_a_wrong_password_three_times_is_declined(services, sim):
    customer = ScriptedCustomer(["13800138000", "1", "2", "3"])
    result = await run_flow(services, "balance_query", customer)
    assert result.state == "declined" and customer.shown_keys.count("password_wrong") == 3


async def test_statement_and_invoice_are_printed_for_the_chosen_month(services, sim, hw):
    services.clock = lambda: 1793000000.0  # 2026-10-26: the last full months are 2026-09, -08, -07
    result = await run_flow(services, "statement", ScriptedCustomer(["13912345678", "654321", "2026-09"]))
    assert result.state == "done"
    assert "￥86.50" in dict(hw.printer.printed[-1].lines).values()
    customer = ScriptedCustomer(["13912345678", "654321", "2026-09"])
    result = await run_flow(services, "invoice", customer)
    assert result.state == "declined" and "no_document" in customer.shown_keys  # nothing paid yet


async def test_a_statement_with_the_printer_failing_is_failed(services, sim, hw):
    services.clock = lambda: 1793000000.0
    hw.printer.fail = True
    result = await run_flow(services, "statement", ScriptedCustomer(["13912345678", "654321", "2026-09"]))
    assert result.state == "failed"
    txn = await txn_of(services, result.txn)
    assert txn["steps"][-1]["kind"] == "print" and txn["steps"][-1]["outcome"]["printed"] is False


async def test_a_plan_change_confirmed_by_sms_code(services, sim, hw):
    phone = "13800138000"

    def on_show(key, fmt):
        if key == "sms_code_sent":
            customer.answers.append(sim.simulator.books.last_sms_code(phone))
    customer = ScriptedCustomer([phone, "4G-88", "sms"], on_show=on_show)
    result = await run_flow(services, "plan_change", customer)
    assert result.state == "done"
    assert (await sim.ledger())["accounts"][phone]["plan"] == "4G-88"
    txn = await txn_of(services, result.txn)
    assert [s["kind"] for s in txn["steps"]] == ["boss_change_plan", "print"]


async def test_a_plan_change_cancelled_changes_nothing(services, sim):
    result = await run_flow(services, "plan_change", ScriptedCustomer(["13800138000", "4G-88", CANCEL]))
    assert result.state == "cancelled"
    assert (await sim.ledger())["accounts"]["13800138000"]["plan"] == "4G-58"


async def test_a_loss_report_suspends_the_number(services, sim, hw):
    result = await run_flow(services, "loss_report", ScriptedCustomer(["18612345678", "888888", "confirm"]))
    assert result.state == "done"
    assert (await sim.ledger())["accounts"]["18612345678"]["status"] == "suspended"


async def test_every_finished_transaction_is_queued_for_the_hall_in_seq_order(services, sim, hw):
    hw.acceptors[0].inserts = [1000]
    await run_flow(services, "topup", ScriptedCustomer(["13800138000", "1000"]))
    await run_flow(services, "balance_query", ScriptedCustomer(["13800138000", "123456", "done"]))
    txns = [o["payload"] for o in await services.journal.read(records.outbox_pending) if o["topic"] == "txn"]
    assert [(t["seq"], t["service"]) for t in txns] == [(1, "topup"), (2, "balance_query")]
    assert txns[0]["cash_in"] == txns[0]["applied"] == 1000


async def test_the_hopper_counter_limits_what_is_paid_and_the_rest_goes_on_a_voucher(services, sim, hw):
    await services.journal.write(records.set_counter, "hopper", "hopper", 5, 0.0)
    hw.acceptors[0].inserts = [2000]
    await sim.fault(op="credit", mode="refuse")
    result = await run_flow(services, "topup", ScriptedCustomer(["13800138000", "2000"]))
    assert result.state == "refunded" and hw.hopper.paid_total == 5
    txn = await txn_of(services, result.txn)
    assert [v["fen"] for v in txn["vouchers"]] == [1500]
    assert (await services.journal.read(records.counters, "hopper"))["hopper"]["hopper"] == 0


async def test_the_menu_offers_only_what_can_run_now(services, sim, hw):
    from transactions.boss import http_boss
    from transactions.service import available
    menu = await available(services)
    # this kiosk has no ID reader, camera or SIM writer: the real-name flows are not offered, all else is
    assert {name for name, ok in menu.items() if not ok} == {"new_number", "sim_replace", "real_name"}
    await services.boss.close()
    services.boss = http_boss("http://127.0.0.1:9", timeout=0.3)
    menu = await available(services)
    assert menu["card_sale"] and not menu["topup"] and not menu["plan_change"]

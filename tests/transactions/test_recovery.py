"""Recovery at boot: a power cut at each side effect, then a new boot resolves the open intent.

The "power cut" is a device double that stops for good at the chosen instant (before or after
doing its part); the flow task is cancelled there, so the journal holds exactly what a kill -9
would leave: the fsync'd intent with no outcome. The journal is then reopened as the next boot.
"""
import asyncio

from transactions import records
from transactions.customer import ScriptedCustomer
from transactions.flow import Services
from transactions.journal import Journal
from transactions.ledger import Ledger
from transactions.recovery import recover
from transactions.service import run_flow

PHONE = "13800138000"


async def cut_power_when(services, flow, answers, reached):
    """Run ``flow`` until ``reached()`` is true, then cancel it there (the power cut)."""
    task = asyncio.create_task(run_flow(services, flow, ScriptedCustomer(answers)))
    async with asyncio.timeout(5):
        while not await reached():
            assert not task.done(), task.result()
            await asyncio.sleep(0.005)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await services.journal.close()


async def reboot_and_recover(services, tmp_path):
    journal = await Journal(tmp_path / "journal.db", kiosk="K01").open()
    s = Services(journal=journal, hw=services.hw, boss=services.boss, config=services.config)
    report = await recover(s)
    assert len(report) == 1
    txn = await journal.read(records.get_txn, report[0].txn)
    assert not await journal.read(records.open_txns)
    assert all(st["closed_at"] is not None for st in txn["steps"])
    led = Ledger(**txn["ledger"])
    assert led.balanced, txn["ledger"]
    return report[0], txn, led, journal


def device_reached(device):
    async def check():
        return device.reached.is_set()
    return check


async def test_cut_during_a_bill_stack_holds_the_bill_for_review(services, hw, tmp_path):
    bv = hw.acceptors[0]
    bv.inserts, bv.on_stack = [2000], "hang"
    await cut_power_when(services, "topup", [PHONE, "5000"], device_reached(bv))
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "review" and rec.steps[0]["kind"] == "stack_bill"
    assert (led.cash_in, led.held_for_review) == (2000, 2000)
    await j.close()


async def test_cut_between_bills_refunds_what_was_stacked_on_a_voucher(services, hw, tmp_path):
    bv = hw.acceptors[0]
    bv.inserts = [2000, 1000]

    async def two_stacked():
        return len(bv.stacked) == 2 and (await services.journal.read(records.ledger, "K01-1-1")).cash_in == 3000
    await cut_power_when(services, "topup", [PHONE, "5000"], two_stacked)
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "refunded" and rec.steps == []
    assert (led.cash_in, led.refunded) == (3000, 3000) and len(rec.vouchers) == 1
    await j.close()


async def test_cut_while_the_customer_is_asked_about_a_note_credits_nothing_for_it(services, hw, tmp_path):
    """Killed with 收下这张纸币? on the screen: the note waits in escrow uncredited (the validator gives
    it back itself); the stacked note before it is the customer's, on a voucher."""
    bv = hw.acceptors[0]
    bv.inserts = [2000, 1000]
    asked = asyncio.Event()

    class Undecided(ScriptedCustomer):
        async def decide(self, prompt, options, default, within_s, **fmt):
            if self.decided:
                asked.set()
                await asyncio.Event().wait()  # still thinking when the power goes
            return await super().decide(prompt, options, default, within_s, **fmt)

    task = asyncio.create_task(run_flow(services, "topup", Undecided([PHONE, "5000"])))
    async with asyncio.timeout(5):
        await asked.wait()
    txn = (await services.journal.read(records.open_txns))[0]
    assert (await services.journal.read(records.get_txn, txn))["flow_state"] == "deciding"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await services.journal.close()
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "refunded" and rec.steps == []
    assert bv.stacked == [2000] and (led.cash_in, led.refunded, led.held_for_review) == (2000, 2000, 0)
    assert txn["data"]["note"] == {"device": bv.name, "fen": 1000}
    await j.close()


async def test_cut_after_the_boss_applied_the_credit_is_found_by_key_and_not_repeated(services, sim, hw, tmp_path):
    hw.acceptors[0].inserts = [5000]
    await sim.fault(op="credit", mode="drop_reply", delay=30)

    async def credit_sent():
        return "credit" in sim.simulator.requests
    await cut_power_when(services, "topup", [PHONE, "5000"], credit_sent)
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "done" and rec.steps[0]["outcome"]["from"] == "op_status"
    assert (led.cash_in, led.applied) == (5000, 5000)
    assert await sim.balance(PHONE) == 1250 + 5000
    await j.close()


async def test_cut_before_the_boss_applied_the_credit_repeats_it_with_the_same_key(services, sim, hw, tmp_path):
    hw.acceptors[0].inserts = [2000]
    await sim.fault(op="credit", mode="timeout", delay=30)

    async def credit_sent():
        return "credit" in sim.simulator.requests
    await cut_power_when(services, "topup", [PHONE, "2000"], credit_sent)
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "done" and rec.steps[0]["outcome"]["from"] == "repeated"
    assert await sim.balance(PHONE) == 1250 + 2000
    assert len((await sim.ledger())["ops"]) == 1
    await j.close()


async def test_with_the_boss_unreachable_at_boot_the_credit_is_held_for_review(services, sim, hw, tmp_path):
    from transactions.boss import http_boss
    hw.acceptors[0].inserts = [2000]
    await sim.fault(op="credit", mode="timeout", delay=30)

    async def credit_sent():
        return "credit" in sim.simulator.requests
    await cut_power_when(services, "topup", [PHONE, "2000"], credit_sent)
    await services.boss.close()
    services.boss = http_boss("http://127.0.0.1:9", timeout=0.3)
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "review" and led.held_for_review == 2000
    await j.close()


async def test_cut_during_a_change_payout_asks_the_hopper_what_it_paid(services, sim, hw, tmp_path):
    hw.acceptors[0].inserts = [5000]
    hw.hopper.hang = "after"  # the coins left, the answer did not reach the journal
    await cut_power_when(services, "topup", [PHONE, "2000"], device_reached(hw.hopper))
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "done"
    assert (led.applied, led.change_paid, led.refunded) == (2000, 3000, 0)
    await j.close()


async def test_a_payout_the_hopper_cannot_account_for_is_held_for_review(services, sim, hw, tmp_path):
    hw.acceptors[0].inserts = [5000]
    hw.hopper.hang = "before"
    await cut_power_when(services, "topup", [PHONE, "2000"], device_reached(hw.hopper))
    hw.hopper.silent = True
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "review" and led.held_for_review == 3000 and led.applied == 2000
    await j.close()


async def test_cut_with_the_card_at_the_gate_captures_it_and_refunds(services, hw, tmp_path):
    d = hw.dispensers[3000]
    d.hang = "dispense"
    hw.acceptors[0].inserts = [2000, 1000]
    await cut_power_when(services, "card_sale", ["3000"], device_reached(d))
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "refunded" and d.captured == 1
    assert led.refunded == 3000 and rec.vouchers
    counts = await j.read(records.counters)
    assert counts["card_reject"]["3000"] == 1
    await j.close()


async def test_cut_while_waiting_for_the_card_to_be_taken_asks_the_dispenser(services, hw, tmp_path):
    d = hw.dispensers[3000]
    d.hang = "wait_taken"
    hw.acceptors[0].inserts = [5000]
    await cut_power_when(services, "card_sale", ["3000"], device_reached(d))
    d.at_gate = False  # the customer took the card during the outage
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "done" and d.captured == 0
    assert (led.applied, led.refunded) == (3000, 2000)  # the change is owed on a voucher
    await j.close()


async def test_a_plan_change_cut_before_the_boss_applied_it_is_not_forced_on(services, sim, hw, tmp_path):
    await sim.fault(op="change_plan", mode="timeout", delay=30)

    async def sent():
        return "change_plan" in sim.simulator.requests
    await cut_power_when(services, "plan_change", [PHONE, "4G-88", "password", "123456"], sent)
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    assert rec.final == "failed"
    assert (await sim.ledger())["accounts"][PHONE]["plan"] == "4G-58"
    await j.close()


async def test_recovery_reports_to_the_hall_and_leaves_current_boot_transactions_alone(services, hw, tmp_path):
    hw.acceptors[0].inserts = [1000]

    async def stacked():
        return (await services.journal.read(records.ledger, "K01-1-1")).cash_in == 1000
    await cut_power_when(services, "topup", [PHONE, "5000"], stacked)
    rec, txn, led, j = await reboot_and_recover(services, tmp_path)
    events = [o["payload"] for o in await j.read(records.outbox_pending) if o["topic"] == "event"]
    assert "txn_recovered" in [e["kind"] for e in events] and "refund_voucher" in [e["kind"] for e in events]
    s = Services(journal=j, hw=hw, boss=services.boss, config=services.config)
    await j.write(records.new_txn, "K01", j.boot, "topup", None, "start", 0.0)
    assert await recover(s) == []  # this boot's own open transaction is a live one
    await j.close()


def test_recovery_has_a_resolver_for_every_side_effect_a_table_can_name():
    from transactions.flow import EFFECTS
    from transactions.flows import SPECS
    from transactions.recovery import RESOLVERS
    assert set(RESOLVERS) == set(EFFECTS)
    named = {t.effect for spec in SPECS.values() for t in spec.transitions if t.effect}
    assert named <= set(RESOLVERS)
    for spec in SPECS.values():  # every state a recovery may find has a rule recover_txn knows
        assert {s.recover for s in spec.states} <= {"settle", "delivered", "card_at_gate", "final",
                                                    "sim_in_machine"}  # a SIM captured (flows/identity.py)


async def test_after_a_visit_failed_recovery_settles_this_boots_open_transaction_now(services, journal):
    """Issue 15, case 3: a transaction of this boot left open by an error nobody caught is settled at
    once (the desk asks), not at the next reboot; the customer's cash goes on a voucher."""
    def open_with_cash(c):
        txn = records.new_txn(c, journal.kiosk, journal.boot, "topup", PHONE, "collecting", 1.0)
        records.add_money(c, txn, [("cash_in", 1500, "bill:bv")], 1.0)
        return txn
    txn = await journal.write(open_with_cash)
    assert await recover(services) == []
    [rec] = await recover(services, this_boot=True)
    got = await journal.read(records.get_txn, txn)
    assert (rec.txn, rec.final, got["state"]) == (txn, "refunded", "refunded")
    assert got["ledger"]["refunded"] == 1500 and len(rec.vouchers) == 1

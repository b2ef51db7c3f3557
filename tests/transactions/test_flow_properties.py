"""Property: whatever the customer inserts and whatever fails, a top-up or card sale finishes balanced.

Random money (bills that may be too large, coins that overshoot), a BOSS that may refuse, a hopper
that may run short, a customer who may cancel: the ledger rule holds at every finish, nothing is
credited twice, and every fen the hopper did not pay is on a voucher.
"""
import asyncio
import os
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from bosssim.server import start
from transactions import records
from transactions.boss import http_boss
from transactions.customer import ScriptedCustomer
from transactions.flow import FlowConfig, Hardware, Services
from transactions.journal import Journal
from transactions.ledger import Ledger
from transactions.service import run_flow

from .doubles import BillValidator, CoinAcceptor, Dispenser, FakePrinter, Hopper

money = st.lists(st.one_of(st.sampled_from([100, 500, 1000, 2000, 5000, 10000]).map(lambda f: ("bill", f)),
                           st.sampled_from([10, 50, 100]).map(lambda f: ("coin", f))), max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=st.sampled_from(["topup", "card_sale"]), inserts=money, amount=st.sampled_from([1000, 3000, 5000]),
       boss_fault=st.sampled_from([None, "refuse", "duplicate"]), hopper_coins=st.integers(0, 40),
       overpay=st.sampled_from(["change", "credit"]), cancel_after=st.one_of(st.none(), st.integers(1, 4)),
       jam=st.booleans())
def test_every_finish_balances(flow, inserts, amount, boss_fault, hopper_coins, overpay, cancel_after, jam):
    async def scenario(d):
        runner, sim, port = await start(os.path.join(d, "boss.db"))
        boss = http_boss(f"http://127.0.0.1:{port}", timeout=1.0)
        try:
            bv = BillValidator(inserts=[f for k, f in inserts if k == "bill"])
            coin = CoinAcceptor(inserts=[f for k, f in inserts if k == "coin"])
            hw = Hardware(acceptors=[bv, coin], hopper=Hopper(coins=hopper_coins), printer=FakePrinter(),
                          dispensers={amount: Dispenser(jam=jam)})
            cfg = FlowConfig(topup_amounts=[amount], card_prices={amount: amount}, overpay=overpay,
                             idle_timeout=0.05, stack_timeout=0.5, drain_time=0.01)
            if boss_fault:
                sim.faults.append({"op": "credit", "mode": boss_fault, "times": 1, "delay": 0, "code": "refused"})
            shown = []

            def on_show(key, fmt):
                shown.append(key)
                if cancel_after is not None and shown.count("paid_so_far") >= cancel_after:
                    customer.cancel()
            answers = ["13800138000", str(amount)] if flow == "topup" else [str(amount)]
            customer = ScriptedCustomer(answers, on_show=on_show)
            async with Journal(os.path.join(d, "j.db"), kiosk="P") as j:
                s = Services(journal=j, hw=hw, boss=boss, config=cfg)
                result = await run_flow(s, flow, customer)
                txn = await j.read(records.get_txn, result.txn)
            return result, txn, hw, sim.books.ledger()
        finally:
            await boss.close()
            await runner.cleanup()

    with tempfile.TemporaryDirectory() as d:
        result, txn, hw, book = asyncio.run(scenario(d))
    led = Ledger(**txn["ledger"])
    assert led.balanced, txn["ledger"]
    coins_in = sum(f for k, f in inserts if k == "coin") - sum(hw.acceptors[1].inserts)  # left: never enabled
    assert led.cash_in == sum(hw.acceptors[0].stacked) + coins_in
    assert led.change_paid + (led.refunded - sum(v["fen"] for v in txn["vouchers"])) == hw.hopper.paid_total * 100
    credited = sum(op["args"]["fen"] for op in book["ops"] if op["op"] == "credit")
    assert credited == (led.applied if flow == "topup" else 0)
    assert result.state in ("done", "refunded", "cancelled", "review", "declined")
    if result.state == "done":
        assert led.applied >= amount
    if result.state == "refunded":
        assert led.applied == 0 and led.held_for_review == 0 and led.refunded == led.cash_in
    assert (led.held_for_review > 0) == (result.state == "review")

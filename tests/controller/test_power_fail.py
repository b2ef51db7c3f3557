"""The power-fail drill: the UPS monitor (INA219 register model) says the mains is gone.

kioskd runs in this test's loop (``Kiosk.run()``) on its simulated devices: the cash bus emulator,
the card dispenser emulator and the I2C chip models, the chip being the one the driver polls.
What must happen (docs/reliability.md "Power-fail drill"): the acceptors are inhibited and no new
customer is taken; the customer in flight is paid back what they put in; the journal is synced;
with the mains back kioskd serves again; on battery below ``battery_low_v`` it stops cleanly.
"""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from hal.emulators.model import ControlError
from tests.support.ups_kiosk import accepting, emu, running, shown, until, ups


@pytest.fixture
async def kiosk(tmp_path):
    async with running(tmp_path, poll_s=0.02) as k:
        yield k


async def test_on_battery_the_visit_is_paid_back_the_journal_synced_mains_back_serves_battery_low_stops(kiosk):
    k = kiosk
    ups_rail = ups(k)
    emu(k, "cctalk", "hopper_fill", count=50)

    # a customer buying a card has put in one coin when the mains goes
    visit = await k.begin("card_sale")
    await until(lambda: (k.desk.screen()["question"] or {}).get("prompt") == "choose_card")
    k.desk.answer("3000")
    await until(lambda: "insert_cash" in shown(k) and accepting(k))
    assert emu(k, "cctalk", "insert_coin", value=100) == "accepted"
    await until(lambda: "paid_so_far" in shown(k))
    ups_rail.bus_mv = 10_900  # the UPS rail sags below power_fail_v: on battery

    await until(lambda: not accepting(k))  # acceptors inhibited
    await until(lambda: k.power.synced.is_set())  # visit over, journal synced
    last = k.desk.screen()["last"]
    assert last["visit"] == visit and last["state"] in ("cancelled", "refunded"), last
    assert emu(k, "cctalk", "state")["hopper_paid_fen"] == 100  # the coin came back
    busy, frames, done = k.power.sync_result
    assert busy == 0 and frames == done
    assert k.admission.closed_because == "power_fail" and k.state == "safe"
    with pytest.raises(ControlError, match="power_fail"):
        await k.begin("card_sale")
    txn = await k.journal.read(lambda c: dict(c.execute(
        "SELECT state, (SELECT SUM(CASE kind WHEN 'cash_in' THEN fen ELSE -fen END) FROM money m WHERE m.txn = t.id)"
        " AS balance, (SELECT SUM(fen) FROM money m WHERE m.txn = t.id AND kind = 'refunded') AS refunded"
        " FROM transactions t ORDER BY opened_at DESC LIMIT 1").fetchone()))
    assert txn == {"state": txn["state"], "balance": 0, "refunded": 100} and txn["state"] in ("cancelled", "refunded")

    # the mains comes back before the battery is low: kioskd serves again, no restart
    ups_rail.bus_mv = 12_100
    await until(lambda: k.admission.closed_because is None)
    assert k.state in ("ready", "degraded") and not k.run_task.done()
    await k.begin("card_sale")
    await until(lambda: (k.desk.screen()["question"] or {}).get("prompt") == "choose_card")
    k.desk.cancel()
    await until(lambda: not k.desk.screen()["busy"])

    # a long outage: on battery, then below battery_low_v: a clean stop (exit code 0)
    ups_rail.bus_mv = 10_900
    await until(lambda: k.power.synced.is_set() and k.admission.closed_because == "power_fail")
    assert not k.run_task.done()
    ups_rail.bus_mv = 10_300
    assert await asyncio.wait_for(k.run_task, 30) == 0

    journal = sqlite3.connect(k.journal.path)
    events = [r[0] for r in journal.execute("SELECT kind FROM device_events WHERE device = 'power' ORDER BY id")]
    opened = journal.execute("SELECT COUNT(*) FROM transactions WHERE state = 'open'").fetchone()[0]
    journal.close()
    assert events == ["power_fail", "power_restored", "power_fail", "battery_low"] and opened == 0

"""The panel door opening on a customer in flight, and the mains coming back while it is open.

kioskd runs in this test's loop (``Kiosk.run()``) on its simulated devices: the cash bus emulator
(coin, bill, hopper) and the card dispenser emulator on ptys, the INA219 register model, and the
GPIO panel on gpiozero's MockFactory, its door switch driven from a worker thread as a real edge
arrives. What must hold (docs/reliability.md "Panel door and power"): with the door open no
acceptor takes cash — not even when a flow admitted before the door opened reaches its intake —,
the visit in flight ends with its money paid back and its ledger balanced, and the kiosk serves
again only once the door is shut, whatever the mains did meanwhile.
"""
from __future__ import annotations


import pytest

from controller.kiosk import Kiosk
from hal.emulators.model import ControlError
from tests.support.ups_kiosk import TAMPER_PIN, accepting, door, emu, running, shown, until, ups


@pytest.fixture
async def kiosk(tmp_path):
    async with running(tmp_path, poll_s=0.02, panel=True) as k:
        yield k


def question(k: Kiosk) -> str | None:
    return (k.desk.screen()["question"] or {}).get("prompt")


def any_accepting(k: Kiosk) -> bool:
    return accepting(k, "coin") or accepting(k, "bill")


async def last_txn(k: Kiosk) -> dict:
    return await k.journal.read(lambda c: dict(c.execute(
        "SELECT state, note, (SELECT COALESCE(SUM(CASE kind WHEN 'cash_in' THEN fen ELSE -fen END), 0) FROM money m"
        " WHERE m.txn = t.id) AS balance, (SELECT COALESCE(SUM(fen), 0) FROM money m WHERE m.txn = t.id"
        " AND kind = 'cash_in') AS cash_in, (SELECT COALESCE(SUM(fen), 0) FROM money m WHERE m.txn = t.id"
        " AND kind = 'refunded') AS refunded FROM transactions t ORDER BY opened_at DESC LIMIT 1").fetchone()))


async def intake_takes_cash_again(k: Kiosk) -> None:
    """A card sale's intake enables the acceptors; the customer then cancels."""
    await k.begin("card_sale")
    await until(lambda: question(k) == "choose_card")
    k.desk.answer("3000")
    await until(lambda: "insert_cash" in shown(k) and accepting(k))
    k.desk.cancel()
    await until(lambda: not k.desk.screen()["busy"])


async def one_yuan_in(k: Kiosk) -> None:
    """A customer at the card sale's insert-cash screen with a 1-yuan coin in (the hopper filled to pay it back)."""
    emu(k, "cctalk", "hopper_fill", count=50)
    await k.begin("card_sale")
    await until(lambda: question(k) == "choose_card")
    k.desk.answer("3000")
    await until(lambda: "insert_cash" in shown(k) and accepting(k))
    assert emu(k, "cctalk", "insert_coin", value=100) == "accepted"
    await until(lambda: "paid_so_far" in shown(k))


async def test_door_opening_between_admission_and_intake_never_lets_the_flow_enable_the_acceptors(kiosk):
    k = kiosk
    await k.begin("card_sale")  # admitted with the door shut
    await until(lambda: question(k) == "choose_card")
    await door(k, True)  # the technician opens the door while the customer chooses
    await until(lambda: k.state == "safe" and not any_accepting(k))
    k.desk.answer("3000")  # the flow goes on to its intake with the door open

    # before: the intake enabled both acceptors with the cabinet open
    await until(lambda: not k.desk.screen()["busy"] or any_accepting(k))
    assert not any_accepting(k)
    assert emu(k, "cctalk", "insert_coin", value=100) != "accepted"
    last = k.desk.screen()["last"]
    assert last["state"] == "cancelled", last
    assert "locked_refund" in {s["key"] for s in k.desk.customer.shown}  # 本机暂停服务进行维护 ...
    assert await last_txn(k) == {"state": "cancelled", "note": "kiosk locked down: door_open", "balance": 0,
                                 "cash_in": 0, "refunded": 0}
    with pytest.raises(ControlError, match="door_open"):
        await k.begin("card_sale")

    await door(k, False)
    await until(lambda: k.admission.closed_because is None and k.state in ("ready", "degraded"))


async def test_door_opening_during_intake_stops_it_and_pays_back_what_is_in(kiosk):
    k = kiosk
    await one_yuan_in(k)

    await door(k, True)
    await until(lambda: not any_accepting(k))
    # before: the intake waited out the customer's idle timeout (30 s here) with the acceptors shut
    await until(lambda: not k.desk.screen()["busy"], timeout=20)
    last = k.desk.screen()["last"]
    assert last["state"] == "refunded", last
    assert emu(k, "cctalk", "state")["hopper_paid_fen"] == 100  # the coin came back
    assert await last_txn(k) == {"state": "refunded", "note": "kiosk locked down: door_open", "balance": 0,
                                 "cash_in": 100, "refunded": 100}
    assert not any_accepting(k) and k.admission.closed_because == "door_open"


async def test_mains_back_with_the_door_open_stays_locked_down_until_the_door_shuts(kiosk):
    k = kiosk
    rail = ups(k)
    await door(k, True)
    await until(lambda: k.admission.closed_because == "door_open")
    rail.bus_mv = 10_900  # on battery
    await until(lambda: k.power.on_battery and k.power.synced.is_set())
    rail.bus_mv = 12_100  # the mains is back; the door is still open
    await until(lambda: not k.power.on_battery)

    # before: power_restored opened the kiosk again with its door open
    assert k.admission.closed_because == "door_open" and k.state == "safe"
    assert k.cash_lock.reasons == ["door_open"]
    with pytest.raises(ControlError, match="door_open"):
        await k.begin("card_sale")
    assert not any_accepting(k)
    assert emu(k, "cctalk", "insert_coin", value=100) != "accepted"

    await door(k, False)  # the door shuts: now it serves, and a customer's intake takes cash again
    await until(lambda: k.admission.closed_because is None and k.state in ("ready", "degraded"))
    assert k.cash_lock.reasons == []
    await intake_takes_cash_again(k)
    assert not any_accepting(k)


async def test_the_halls_inhibit_during_intake_stops_it_pays_back_and_leaves_other_services_open(kiosk):
    """The hall's 禁止收现 reaches a customer already at the insert-cash screen."""
    from controller.commands import inhibit_cash

    k = kiosk
    await one_yuan_in(k)

    await inhibit_cash(k, {"inhibit": True})
    # before: the intake waited out the idle timeout (30 s here), the customer's coin held, while
    # a customer admitted before the inhibit enabled the acceptors again at their intake
    await until(lambda: not k.desk.screen()["busy"], timeout=20)
    last = k.desk.screen()["last"]
    assert last["state"] == "refunded", last
    assert "locked_refund" in {s["key"] for s in k.desk.customer.shown}
    assert emu(k, "cctalk", "state")["hopper_paid_fen"] == 100
    assert await last_txn(k) == {"state": "refunded", "note": "kiosk locked down: inhibited_by_hall",
                                 "balance": 0, "cash_in": 100, "refunded": 100}
    assert not any_accepting(k) and k.admission.closed_because is None  # not a lock-down: queries go on
    with pytest.raises(ControlError, match="cash inhibited by the hall"):
        await k.begin("card_sale")

    await door(k, True)  # a technician opens and shuts the door meanwhile: the hall's inhibit stays,
    await until(lambda: k.admission.closed_because == "door_open")
    await door(k, False)  # and it alone does not close the kiosk to the services that take no cash
    await until(lambda: k.admission.closed_because is None)
    assert k.cash_inhibited and k.offered("balance_query") is None and k.offered("card_sale") is not None

    await inhibit_cash(k, {"inhibit": False})
    assert not k.cash_inhibited and k.cash_lock.reasons == []
    await intake_takes_cash_again(k)


async def test_a_customer_admitted_before_the_halls_inhibit_never_gets_the_acceptors_enabled(kiosk):
    from controller.commands import inhibit_cash

    k = kiosk
    await k.begin("card_sale")
    await until(lambda: question(k) == "choose_card")
    await inhibit_cash(k, {"inhibit": True})
    k.desk.answer("3000")
    await until(lambda: not k.desk.screen()["busy"] or any_accepting(k))
    assert not any_accepting(k)
    assert emu(k, "cctalk", "insert_coin", value=100) != "accepted"
    assert k.desk.screen()["last"]["state"] == "cancelled"
    assert await last_txn(k) == {"state": "cancelled", "note": "kiosk locked down: inhibited_by_hall",
                                 "balance": 0, "cash_in": 0, "refunded": 0}
    await inhibit_cash(k, {"inhibit": False})


async def test_the_tamper_switch_is_a_reason_of_its_own_the_door_shutting_does_not_release_it(kiosk):
    k = kiosk
    await door(k, True)  # the technician opens the door
    await door(k, True, TAMPER_PIN)  # and the cabinet's tamper switch opens too
    await until(lambda: k.cash_lock.reasons == ["door_open", "tamper_open"])
    await door(k, False)  # the door shuts; the tamper switch is still open
    await until(lambda: k.cash_lock.reasons == ["tamper_open"])
    # before: both were "door_open", and the door shutting served again with the tamper switch open
    assert k.admission.closed_because == "tamper_open" and k.state == "safe"
    with pytest.raises(ControlError, match="tamper_open"):
        await k.begin("card_sale")
    assert not any_accepting(k) and emu(k, "cctalk", "insert_coin", value=100) != "accepted"

    await door(k, False, TAMPER_PIN)  # the tamper switch closes: the kiosk serves again
    await until(lambda: k.admission.closed_because is None and k.state in ("ready", "degraded"))
    await intake_takes_cash_again(k)

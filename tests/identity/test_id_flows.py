"""补换SIM卡, 实名登记 and 挂失 by ID card end to end, on the same simulated kiosk as test_new_number.py.

After each identity flow that read a card, ``no_leaks`` scans the data directory (journal, outbox),
the receipts, the ID emulator's state and the logs for the card's text and both photos."""
from __future__ import annotations

import logging

import pytest

from transactions.customer import ScriptedCustomer
from transactions.service import run_flow

from .cards import GOOD, card
from .cards import EXPIRED
from .kiosk import id_kiosk
from .test_new_number import PHOTO, bosssim, no_leaks  # noqa: F401 - fixture

OWNED = "13800138000"  # bosssim: 张伟, owner by ID 11010519491231002X
OTHER_ID = "110101199003074477"  # valid by GB 11643, another person's


@pytest.fixture
async def kiosk(tmp_path, bosssim, usim):  # noqa: F811
    async with id_kiosk(tmp_path, bosssim, usim) as k:
        yield k


def taking(kiosk):
    def on_show(key, fmt):
        if key == "take_sim":
            kiosk.emu("crt571-sims", "take_card")
    return on_show


async def test_a_sim_replacement_writes_a_new_card_and_the_boss_invalidates_the_old(kiosk, bosssim, caplog):
    caplog.set_level(logging.DEBUG)
    kiosk.place(**card(GOOD, photo=PHOTO.hex()))
    customer = ScriptedCustomer([OWNED, "confirm"], on_show=taking(kiosk))
    result = await run_flow(kiosk.services, "sim_replace", customer)
    assert result.state == "done", customer.shown_keys
    ops = [op for op in (await bosssim.ledger())["ops"] if op["op"] == "replace_sim"]
    assert len(ops) == 1 and ops[0]["key"] == f"{result.txn}:replace" and ops[0]["args"]["iccid"] == kiosk.usim.card.iccid
    sims = kiosk.emu("crt571-sims", "state")
    assert (sims["dispensed"], sims["taken"], sims["captured"]) == (1, 1, 0)
    assert kiosk.usim.card.files()["3F00/7FF0/FF02"] == "written"
    receipt = kiosk.emu("escpos", "receipts")[-1]
    assert "补换SIM卡凭条" in receipt and "138****8000" in receipt and "已失效" in receipt
    no_leaks(kiosk, caplog)


async def test_a_replacement_for_someone_who_is_not_the_owner_is_refused_before_any_card_moves(kiosk, bosssim):
    kiosk.place(**card(GOOD, id_number=OTHER_ID))
    customer = ScriptedCustomer([OWNED, "confirm"])
    result = await run_flow(kiosk.services, "sim_replace", customer)
    assert result.state == "declined" and "not_owner" in customer.shown_keys, customer.shown_keys
    assert kiosk.emu("crt571-sims", "state")["dispensed"] == 0
    assert not [op for op in (await bosssim.ledger())["ops"] if op["op"] == "replace_sim"]


async def test_a_failed_write_in_a_replacement_keeps_the_old_card_working(kiosk, bosssim):
    kiosk.place(**GOOD)
    kiosk.sim.model("crt571-sims").cards.on_new_card = lambda: kiosk.usim.card.control(
        "set_adm_tries", {"tries": 1})  # the next blank card has one ADM try left: never tried
    customer = ScriptedCustomer([OWNED, "confirm"])
    result = await run_flow(kiosk.services, "sim_replace", customer)
    assert result.state == "failed" and "sim_write_failed" in customer.shown_keys, customer.shown_keys
    assert kiosk.emu("crt571-sims", "state")["captured"] == 1
    assert not [op for op in (await bosssim.ledger())["ops"] if op["op"] == "replace_sim"]


async def test_real_name_registration_of_an_existing_number(kiosk, bosssim, caplog):
    caplog.set_level(logging.DEBUG)
    holder = card(GOOD, name="张伟", photo=PHOTO.hex())
    kiosk.place(**holder)
    customer = ScriptedCustomer([OWNED, "confirm"])
    result = await run_flow(kiosk.services, "real_name", customer)
    assert result.state == "done", customer.shown_keys
    ops = [op for op in (await bosssim.ledger())["ops"] if op["op"] == "register_real_name"]
    assert len(ops) == 1 and ops[0]["args"]["name"] == "张伟"
    assert "张*" in kiosk.emu("escpos", "receipts")[-1]
    record = kiosk.open_pii((await kiosk.txn(result.txn))["data"]["pii"])
    no_leaks(kiosk, caplog, record["live_photo_jpeg"], card=holder)


async def test_real_name_with_a_name_that_is_not_the_holders_is_refused(kiosk, bosssim):
    kiosk.place(**GOOD)
    customer = ScriptedCustomer([OWNED, "confirm"])
    result = await run_flow(kiosk.services, "real_name", customer)
    assert result.state == "failed" and "name_mismatch" in customer.shown_keys, customer.shown_keys


# -- 挂失 by ID card -----------------------------------------------------------------------------

def suspended(ledger: dict, txn: str | None = None) -> list:
    return [op for op in ledger["ops"] if op["op"] == "suspend_number" and (txn is None or op["key"] == f"{txn}:suspend")]


async def test_a_loss_report_by_the_holders_id_card_suspends_the_number(kiosk, bosssim, caplog):
    caplog.set_level(logging.DEBUG)
    holder = card(GOOD, name="张伟", photo=PHOTO.hex())
    kiosk.place(**holder)
    customer = ScriptedCustomer([OWNED, "id_card", "confirm"])
    result = await run_flow(kiosk.services, "loss_report", customer)
    assert result.state == "done", customer.shown_keys
    assert [(p, o) for p, o in customer.asked] == [("enter_phone", ()), ("choose_identify_method", ("id_card", "password")),
                                                   ("confirm_suspend", ("confirm",))]
    assert "id_accepted" in customer.shown_keys
    ledger = await bosssim.ledger()
    assert len(suspended(ledger, result.txn)) == 1 and ledger["accounts"][OWNED]["status"] == "suspended"
    assert not [op for op in ledger["ops"] if op["op"] == "verify_password"]
    txn = await kiosk.txn(result.txn)
    assert [s["kind"] for s in txn["steps"]] == ["boss_suspend", "print"]
    assert txn["data"]["id_masked"] == "110105********002X" and txn["data"]["name_masked"] == "张*"
    record = kiosk.open_pii(txn["data"]["pii"])  # who asked, sealed to the hall's key
    assert record["id_number"] == GOOD["id_number"] and record["id_photo_wlt"] == PHOTO
    receipt = kiosk.emu("escpos", "receipts")[-1]
    assert "挂失凭条" in receipt and "138****8000" in receipt and "张*" in receipt and "110105********002X" in receipt
    no_leaks(kiosk, caplog, record["live_photo_jpeg"], card=holder)


@pytest.mark.parametrize("who,key", [(card(GOOD, id_number=OTHER_ID), "not_owner"), (EXPIRED, "id_expired")])
async def test_a_loss_report_by_a_card_that_is_not_the_owners_or_not_valid_suspends_nothing(kiosk, bosssim, who, key,
                                                                                           caplog):
    caplog.set_level(logging.DEBUG)
    kiosk.place(**who)
    customer = ScriptedCustomer([OWNED, "id_card", "confirm"])
    result = await run_flow(kiosk.services, "loss_report", customer)
    assert result.state == "declined" and key in customer.shown_keys, customer.shown_keys
    assert "confirm_suspend" not in [p for p, _ in customer.asked]
    ledger = await bosssim.ledger()
    assert not suspended(ledger) and ledger["accounts"][OWNED]["status"] == "active"
    no_leaks(kiosk, caplog, card=who)


async def test_a_loss_report_by_service_password_still_works_where_the_reader_is(kiosk, bosssim):
    customer = ScriptedCustomer(["18612345678", "password", "888888", "confirm"])
    result = await run_flow(kiosk.services, "loss_report", customer)
    assert result.state == "done", customer.shown_keys
    assert "place_id_card" not in customer.shown_keys
    assert "pii" not in (await kiosk.txn(result.txn))["data"]
    assert (await bosssim.ledger())["accounts"]["18612345678"]["status"] == "suspended"

"""补换SIM卡 and 实名登记 end to end, on the same simulated kiosk as test_new_number.py."""
from __future__ import annotations

import logging

import pytest

from transactions.customer import ScriptedCustomer
from transactions.service import run_flow

from .cards import GOOD, card
from .kiosk import id_kiosk, scan_files
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


async def test_real_name_registration_of_an_existing_number(kiosk, bosssim, tmp_path):
    kiosk.place(**card(GOOD, name="张伟"))
    customer = ScriptedCustomer([OWNED, "confirm"])
    result = await run_flow(kiosk.services, "real_name", customer)
    assert result.state == "done", customer.shown_keys
    ops = [op for op in (await bosssim.ledger())["ops"] if op["op"] == "register_real_name"]
    assert len(ops) == 1 and ops[0]["args"]["name"] == "张伟"
    assert "张*" in kiosk.emu("escpos", "receipts")[-1]
    assert scan_files(kiosk.state_dir, card(GOOD, name="张伟")) == {}


async def test_real_name_with_a_name_that_is_not_the_holders_is_refused(kiosk, bosssim):
    kiosk.place(**GOOD)
    customer = ScriptedCustomer([OWNED, "confirm"])
    result = await run_flow(kiosk.services, "real_name", customer)
    assert result.state == "failed" and "name_mismatch" in customer.shown_keys, customer.shown_keys

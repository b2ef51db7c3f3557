"""The CRT-571 driver against the CRT-571 emulator over a real pty (card-dispensers.md §4.2)."""
import asyncio

import pytest

from hal.device import Health
from hal.dispenser import give_card
from hal.dispenser.crt571 import Crt571Dispenser
from hal.emulators.crt571 import Crt571Model
from hal.peripherals import DispenseFailed
from tests.rig import lines

from .conftest import rig

FAST = dict(poll_interval_s=0.02, ack_timeout_s=0.1, response_timeout_s=0.3, dispense_timeout_s=0.5)


async def customer_takes_card_when_it_arrives(r):
    async with asyncio.timeout(3):
        while r.model.cards.position != "gate":
            await asyncio.sleep(0.01)
    await r.emu("take_card")


async def test_start_initialises_and_a_dispensed_card_taken_by_the_customer(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(stock=20), tmp_path, **FAST) as r:
        assert r.model.initialised and r.driver.firmware == "CRT-571-EMU V1.0"
        assert r.driver.health == Health.OK
        customer = asyncio.create_task(customer_takes_card_when_it_arrives(r))
        assert await give_card(r.driver, timeout=3) == "taken"
        await customer
        state = await r.emu("state")
        assert (state["stock"], state["position"], state["dispensed"], state["taken"]) == (19, "taken", 1, 1)
        st = await r.driver.status()
        assert st.known and not st.card_at_gate and not st.empty


async def test_an_untaken_card_is_captured_after_the_timeout(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        assert await give_card(r.driver, timeout=0.1) == "captured"
        state = await r.emu("state")
        assert (state["position"], state["captured"]) == ("bin", 1)
        assert [e.code for e in r.events if e.kind == "card_captured"] == ["not_taken"]


async def test_move_to_read_position_then_dispense_moves_the_same_card(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(stock=5), tmp_path, **FAST) as r:
        await r.driver.move_to_read_position()
        assert (await r.driver.status()).card_in_read_position
        await r.driver.dispense_to_gate()
        state = await r.emu("state")
        assert (state["position"], state["dispensed"], state["stock"]) == ("gate", 1, 4)


async def test_an_empty_stacker_is_a_named_fault_and_a_low_one_degrades_health(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(stock=2, near_empty=5), tmp_path, **FAST) as r:
        assert r.driver.health == Health.DEGRADED
        assert [e.code for e in r.events if e.kind == "stock_low"] == ["near_empty"]
        await r.emu("set_stock", count=0)
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "empty" and r.faults() == ["empty"]
        assert r.driver.health == Health.FAULT


async def test_a_jam_is_a_named_fault_until_cleared_and_reset(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.emu("jam")
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "jam" and r.faults() == ["jam"]
        assert (await r.driver.status()).jammed
        await r.emu("clear_jam")
        await r.driver.reset()
        assert not (await r.driver.status()).jammed
        await r.driver.dispense_to_gate()
        assert r.model.cards.position == "gate"


async def test_a_silent_device_is_a_named_fault_not_a_hang(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.emu("mute")
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "silent"
        assert not (await r.driver.status()).known
        assert r.driver.health == Health.FAULT
        assert r.model.cards.dispensed == 0


async def test_a_corrupted_status_reply_is_asked_again(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.emu("corrupt", count=1)
        st = await r.driver.status()
        assert st.known and r.faults() == []


async def test_a_corrupted_answer_to_a_move_is_checked_not_repeated(tmp_path):
    """Sending the move again could give out two cards: ask where the card is instead."""
    async with rig(Crt571Dispenser, Crt571Model(stock=10), tmp_path, **FAST) as r:
        r.driver._initialised = True  # already initialised at start
        before = r.model.commands
        await r.emu("corrupt", count=2)  # the first status reply, then the move's answer
        await r.driver.dispense_to_gate()
        state = await r.emu("state")
        assert (state["position"], state["dispensed"], state["stock"]) == ("gate", 1, 9)
        assert r.model.commands - before == 4  # status (garbled), status, move (garbled), status


async def test_replies_that_stay_corrupted_end_in_bad_reply(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.emu("corrupt", count=100)
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "bad_reply" and r.model.cards.dispensed == 0


async def test_a_nak_repeats_the_command_and_persistent_naks_are_a_fault(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.emu("corrupt_rx", count=1)  # one command damaged on its way: the device NAKs it
        await r.driver.dispense_to_gate()
        assert r.model.cards.position == "gate" and r.model.cards.dispensed == 1
        await r.emu("take_card")
        await r.emu("corrupt_rx", count=100)
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "nak" and r.model.cards.dispensed == 1


async def test_a_device_that_forgot_its_initialisation_is_initialised_again(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.emu("power_cycle")
        await r.driver.dispense_to_gate()
        assert r.model.initialised and r.model.cards.position == "gate"


async def test_self_test_names_firmware_and_stock(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        firmware = r.driver.firmware if lines.real("crt571") else "CRT-571-EMU V1.0"
        assert firmware and await r.driver.self_test() == f"dispenser: ok, firmware {firmware}, stock enough, card at gate False"


async def test_an_older_unit_that_answers_only_after_enq_is_learnt_once(tmp_path):
    """§4.2: older Creator tools send ENQ after the ACK; the driver finds out and keeps doing it."""
    async with rig(Crt571Dispenser, Crt571Model(needs_enq=True), tmp_path, **FAST) as r:
        assert r.model.initialised and r.driver._needs_enq
        await r.driver.dispense_to_gate()
        assert r.model.cards.position == "gate" and r.faults() == []


async def test_a_unit_falling_silent_while_the_card_waits_is_a_fault_not_taken(tmp_path):
    async with rig(Crt571Dispenser, Crt571Model(), tmp_path, **FAST) as r:
        await r.driver.dispense_to_gate()
        await r.emu("mute")
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.wait_taken(1.0)
        assert failed.value.code == "silent" and r.faults() == ["silent"]

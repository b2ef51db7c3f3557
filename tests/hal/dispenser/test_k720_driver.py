"""The K720 driver against the K720 emulator over a real pty (card-dispensers.md §4.3)."""
import asyncio

import pytest

from hal.device import Health
from hal.dispenser import give_card
from hal.dispenser.common import LinkFault
from hal.dispenser.k720 import K720Dispenser
from hal.emulators.k720 import K720Model
from hal.peripherals import DispenseFailed

from .conftest import rig

FAST = dict(poll_interval_s=0.02, ack_timeout_s=0.1, response_timeout_s=0.3, dispense_timeout_s=0.5)


async def customer_takes_card_when_it_arrives(r):
    """The customer pulls the card once the kiosk has seen it at the gate (an AP answered since)."""
    async with asyncio.timeout(3):
        while r.model.cards.position != "gate":
            await asyncio.sleep(0.005)
        seen = r.model.history.count("AP")
        while r.model.history.count("AP") == seen:
            await asyncio.sleep(0.005)
    await r.emu("take_card")


async def test_a_dispensed_card_taken_by_the_customer(tmp_path):
    async with rig(K720Dispenser, K720Model(stock=20), tmp_path, **FAST) as r:
        assert r.driver.firmware == "K720-EMU V1.0" and r.driver.health == Health.OK
        customer = asyncio.create_task(customer_takes_card_when_it_arrives(r))
        assert await give_card(r.driver, timeout=3) == "taken"
        await customer
        state = await r.emu("state")
        assert (state["stock"], state["position"], state["dispensed"], state["taken"]) == (19, "taken", 1, 1)
        assert state["status"] == "0000"


async def test_an_untaken_card_is_captured_after_the_timeout(tmp_path):
    async with rig(K720Dispenser, K720Model(), tmp_path, **FAST) as r:
        assert await give_card(r.driver, timeout=0.1) == "captured"
        state = await r.emu("state")
        assert (state["position"], state["captured"]) == ("bin", 1)


async def test_the_read_position_for_sim_writing_then_the_gate(tmp_path):
    async with rig(K720Dispenser, K720Model(stock=3), tmp_path, **FAST) as r:
        await r.driver.move_to_read_position()
        st = await r.driver.status()
        assert st.card_in_read_position and not st.card_at_gate
        await r.driver.dispense_to_gate()
        assert (r.model.cards.position, r.model.cards.dispensed) == ("gate", 1)


async def test_empty_box_and_pre_empty(tmp_path):
    async with rig(K720Dispenser, K720Model(stock=4, near_empty=5), tmp_path, **FAST) as r:
        assert (await r.driver.status()).near_empty and r.driver.health == Health.DEGRADED
        await r.emu("set_stock", count=0)
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "empty" and r.faults() == ["empty"]
        assert "DC" not in r.model.history  # refused before moving anything


async def test_a_jam_during_dispensing_is_a_named_fault(tmp_path):
    async with rig(K720Dispenser, K720Model(), tmp_path, **FAST) as r:
        await r.emu("jam")
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "jam"
        st = await r.driver.status()
        assert st.jammed and r.driver.health == Health.FAULT
        await r.emu("clear_jam")
        await r.driver.reset()
        await r.driver.dispense_to_gate()
        assert r.model.cards.position == "gate"


async def test_a_silent_device_is_a_named_fault(tmp_path):
    async with rig(K720Dispenser, K720Model(), tmp_path, **FAST) as r:
        await r.emu("mute")
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "silent" and r.faults() == ["silent"]
        assert not (await r.driver.status()).known


async def test_corrupted_acks_and_replies_are_resent_without_a_second_card(tmp_path):
    async with rig(K720Dispenser, K720Model(stock=10), tmp_path, **FAST) as r:
        await r.emu("corrupt", count=2)  # the ACK of AP, then (after a resend) the AP reply itself
        await r.driver.dispense_to_gate()
        assert (r.model.cards.dispensed, r.model.cards.position) == (1, "gate")
        await r.emu("take_card")
        # a DC whose ACK is garbled is sent again: the device runs only what an ENQ confirms
        frames_before = (await r.emu("state"))["bytes_in"]
        await r.emu("corrupt", count=1)
        async with r.driver.lock:
            await r.driver._command(b"DC", expect_reply=False)
        async with asyncio.timeout(5):  # the ENQ is written; wait until the device has read and run it
            while list(r.model.history).count("DC") < 2:
                await asyncio.sleep(0.005)
        sent = (await r.emu("state"))["bytes_in"] - frames_before
        assert sent == 9 + 9 + 3  # DC, DC again, one ENQ
        assert r.model.cards.dispensed == 2 and list(r.model.history).count("DC") == 2
        assert r.faults() == []


async def test_replies_that_stay_corrupted_end_in_bad_reply(tmp_path):
    async with rig(K720Dispenser, K720Model(), tmp_path, **FAST) as r:
        await r.emu("corrupt", count=100)
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "bad_reply" and r.model.cards.dispensed == 0


async def test_a_nak_repeats_the_command_and_persistent_naks_are_a_fault(tmp_path):
    async with rig(K720Dispenser, K720Model(), tmp_path, **FAST) as r:
        await r.emu("corrupt_rx", count=2)
        await r.driver.dispense_to_gate()
        assert r.model.cards.dispensed == 1
        await r.emu("take_card")
        await r.emu("corrupt_rx", count=100)
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "nak" and r.model.cards.dispensed == 1


def test_an_undefined_command_gets_the_negative_reply_error_00():
    """K7X0 protocol document: the error reply is 02 ADDH ADDL 00 04 'N' CM PM ERR_CD 03 BCC, RELEN 4,
    so ERR_CD is one byte; 0x00 = undefined command. Bytes worked by hand, not by our encoder:
    ZZ to address 00 is 02 30 30 00 02 5A 5A 03, BCC = XOR of those = 03; after the ACK and the ENQ
    the device answers 02 30 30 00 04 4E 5A 5A 00 03, BCC 4B."""
    model = K720Model()
    assert model.receive(bytes.fromhex("02 30 30 00 02 5A 5A 03 03"), 0.0) == bytes.fromhex("06 30 30")
    assert model.receive(bytes.fromhex("05 30 30"), 0.01) == bytes.fromhex("02 30 30 00 04 4E 5A 5A 00 03 4B")
    assert model.cards.dispensed == 0


async def test_the_driver_names_an_undefined_command_and_does_not_resend_it(tmp_path):
    async with rig(K720Dispenser, K720Model(), tmp_path, **FAST) as r:
        before = (await r.emu("state"))["bytes_in"]
        with pytest.raises(LinkFault) as failed:
            async with r.driver.lock:
                await r.driver._command(b"ZZ", expect_reply=True)
        assert failed.value.code == "undefined_command" and "error 00 (undefined command)" in failed.value.detail
        assert (await r.emu("state"))["bytes_in"] - before == 9 + 3  # one command, one ENQ


async def test_a_mechanical_command_the_firmware_lacks_is_a_named_fault_not_a_jam(tmp_path):
    """A "list 2" command answers nothing after the ENQ, so the refusal must be caught in the
    moment after it, not taken for a card that never arrived (a 'jam' after the dispense timeout)."""
    async with rig(K720Dispenser, K720Model(unsupported=["FC7"]), tmp_path, **FAST) as r:
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.move_to_read_position()
        assert failed.value.code == "undefined_command" and "FC7" in str(failed.value)
        assert r.faults() == ["undefined_command"] and r.model.cards.position == "stack"
        await r.driver.dispense_to_gate()  # what the unit does know still works
        assert r.model.cards.position == "gate"

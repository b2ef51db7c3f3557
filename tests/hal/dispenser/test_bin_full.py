"""A full error-card bin stops dispensing: a card nobody takes could not be captured.

Found by the crash harness (tests/crash): after 30 captures the emulator's bin was full, the next
untaken card could not be captured and stayed at the gate for whoever came next, and the money
went to review. The drivers read the bin sensor (CRT-571 §4.2 st2, K720 §4.3 AP digit 1) and
refuse to dispense while it is full; the sale flow stops offering cards.
"""
import pytest

from hal.device import Health
from hal.dispenser import give_card
from hal.dispenser.crt571 import Crt571Dispenser
from hal.dispenser.k720 import K720Dispenser
from hal.emulators.crt571 import Crt571Model
from hal.emulators.k720 import K720Model
from hal.peripherals import DispenseFailed

from .conftest import rig

FAST = dict(poll_interval_s=0.02, ack_timeout_s=0.1, response_timeout_s=0.3, dispense_timeout_s=0.5)


@pytest.mark.parametrize("driver, model", [(Crt571Dispenser, Crt571Model), (K720Dispenser, K720Model)])
async def test_the_capture_that_fills_the_bin_works_then_no_card_leaves_the_stack(tmp_path, driver, model):
    async with rig(driver, model(bin_capacity=2), tmp_path, **FAST) as r:
        assert await give_card(r.driver, timeout=0.05) == "captured"
        assert not r.driver.bin_full
        assert await give_card(r.driver, timeout=0.05) == "captured"  # the second fills the bin
        await r.driver.status()
        assert r.driver.bin_full and r.driver.health == Health.DEGRADED
        with pytest.raises(DispenseFailed) as failed:
            await r.driver.dispense_to_gate()
        assert failed.value.code == "bin_full"
        state = await r.emu("state")
        assert (state["dispensed"], state["captured"], state["position"]) == (2, 2, "bin")  # no third card out
        assert [e.code for e in r.events if e.kind == "fault"].count("bin_full") >= 1
        await r.emu("empty_bin")  # the technician empties it: cards are sold again
        assert not (await r.driver.status()).card_at_gate and not r.driver.bin_full
        assert await give_card(r.driver, timeout=0.05) == "captured"
        assert (await r.emu("state"))["captured"] == 3

"""The ccTalk hopper driver against the bus emulator: payouts reported from the hopper's own counters (§1.10)."""
import pytest

from hal.cash import PayoutResult
from hal.cctalk.hopper import CcTalkHopper, HopperOutcomeUnknown, decode_test

from .conftest import condition


@pytest.fixture
async def hopper(emu):
    device = emu.driver(CcTalkHopper)
    await device.start()
    yield device
    await device.stop()


def test_test_hopper_registers_are_named():
    assert decode_test(bytes([0b1100_0010, 0, 0b1000])) == [
        "payout_timeout", "power_up_detected", "payout_disabled", "incorrect_cipher_key"]


async def test_a_full_payout_and_the_hopper_is_disabled_afterwards(emu, hopper):
    assert hopper.identity["category"] == "Payout"
    result = await hopper.dispense(5)
    assert result == PayoutResult(paid=5, unpaid=0, fen_paid=500)
    state = await emu("state")
    assert state["hopper_paid"] == 5 and state["hopper_level"] == 95
    assert state["hopper"]["enabled"] is False  # §1.10: safe state between payouts


async def test_a_partial_payout_reports_exactly_what_was_paid_and_not_paid(emu, hopper):
    await emu("hopper_empty_after", count=3)
    result = await hopper.dispense(5)
    assert result == PayoutResult(paid=3, unpaid=2, fen_paid=300)
    assert (await emu("state"))["hopper_paid"] == 3
    assert emu.reported("hopper_empty")[0].data == {"paid": 3, "unpaid": 2}
    assert await hopper.last_payout() == PayoutResult(3, 2, 300)


@pytest.mark.parametrize("emu", [{"payout_rate": 2000.0, "hopper_level": 1000}], indirect=True)
async def test_more_than_255_coins_go_out_in_several_dispenses(emu, hopper):
    result = await hopper.dispense(300)
    assert result == PayoutResult(300, 0, 30000)
    assert (await emu("state"))["hopper_paid"] == 300


async def test_the_cipher_is_pluggable_and_the_count_goes_last(emu):
    calls = []

    def cipher(count):
        calls.append(count)
        return bytes([0x5A] * 8 + [count])  # 9 bytes, the preferred length (§1.6 Table 8)

    device = CcTalkHopper("hopper", CcTalkHopper.Options(port=emu.path, echo=False, poll_interval_ms=20), emu.ctx, cipher=cipher)
    await device.start()
    try:
        assert await device.dispense(2) == PayoutResult(2, 0, 200)
        assert calls == [2]
    finally:
        await device.stop()


async def test_a_refused_dispense_pays_nothing_and_says_so(emu):
    device = emu.driver(CcTalkHopper)
    device.cipher = lambda count: bytes([count, 0])  # last byte 0: the hopper NAKs (§1.10)
    await device.start()
    try:
        assert await device.dispense(4) == PayoutResult(0, 4, 0)
        assert (await emu("state"))["hopper_paid"] == 0
    finally:
        await device.stop()


@pytest.mark.parametrize("emu", [{"payout_rate": 10.0}], indirect=True)
async def test_silence_mid_payout_is_an_unknown_outcome_then_last_payout_tells(emu, hopper):
    async def mute_when_paying():
        await condition(lambda: emu.port.runner.model.hopper.total_paid >= 1)
        await emu("mute")

    import asyncio

    muter = asyncio.create_task(mute_when_paying())
    with pytest.raises(HopperOutcomeUnknown):
        await hopper.dispense(5)
    await muter
    await emu("unmute")
    await condition(lambda: (emu.port.runner.model.hopper.payout is None), timeout=5)
    assert await hopper.last_payout() == PayoutResult(5, 0, 500)


async def test_self_test_reads_the_registers(emu, hopper):
    text = await hopper.self_test()
    assert "counter 0" in text and "payout_disabled" in text


async def test_a_hopper_below_its_low_level_sensor_is_reported(emu, hopper):
    await emu("hopper_fill", count=12)
    await hopper.dispense(3)  # 9 left: below the emulator's low-level trigger of 10 (hdr 217 b0)
    assert hopper.level == "low" and emu.reported("hopper_low")

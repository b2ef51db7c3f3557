"""The ccTalk hopper driver against the bus emulator: payouts reported from the hopper's own counters (§1.10)."""
import pytest

from hal.cash import PayoutResult
from hal.cctalk.hopper import CcTalkHopper, HopperOutcomeUnknown, decode_test
from tests.rig import lines

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
    assert not emu.reported("payout_refused") and state["hopper"]["refused"] == 0


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


def frames(emu, header):
    """The frames with ``header`` the emulated bus heard from the host, in order."""
    return [raw for raw in emu.model.heard if raw[3] == header]


def spec(text: str, base: int = 16) -> bytes:
    """A frame as a manual prints it (see test_emulator_hopper.py); it must add up (§1.2)."""
    raw = bytes(int(x, base) for x in text.split())
    assert sum(raw) % 256 == 0
    return raw


SERIAL_REQUEST = spec("03 00 01 F2 0A")  # hdr 242 to address 3


@pytest.mark.parametrize("emu", [{"hopper_serial": 0x0AD7DF}], indirect=True)
async def test_by_default_the_serial_number_goes_before_the_count(emu, hopper):
    """Suzohapp Manual 18-ccTalk p. 19: serial DF D7 0A, then 1 coin — the very bytes on our wire."""
    assert await hopper.dispense(1) == PayoutResult(1, 0, 100)
    assert frames(emu, 167) == [spec("03 04 01 A7 DF D7 0A 01 90")]
    assert await hopper.dispense(2) == PayoutResult(2, 0, 200)
    assert frames(emu, 167)[-1] == spec("03 04 01 A7 DF D7 0A 02 8F")
    assert frames(emu, 242) == [SERIAL_REQUEST]  # read once, at start-up
    assert frames(emu, 161) == frames(emu, 160) == []


@pytest.mark.parametrize("emu", [{"hopper_security": "cipher"}], indirect=True)
async def test_the_nine_byte_form_asks_for_a_key_before_every_dispense(emu):
    """SCH2 Technical Manual, Appendix G: 160, then [8 bytes][5 coins] = 003 009 001 167 0...0 005 071."""
    device = emu.driver(CcTalkHopper, security="zeros")
    await device.start()
    try:
        assert await device.dispense(5) == PayoutResult(5, 0, 500)
        assert await device.dispense(5) == PayoutResult(5, 0, 500)
    finally:
        await device.stop()
    sch2 = spec("003 009 001 167 000 000 000 000 000 000 000 000 005 071", 10)
    heard = [raw for raw in emu.model.heard if raw[3] in (161, 160, 167)]
    assert [raw[3] for raw in heard] == [161, 160, 167] * 2
    assert all(raw[:4] == bytes([3, 8, 1, 161]) and sum(raw) % 256 == 0 for raw in heard[0::3])  # 8 RNG bytes
    assert heard[0] != heard[3]  # fresh random bytes each time
    assert heard[1] == heard[4] == spec("03 00 01 A0 5C")
    assert heard[2] == heard[5] == sch2


keys_seen: list[tuple[bytes, int]] = []


def vendor_cipher(key: bytes, count: int) -> bytes:
    """Stands in for a vendor's encryption routine (named in the config as module:function)."""
    keys_seen.append((key, count))
    return bytes(b ^ 0x5A for b in key)


@pytest.mark.parametrize("emu", [{"hopper_security": "cipher"}], indirect=True)
async def test_a_vendor_function_turns_the_key_into_the_security_bytes(emu):
    keys_seen.clear()
    device = emu.driver(CcTalkHopper, security=f"{__name__}:vendor_cipher")
    await device.start()
    try:
        assert await device.dispense(2) == PayoutResult(2, 0, 200)
    finally:
        await device.stop()
    ((key, count),) = keys_seen
    (sent,) = frames(emu, 167)
    assert count == 2 and len(key) == 8 and sent[4:12] == bytes(b ^ 0x5A for b in key) and sent[12] == 2


async def test_the_serial_is_read_again_after_the_hopper_reset(emu, hopper):
    assert await hopper.dispense(1) == PayoutResult(1, 0, 100)
    emu.model.hopper.serial = 0x0AD7DF  # a technician swapped the unit: it came up at counter 0
    await emu("power_cycle", device="hopper")
    assert await hopper.dispense(1) == PayoutResult(1, 0, 100)
    assert frames(emu, 242) == [SERIAL_REQUEST] * 2
    assert frames(emu, 167)[-1] == spec("03 04 01 A7 DF D7 0A 01 90")


async def test_a_refused_dispense_pays_nothing_says_so_and_the_serial_is_read_again(emu, hopper):
    emu.model.hopper.serial = 0x0AD7DF  # swapped with no reset we could see (counter 0 both)
    assert await hopper.dispense(4) == PayoutResult(0, 4, 0)
    assert (await emu("state"))["hopper_paid"] == 0
    (refused,) = emu.reported("payout_refused")
    assert "incorrect_cipher_key" in refused.detail and refused.data == {"paid": 0, "unpaid": 4}
    assert await hopper.dispense(4) == PayoutResult(4, 0, 400)  # the NAK made it read the serial again
    assert frames(emu, 242) == [SERIAL_REQUEST] * 2


@pytest.mark.parametrize("emu", [{"hopper_security": "cipher"}], indirect=True)
async def test_a_hopper_set_for_another_form_refuses_and_nothing_is_paid(emu, hopper):
    assert await hopper.dispense(3) == PayoutResult(0, 3, 0)
    assert emu.reported("payout_refused") and (await emu("state"))["hopper_paid"] == 0


async def test_a_hopper_silent_before_the_dispense_reports_nothing_paid(emu, hopper):
    """Nothing can move before 167 is sent, so the answer is exact: 0 paid (not an exception)."""
    await emu("mute")
    assert await hopper.dispense(2) == PayoutResult(0, 2, 0)
    assert frames(emu, 167) == []


@pytest.mark.parametrize("emu", [{"payout_rate": 10.0}], indirect=True)
async def test_silence_mid_payout_is_an_unknown_outcome_then_last_payout_tells(emu, hopper):
    async def mute_when_paying():
        await condition(lambda: emu.model.hopper.total_paid >= 1)
        await emu("mute")

    import asyncio

    muter = asyncio.create_task(mute_when_paying())
    with pytest.raises(HopperOutcomeUnknown):
        await hopper.dispense(5)
    await muter
    await emu("unmute")
    await condition(lambda: (emu.model.hopper.payout is None), timeout=5)
    assert await hopper.last_payout() == PayoutResult(5, 0, 500)


async def test_self_test_reads_the_registers(emu, hopper):
    text = await hopper.self_test()
    counter = "counter 0" if not lines.real("cctalk") else "counter "  # a real unit's counter is where it is
    assert counter in text and "payout_disabled" in text
    product = "EMU-HOPPER #3345678" if not lines.real("cctalk") else f"{hopper.identity['product']} #{hopper.identity['serial']}"
    assert f"{product}, security serial" in text  # what a technician compares with the manual


async def test_a_hopper_below_its_low_level_sensor_is_reported(emu, hopper):
    await emu("hopper_fill", count=12)
    await hopper.dispense(3)  # 9 left: below the emulator's low-level trigger of 10 (hdr 217 b0)
    assert hopper.level == "low" and emu.reported("hopper_low")

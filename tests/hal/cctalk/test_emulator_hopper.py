"""The emulated hopper (cctalk.md §1.10): enable, dispense, status, test register, partial payout.

Dispense (167) is pinned by the manuals' own frames, copied byte for byte (each one checked to
add up to 0 mod 256 here, not by the emulator or the driver codec):
  FLOW: Suzohapp "Manual 18-ccTalk" v0.6, pp. 17-20 (hex) — the serial-number form (DIP 8 off)
        and the encrypted form with Pump RNG / Request cipher key.
  SCH2: Money Controls "SCH2 Technical Manual" TSP016 issue 3.0, Appendix G p. 59 (decimal) —
        the unencrypted 9-byte hopper that still wants a cipher-key request before each dispense.
"""
import pytest

from hal.emulators.cctalk import CcTalkBus
from tests.hal.cctalk.test_emulator import Clock, decode, frame


def spec(text: str, base: int = 16) -> bytes:
    """A frame as a manual prints it; it must add up (§1.2) before anyone relies on it."""
    raw = bytes(int(x, base) for x in text.split())
    assert sum(raw) % 256 == 0, f"the quoted frame {text!r} does not add up"
    return raw


ACK = spec("01 00 03 00 FC")  # FLOW p. 17 (SCH2: 001 000 003 000 252)
NAK = spec("01 00 03 05 F7")  # §1.2: header 5, from address 3
ENABLE = spec("03 01 01 A4 A5 B2")  # FLOW p. 17; SCH2: 003 001 001 164 165 178
PUMP_RNG = spec("03 08 01 A1 5B DA AA 6F 9A 5D C5 06 43")  # FLOW p. 17
REQUEST_KEY = spec("03 00 01 A0 5C")  # FLOW p. 17; SCH2: 003 000 001 160 092
FLOW_SERIAL = 0x0AD7DF  # the unit of FLOW p. 19, serial bytes DF D7 0A (LSB first)
FLOW_DISPENSE_1 = spec("03 04 01 A7 DF D7 0A 01 90")  # FLOW p. 19: serial number + 1 coin
FLOW_DISPENSE_ENCRYPTED_3 = spec("03 09 01 A7 63 D9 2A 95 BA D4 35 82 03 09")  # FLOW p. 19: 8 bytes + 3 coins
FLOW_COUNTER_1 = spec("01 01 03 00 01 FA")  # FLOW p. 19: event counter 1
SCH2_DISPENSE_5 = spec("003 009 001 167 000 000 000 000 000 000 000 000 005 071", 10)
SCH2_COUNTER_8 = spec("001 001 003 000 008 243", 10)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def bus(clock):
    return CcTalkBus(hopper_level=50, payout_rate=10.0, dry_timeout=0.5, clock=clock)


def ask(bus, clock, header, *data):
    return bus.receive(frame(3, 1, header, *data), clock.t)


def send(bus, clock, raw):
    return bus.receive(raw, clock.t)


def status(bus, clock):
    """hdr 166: [event counter][remaining][last paid][last unpaid]."""
    _, _, hdr, data = decode(ask(bus, clock, 166))
    assert hdr == 0
    return tuple(data)


def run_until_done(bus, clock, limit=60.0):
    start = clock.t
    while status(bus, clock)[1] and clock.t - start < limit:
        clock.t += 0.1
    return status(bus, clock)


SERIAL = bytes([0x0E, 0x0D, 0x33])  # the bus's hopper: serial 3 345 678, LSB first as hdr 242 sends it


def dispense(bus, clock, count):
    return ask(bus, clock, 167, *SERIAL, count)  # the serial-number form, 4 data bytes


def register3(bus, clock):
    return decode(ask(bus, clock, 163))[3][2]


# -- the serial-number form (the default, FLOW with DIP switch 8 off) -----------------------

def test_the_serial_number_form_as_the_flow_manual_shows_it(clock):
    bus = CcTalkBus(hopper_serial=FLOW_SERIAL, clock=clock)
    assert send(bus, clock, spec("03 00 01 F2 0A")) == spec("01 03 03 00 DF D7 0A 39")  # hdr 242, LSB first
    assert send(bus, clock, ENABLE) == ACK
    assert send(bus, clock, FLOW_DISPENSE_1) == FLOW_COUNTER_1
    assert run_until_done(bus, clock) == (1, 0, 1, 0)
    assert bus.snapshot()["hopper_paid"] == 1


def test_another_units_serial_number_is_refused_with_nak(clock):
    bus = CcTalkBus(hopper_serial=FLOW_SERIAL, clock=clock)
    send(bus, clock, ENABLE)
    assert send(bus, clock, spec("03 04 01 A7 DF D7 0B 01 8F")) == NAK  # 0B D7 DF is someone else
    assert register3(bus, clock) & 0x08  # §1.10 register 3 b3: incorrect cipher key
    assert status(bus, clock) == (0, 0, 0, 0) and bus.snapshot()["hopper"]["refused"] == 1
    assert send(bus, clock, FLOW_DISPENSE_1) == FLOW_COUNTER_1  # the right one still works
    assert not register3(bus, clock) & 0x08


def test_fewer_than_four_data_bytes_are_not_answered(clock):
    """Table 8: 167 carries 4 to 9 data bytes. The count alone (what kioskd sent before issue 17)
    or a short serial is a malformed command: no reply, nothing paid."""
    bus = CcTalkBus(hopper_serial=FLOW_SERIAL, clock=clock)
    send(bus, clock, ENABLE)
    assert send(bus, clock, spec("03 01 01 A7 01 53")) == b""  # [count] only
    assert send(bus, clock, spec("03 03 01 A7 DF D7 01 9B")) == b""  # two serial bytes + count
    assert status(bus, clock) == (0, 0, 0, 0) and bus.snapshot()["unanswered"] == 2


def test_the_optional_rng_and_key_steps_do_no_harm_in_serial_mode(clock):
    """FLOW p. 20: steps 4 and 5 (161, 160) "are not necessary" with the serial number; a unit answers them."""
    bus = CcTalkBus(hopper_serial=FLOW_SERIAL, clock=clock)
    send(bus, clock, ENABLE)
    assert send(bus, clock, PUMP_RNG) == ACK
    _, src, hdr, key = decode(send(bus, clock, REQUEST_KEY))
    assert (src, hdr, len(key)) == (3, 0, 8)
    assert send(bus, clock, FLOW_DISPENSE_1) == FLOW_COUNTER_1


# -- the 9-byte form (SCH2-NOENCRYPT; FLOW with DIP switch 8 on) ------------------------------

def test_the_nine_byte_form_as_the_sch2_manual_shows_it(clock):
    bus = CcTalkBus(hopper_security="cipher", clock=clock)
    bus.control("drop_events", {"device": "hopper", "count": 7})  # the manual's unit had paid 7 times
    assert send(bus, clock, ENABLE) == ACK
    assert send(bus, clock, SCH2_DISPENSE_5) == NAK  # "if the request cipher key is not sent then a NAK"
    dest, src, hdr, key = decode(send(bus, clock, REQUEST_KEY))
    assert (dest, src, hdr, len(key)) == (1, 3, 0, 8)  # "the 8 data bytes can be ignored"
    assert send(bus, clock, SCH2_DISPENSE_5) == SCH2_COUNTER_8
    assert run_until_done(bus, clock) == (8, 0, 5, 0)
    assert send(bus, clock, SCH2_DISPENSE_5) == NAK  # the key is spent: one per dispense (§1.10)
    send(bus, clock, REQUEST_KEY)
    assert decode(send(bus, clock, SCH2_DISPENSE_5))[3] == b"\x09"


def test_pump_rng_then_key_then_the_flow_manuals_encrypted_dispense(clock):
    bus = CcTalkBus(hopper_security="cipher", clock=clock)
    send(bus, clock, ENABLE)
    assert send(bus, clock, PUMP_RNG) == ACK
    first = decode(send(bus, clock, REQUEST_KEY))[3]
    assert decode(send(bus, clock, REQUEST_KEY))[3] != first  # a fresh key each time
    assert send(bus, clock, FLOW_DISPENSE_ENCRYPTED_3) == FLOW_COUNTER_1
    assert run_until_done(bus, clock) == (1, 0, 3, 0)


def test_the_nine_byte_unit_refuses_the_serial_form(clock):
    bus = CcTalkBus(hopper_security="cipher", hopper_serial=FLOW_SERIAL, clock=clock)
    send(bus, clock, ENABLE)
    send(bus, clock, REQUEST_KEY)
    assert send(bus, clock, FLOW_DISPENSE_1) == NAK


def test_the_security_mode_is_a_setting_like_a_dip_switch(bus, clock):
    assert bus.control("hopper_security", {"mode": "cipher"}) == "cipher"
    ask(bus, clock, 164, 165)
    assert dispense(bus, clock, 1) == NAK
    bus.control("hopper_security", {"mode": "serial"})
    assert decode(dispense(bus, clock, 1))[3] == b"\x01"
    with pytest.raises(ValueError):
        CcTalkBus(hopper_security="rot13")


# -- the rest of the hopper -----------------------------------------------------------------

def test_disabled_after_power_up_refuses_with_nak(bus, clock):
    assert dispense(bus, clock, 3) == NAK
    reg1 = decode(ask(bus, clock, 163))[3][0]
    assert reg1 & 0x80 and reg1 & 0x40  # b7 payout disabled, b6 power-up detected
    assert status(bus, clock) == (0, 0, 0, 0)


def test_full_payout_counts_down_remaining(bus, clock):
    assert ask(bus, clock, 164, 165) == ACK
    _, _, hdr, data = decode(dispense(bus, clock, 5))
    assert (hdr, data) == (0, b"\x01")  # SCH2 style: the post-increment event counter
    assert dispense(bus, clock, 1) == NAK  # one payout at a time
    clock.t += 0.25
    counter, remaining, paid, unpaid = status(bus, clock)
    assert (counter, remaining, paid, unpaid) == (1, 3, 2, 0)
    assert run_until_done(bus, clock) == (1, 0, 5, 0)
    snap = bus.snapshot()
    assert (snap["hopper_paid"], snap["hopper_level"], snap["hopper_paid_fen"]) == (5, 45, 500)


def test_zero_coins_is_handled_normally_and_pays_nothing(bus, clock):
    """SCH2 p. 40: "If 'N coins' is set to zero then no coins are paid out but the message is
    handled normally and the event counter is incremented"."""
    ask(bus, clock, 164, 165)
    assert decode(dispense(bus, clock, 0))[3] == b"\x01"
    assert status(bus, clock) == (1, 0, 0, 0) and bus.snapshot()["hopper_paid"] == 0


def test_partial_payout_when_the_hopper_runs_dry(bus, clock):
    ask(bus, clock, 164, 165)
    bus.control("hopper_empty_after", {"count": 3})
    decode(dispense(bus, clock, 7))
    assert run_until_done(bus, clock) == (1, 0, 3, 4)  # 3 paid, 4 unpaid
    reg1 = decode(ask(bus, clock, 163))[3][0]
    assert reg1 & 0x02 and reg1 & 0x80  # payout timeout, payout disabled
    assert dispense(bus, clock, 1) == NAK  # disabled until the host enables again
    assert bus.control("hopper_fill", {"count": 20}) == 20
    ask(bus, clock, 164, 165)
    decode(dispense(bus, clock, 2))
    assert run_until_done(bus, clock) == (2, 0, 2, 0)
    snap = bus.snapshot()
    assert (snap["hopper_paid"], snap["hopper_unpaid"], snap["hopper_level"]) == (5, 4, 18)


def test_empty_hopper_pays_nothing(bus, clock):
    bus.control("hopper_fill", {"count": 0})
    ask(bus, clock, 164, 165)
    decode(dispense(bus, clock, 4))
    assert run_until_done(bus, clock) == (1, 0, 0, 4)
    assert decode(ask(bus, clock, 217))[3][0] & 0x01  # below the low-level trigger


def test_power_cut_mid_payout_keeps_paid_and_unpaid(bus, clock):
    ask(bus, clock, 164, 165)
    decode(dispense(bus, clock, 10))
    clock.t += 0.45  # four coins out
    bus.control("power_cycle", {"device": "hopper"})
    assert status(bus, clock) == (0, 0, 4, 6)
    regs = decode(ask(bus, clock, 163))[3]
    assert regs[0] & 0x40 and regs[2] & 0x01  # power-up detected; power-down during payout


def test_a_key_does_not_survive_a_reset(clock):
    bus = CcTalkBus(hopper_security="cipher", clock=clock)
    send(bus, clock, REQUEST_KEY)
    bus.control("power_cycle", {"device": "hopper"})
    send(bus, clock, ENABLE)
    assert send(bus, clock, SCH2_DISPENSE_5) == NAK


def test_hopper_counter_wraps_255_to_1(bus, clock):
    ask(bus, clock, 164, 165)
    assert bus.control("drop_events", {"device": "hopper", "count": 255}) == 255
    assert decode(dispense(bus, clock, 1))[3] == b"\x01"  # 255 -> 1, never 0


def test_level_status_bits(bus, clock):
    assert decode(ask(bus, clock, 217))[3][0] == 0x30  # both sensors fitted, between the triggers

"""The emulated hopper (cctalk.md §1.10): enable, dispense, status, test register, partial payout."""
import pytest

from hal.emulators.cctalk import CcTalkBus
from tests.hal.cctalk.test_emulator import Clock, decode, frame

ACK = bytes([1, 0, 3, 0, 252])
NAK = frame(1, 3, 5)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def bus(clock):
    return CcTalkBus(hopper_level=50, payout_rate=10.0, dry_timeout=0.5, clock=clock)


def ask(bus, clock, header, *data):
    return bus.receive(frame(3, 1, header, *data), clock.t)


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


def dispense(bus, clock, count):
    return ask(bus, clock, 167, *b"\x11\x22\x33\x44\x55\x66\x77\x88", count)  # 8 security bytes + count


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


def test_the_last_data_byte_is_the_count_and_zero_is_refused(bus, clock):
    ask(bus, clock, 164, 165)
    assert ask(bus, clock, 167, 0) == NAK
    assert decode(ask(bus, clock, 167, 2))[3] == b"\x01"  # a single data byte is the count
    assert run_until_done(bus, clock)[2] == 2


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


def test_hopper_counter_wraps_255_to_1(bus, clock):
    ask(bus, clock, 164, 165)
    assert bus.control("drop_events", {"device": "hopper", "count": 255}) == 255
    assert decode(dispense(bus, clock, 1))[3] == b"\x01"  # 255 -> 1, never 0


def test_level_status_bits(bus, clock):
    assert decode(ask(bus, clock, 217))[3][0] == 0x30  # both sensors fitted, between the triggers

"""The emulated bill validator: escrow flow (cctalk.md §1.8), watchdog (§1.5), Table 7 events."""
import pytest

from hal.emulators.cctalk import CcTalkBus
from hal.emulators.model import ControlError
from tests.hal.cctalk.test_emulator import Clock, decode, enable_bills, events, frame

ACK = bytes([1, 0, 40, 0, 215])


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def bus(clock):
    return CcTalkBus(escrow_timeout=30.0, clock=clock)


def poll(bus, clock):
    return events(bus, clock, 40, 159)


def route(bus, clock, code):
    return bus.receive(frame(40, 1, 154, code), clock.t)


def test_escrow_timeout_returns_the_bill(bus, clock):
    enable_bills(bus, clock)
    assert bus.control("insert_bill", {"value": 5000}) == "escrow"
    for _ in range(6):  # the host keeps polling (so no self-inhibit) but never routes
        clock.t += 4.9
        poll(bus, clock)
    clock.t += 1.0
    counter, results = poll(bus, clock)
    assert (counter, results[:2]) == (2, [(0, 1), (5, 1)])  # returned from escrow, after pending
    snap = bus.snapshot()
    assert (snap["bills_returned_fen"], snap["bills_stacked_fen"], snap["bill"]["escrow_fen"]) == (5000, 0, None)
    assert route(bus, clock, 1) == frame(1, 40, 0, 254)  # §1.8: 254 = escrow empty


def test_route_255_extends_the_escrow_timer(bus, clock):
    enable_bills(bus, clock)
    bus.control("insert_bill", {"value": 100})
    clock.t += 4.0
    poll(bus, clock)
    for _ in range(8):
        clock.t += 4.0
        assert route(bus, clock, 255) == ACK
        poll(bus, clock)
    assert bus.snapshot()["bill"]["escrow_fen"] == 100  # 36 s in escrow, still held
    assert route(bus, clock, 0) == ACK
    assert poll(bus, clock)[1][0] == (0, 1)
    assert bus.snapshot()["bills_returned_fen"] == 100


def test_route_with_nothing_in_escrow_answers_254(bus, clock):
    assert route(bus, clock, 0) == frame(1, 40, 0, 254)
    assert route(bus, clock, 255) == frame(1, 40, 0, 254)


def test_validator_self_inhibits_when_not_polled_for_5_s(bus, clock):
    enable_bills(bus, clock)
    poll(bus, clock)
    clock.t += 5.1
    counter, results = poll(bus, clock)
    assert (counter, results[0]) == (1, (0, 0))  # Table 7: master inhibit active
    assert decode(bus.receive(frame(40, 1, 227), clock.t))[3] == b"\x00"
    assert bus.control("insert_bill", {"value": 100}) == "inhibited"
    assert poll(bus, clock)[1][0] == (0, 4)  # inhibited bill, no credit
    assert bus.receive(frame(40, 1, 228, 1), clock.t) == ACK  # the host must re-enable (§1.5)
    assert bus.control("insert_bill", {"value": 100}) == "escrow"


def test_unknown_and_inhibited_bills_are_refused_without_credit(bus, clock):
    enable_bills(bus, clock)
    assert bus.control("insert_bill", {"value": 300}) == "rejected"
    assert bus.receive(frame(40, 1, 231, 0b111101, 0), clock.t) == ACK  # type 2 (5 yuan) off
    assert bus.control("insert_bill", {"value": 500}) == "inhibited"
    bus.control("reject_bill", {})
    assert poll(bus, clock) == (3, [(0, 2), (0, 4), (0, 2), (0, 0), (0, 0)])
    assert bus.snapshot()["bills_stacked_fen"] == 0


def test_bill_ids_and_scaling(bus, clock):
    assert decode(bus.receive(frame(40, 1, 157, 6), clock.t))[3] == b"CN0100A"
    assert decode(bus.receive(frame(40, 1, 157, 9), clock.t))[3] == b"......."  # unprogrammed
    assert decode(bus.receive(frame(40, 1, 156, *b"CN"), clock.t))[3] == bytes([100, 0, 2])


def test_escrow_off_stacks_at_once(bus, clock):
    enable_bills(bus, clock)
    assert bus.receive(frame(40, 1, 153, 0b01), clock.t) == ACK
    assert bus.control("insert_bill", {"value": 1000}) == "stacked"
    assert poll(bus, clock)[1][0] == (3, 0)


def test_stacker_removed_and_full(bus, clock):
    enable_bills(bus, clock)
    bus.control("insert_bill", {"value": 100})
    bus.control("remove_stacker", {})
    assert route(bus, clock, 1) == frame(1, 40, 0, 255)  # failed to route: no cash box
    bus.control("replace_stacker", {})
    assert route(bus, clock, 1) == ACK
    bus.control("stacker_full", {})
    assert poll(bus, clock)[1] == [(0, 0), (0, 14), (1, 0), (0, 12), (0, 11)]
    assert bus.snapshot()["bill"]["master_enabled"] is False


def test_jam_keeps_the_bill_and_blocks_routing(bus, clock):
    enable_bills(bus, clock)
    bus.control("insert_bill", {"value": 2000})
    bus.control("jam_bill", {})
    assert route(bus, clock, 1) == frame(1, 40, 0, 254)  # the bill is no longer in escrow
    assert bus.control("insert_bill", {"value": 100}) == "jammed"
    assert poll(bus, clock)[1][0] == (0, 6)
    assert bus.snapshot()["bills_jammed_fen"] == 2000
    with pytest.raises(ControlError):
        bus.control("jam_bill", {"code": 3})


def test_bill_pulled_back_is_fraud(bus, clock):
    enable_bills(bus, clock)
    bus.control("insert_bill", {"value": 500})
    bus.control("fraud", {"device": "bill"})
    assert poll(bus, clock)[1][:2] == [(0, 8), (2, 1)]
    assert bus.snapshot()["bills_pulled_fen"] == 500


@pytest.mark.parametrize(
    "args,stacked,returned,events_after",
    [
        ({}, 0, 100, (0, [(0, 0)] * 5)),  # default: an escrowed bill is handed back at power-up
        ({"bill_in_stacker": True}, 100, 0, (0, [(0, 0)] * 5)),  # stacked unseen: only the count knows
        ({"bill_in_escrow": True}, 0, 0, (1, [(1, 1), (0, 0), (0, 0), (0, 0), (0, 0)])),
    ],
)
def test_power_cycle_with_a_bill_in_escrow(bus, clock, args, stacked, returned, events_after):
    enable_bills(bus, clock)
    bus.control("insert_bill", {"value": 100})
    bus.control("power_cycle", {"device": "bill", **args})
    assert poll(bus, clock) == events_after
    snap = bus.snapshot()
    assert (snap["bills_stacked_fen"], snap["bills_returned_fen"]) == (stacked, returned)
    assert snap["bill"]["master_enabled"] is False  # inhibited after power-up


def test_power_cycle_flags_need_a_bill(bus, clock):
    with pytest.raises(ControlError, match="no bill in escrow"):
        bus.control("power_cycle", {"device": "bill", "bill_in_escrow": True})

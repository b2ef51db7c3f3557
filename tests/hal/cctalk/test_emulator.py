"""The ccTalk bus emulator against the spec's worked examples (cctalk.md §1.3) and its rules.

Frames are written out byte for byte as in the notes; a tiny checksum helper here (not the
emulator's, not the driver codec's) proves each example adds up before the emulator sees it.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.emulators.cctalk import CcTalkBus


class Clock:
    """A hand-wound clock: the emulator sees ``now`` only through receive() and this."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def chk(*body: int) -> int:
    """§1.2: the byte that makes the sum of the packet 0 mod 256."""
    return (256 - sum(body) % 256) % 256


def frame(dest: int, src: int, header: int, *data: int) -> bytes:
    body = [dest, len(data), src, header, *data]
    return bytes(body + [chk(*body)])


def crc_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 15) ^ (byte >> bit & 1)
            crc = (crc << 1) & 0xFFFF
            if top:
                crc ^= 0x1021
    return crc


def decode(raw: bytes) -> tuple[int, int, int, bytes]:
    """Checks a simple-checksum reply and returns (dest, src, header, data)."""
    assert sum(raw) % 256 == 0, f"bad checksum in {list(raw)}"
    assert len(raw) == raw[1] + 5
    return raw[0], raw[2], raw[3], raw[4:-1]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def bus(clock):
    return CcTalkBus(clock=clock)


def ask(bus, clock, raw: bytes) -> bytes:
    return bus.receive(raw, clock.t)


def events(bus, clock, address: int, header: int) -> tuple[int, list[tuple[int, int]]]:
    _, _, hdr, data = decode(ask(bus, clock, frame(address, 1, header)))
    assert hdr == 0 and len(data) == 11  # §1.7: counter + 5 result pairs
    return data[0], [(data[i], data[i + 1]) for i in range(1, 11, 2)]


def enable_coins(bus, clock):
    assert ask(bus, clock, frame(2, 1, 231, 255, 255)) == bytes([1, 0, 2, 0, 253])
    assert ask(bus, clock, frame(2, 1, 228, 1)) == bytes([1, 0, 2, 0, 253])
    events(bus, clock, 2, 229)


def enable_bills(bus, clock):
    assert ask(bus, clock, frame(40, 1, 231, 255, 255)) == bytes([1, 0, 40, 0, 215])
    assert ask(bus, clock, bytes([40, 1, 1, 228, 1, 241])) == bytes([1, 0, 40, 0, 215])


# -- §1.3 worked examples, simple checksum --------------------------------------------------

SIMPLE_EXAMPLES = [
    ("simple poll", [2, 0, 1, 254, 255], [1, 0, 2, 0, 253]),
    ("serial number 12 345 678", [2, 0, 1, 242, 11], [1, 3, 2, 0, 78, 97, 188, 143]),
    ("enable all 16 coins", [2, 2, 1, 231, 255, 255, 22], [1, 0, 2, 0, 253]),
    ("equipment category", [2, 0, 1, 245, 8], [1, 13, 2, 0, *b"Coin Acceptor", 22]),
    ("comms revision 1.4.2", [2, 0, 1, 4, 249], [1, 3, 2, 0, 1, 4, 2, 243]),
    ("coin id, coin 1", [2, 1, 1, 184, 1, 67], [1, 6, 2, 0, *b"GB200A", 155]),
    ("poll credits at power-up", [2, 0, 1, 229, 24], [1, 11, 2, 0, *[0] * 11, 242]),
    ("bill validator idle poll", [40, 0, 1, 159, 56], [1, 11, 40, 0, *[0] * 11, 204]),
    ("master inhibit off (enable)", [40, 1, 1, 228, 1, 241], [1, 0, 40, 0, 215]),
]


@pytest.mark.parametrize("name,tx,rx", SIMPLE_EXAMPLES, ids=[e[0] for e in SIMPLE_EXAMPLES])
def test_worked_examples_simple_checksum(name, tx, rx, clock):
    assert sum(tx) % 256 == 0 and sum(rx) % 256 == 0  # the examples themselves add up
    bus = CcTalkBus(coins={1: 200}, country="GB", clock=clock)  # the spec's coin 1 is a GB 2-pound coin
    assert bus.receive(bytes(tx), clock.t) == bytes(rx)


def test_worked_examples_crc16(clock):
    # Appendix 9 verification vectors, so the test helper itself is trusted
    assert crc_xmodem(bytes([0x49, 0xD5, 0xF2])) == 0xA6B3
    assert crc_xmodem(bytes([0x70, 0xB8, 0xD9, 0x64, 0x04, 0x15])) == 0xFB00
    assert crc_xmodem(bytes([40, 0, 1])) == 0x3F46 and crc_xmodem(bytes([1, 0, 0])) == 0x3730
    bus = CcTalkBus(checksums={"bill": "crc16"}, clock=clock)
    assert bus.receive(bytes([40, 0, 182, 254, 33]), clock.t) == bytes([1, 0, 48, 0, 55])  # simple poll
    assert bus.receive(bytes([40, 0, 70, 1, 63]), clock.t) == bytes([1, 0, 48, 0, 55])  # reset
    # the coin acceptor on the same bus still speaks the simple checksum
    assert bus.receive(bytes([2, 0, 1, 254, 255]), clock.t) == bytes([1, 0, 2, 0, 253])


def test_route_bill_to_stacker_example(bus, clock):
    enable_bills(bus, clock)
    assert bus.control("insert_bill", {"value": 2000}) == "escrow"
    assert events(bus, clock, 40, 159) == (1, [(4, 1), (0, 0), (0, 0), (0, 0), (0, 0)])  # type 4 pending
    assert ask(bus, clock, bytes([40, 1, 1, 154, 1, 59])) == bytes([1, 0, 40, 0, 215])  # §1.3 route, ACK
    assert events(bus, clock, 40, 159) == (2, [(4, 0), (4, 1), (0, 0), (0, 0), (0, 0)])  # credit newest
    assert bus.snapshot()["bills_stacked_fen"] == 2000


def test_hopper_answers_at_address_3_as_payout(bus, clock):
    _, src, _, data = decode(ask(bus, clock, frame(3, 1, 245)))
    assert (src, data) == (3, b"Payout")
    _, src, _, data = decode(ask(bus, clock, frame(40, 1, 245)))
    assert (src, data) == (40, b"Bill Validator")


# -- silence (§1.5) -------------------------------------------------------------------------

def test_silent_on_bad_checksum_unknown_header_and_unknown_address(bus, clock):
    good = frame(2, 1, 254)
    assert ask(bus, clock, good[:-1] + bytes([good[-1] ^ 0x01])) == b""
    assert ask(bus, clock, frame(2, 1, 200)) == b""  # header 200 is not something a coin acceptor does
    assert ask(bus, clock, frame(7, 1, 254)) == b""  # nobody lives at address 7
    assert ask(bus, clock, good) == bytes([1, 0, 2, 0, 253])  # still in step after all that
    snap = bus.snapshot()
    assert (snap["bad_checksum"], snap["unanswered"], snap["not_ours"]) == (1, 1, 1)


def test_reply_goes_back_to_the_source_address(bus, clock):
    dest, src, hdr, data = decode(ask(bus, clock, frame(2, 9, 254)))
    assert (dest, src, hdr, data) == (9, 2, 0, b"")


def test_a_50ms_gap_discards_a_partial_frame(bus, clock):
    assert ask(bus, clock, bytes([2, 0, 1])) == b""  # a poll cut short
    clock.t += 0.060
    assert ask(bus, clock, frame(2, 1, 254)) == bytes([1, 0, 2, 0, 253])


def test_without_a_gap_the_partial_frame_swallows_the_next(bus, clock):
    assert ask(bus, clock, bytes([2, 0, 1])) == b""
    clock.t += 0.010
    assert ask(bus, clock, frame(2, 1, 254)) == b""  # byte counting put the frame boundary elsewhere


def test_any_chunking_gives_the_same_answers(bus, clock):
    wire = frame(2, 1, 254) + frame(40, 1, 245)
    out = b"".join(ask(bus, clock, wire[i : i + 1]) for i in range(len(wire)))
    assert out == bytes([1, 0, 2, 0, 253]) + frame(1, 40, 0, *b"Bill Validator")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.floats(0, 0.2)), max_size=20))
def test_arbitrary_bytes_never_raise(chunks):
    clock = Clock()
    bus = CcTalkBus(clock=clock)
    for data, dt in chunks:
        clock.t += dt
        out = bus.receive(data, clock.t)
        if out:
            assert sum(out) % 256 == 0


# -- echo (§1.1) ----------------------------------------------------------------------------

def test_echo_sends_the_hosts_bytes_back_before_the_reply(clock):
    bus = CcTalkBus(echo=True, clock=clock)
    poll = frame(2, 1, 254)
    assert bus.receive(poll, clock.t) == poll + bytes([1, 0, 2, 0, 253])
    assert bus.receive(frame(5, 1, 254), clock.t) == frame(5, 1, 254)  # echoed even when nobody answers
    bus.control("set_echo", {"on": False})
    assert bus.receive(poll, clock.t) == bytes([1, 0, 2, 0, 253])


# -- coin acceptor ---------------------------------------------------------------------------

def test_coin_credit_and_inhibited_coin(bus, clock):
    enable_coins(bus, clock)
    assert bus.control("insert_coin", {"value": 100}) == "accepted"
    assert ask(bus, clock, frame(2, 1, 231, 0b011, 0)) == bytes([1, 0, 2, 0, 253])  # coin 3 inhibited
    assert bus.control("insert_coin", {"coin_id": "CN100A"}) == "inhibited"
    assert bus.control("insert_coin", {"value": 7}) == "rejected"  # no such coin: reject, no match
    assert bus.control("reject_coin", {}) == "rejected"
    counter, results = events(bus, clock, 2, 229)
    assert counter == 4
    assert results == [(0, 1), (0, 1), (0, 2), (3, 0), (0, 0)]  # newest first
    assert bus.snapshot()["coins_accepted_fen"] == 100  # the inhibited coin earned nothing
    assert decode(ask(bus, clock, frame(2, 1, 230)))[3] == bytes([0b011, 0])


def test_coin_acceptor_self_inhibits_when_not_polled_for_a_second(bus, clock):
    enable_coins(bus, clock)
    clock.t += 1.5
    assert bus.snapshot()["coin"]["self_inhibited"]
    assert bus.control("insert_coin", {"value": 50}) == "inhibited"
    events(bus, clock, 2, 229)  # polling resumes: so does acceptance, by itself
    assert bus.control("insert_coin", {"value": 50}) == "accepted"
    assert events(bus, clock, 2, 229)[1][:2] == [(2, 0), (0, 2)]
    assert bus.snapshot()["coins_accepted_fen"] == 50


def test_master_inhibit_rejects_coins(bus, clock):
    enable_coins(bus, clock)
    assert ask(bus, clock, frame(2, 1, 228, 0)) == bytes([1, 0, 2, 0, 253])  # b0 = 0: inhibited
    assert decode(ask(bus, clock, frame(2, 1, 227)))[3] == b"\x00"
    assert bus.control("insert_coin", {"value": 10}) == "inhibited"


def test_event_counter_wraps_from_255_to_1_never_0(bus, clock):
    enable_coins(bus, clock)
    assert bus.control("drop_events", {"device": "coin", "count": 254}) == 254
    bus.control("insert_coin", {"value": 10})
    assert events(bus, clock, 2, 229) == (255, [(1, 0), (0, 0), (0, 0), (0, 0), (0, 0)])
    bus.control("insert_coin", {"value": 50})
    assert events(bus, clock, 2, 229) == (1, [(2, 0), (1, 0), (0, 0), (0, 0), (0, 0)])


def test_lost_events_advance_the_counter_without_results(bus, clock):
    enable_coins(bus, clock)
    bus.control("insert_coin", {"value": 10})
    bus.control("drop_events", {"device": "coin", "count": 6})
    bus.control("insert_coin", {"value": 100})
    counter, results = events(bus, clock, 2, 229)
    assert counter == 8  # a jump of 8 with only 2 results behind it: at least 3 events were lost
    assert results[:2] == [(3, 0), (1, 0)]


def test_reset_acks_then_forgets_counter_and_inhibits(bus, clock):
    enable_coins(bus, clock)
    bus.control("insert_coin", {"value": 10})
    assert ask(bus, clock, frame(2, 1, 1)) == bytes([1, 0, 2, 0, 253])
    assert events(bus, clock, 2, 229) == (0, [(0, 0)] * 5)
    assert bus.control("insert_coin", {"value": 10}) == "inhibited"  # inhibited again after reset


def test_coin_fraud_and_power_cycle(bus, clock):
    enable_coins(bus, clock)
    bus.control("fraud", {"device": "coin"})
    assert events(bus, clock, 2, 229)[1][0] == (0, 20)  # Table 2: C.O.S. mechanism activated
    bus.control("power_cycle", {"device": "coin"})
    assert events(bus, clock, 2, 229)[0] == 0
    assert bus.snapshot()["coin"]["master_enabled"] is False


def test_a_silenced_validator_stacks_on_the_route_it_acks_then_loses_its_replies_for_a_while(bus, clock):
    enable_bills(bus, clock)
    bus.control("silence", {"device": "bill", "seconds": 1.0, "after_header": 154})
    assert bus.control("insert_bill", {"value": 2000}) == "escrow"
    events(bus, clock, 40, 159)  # answered: the silence waits for the route
    assert ask(bus, clock, bytes([40, 1, 1, 154, 1, 59])) == bytes([1, 0, 40, 0, 215])  # ACKed, then busy
    assert ask(bus, clock, frame(40, 1, 159)) == b"" and ask(bus, clock, frame(2, 1, 254)) != b""
    assert bus.snapshot()["bills_stacked_fen"] == 2000 and bus.snapshot()["lost"] == 1  # it acted all the same
    clock.t += 1.0
    assert events(bus, clock, 40, 159)[1][0] == (4, 0)  # the late Stacked
    assert bus.snapshot()["silenced"] == []


def test_a_silence_by_count_and_header_loses_only_those_replies(bus, clock):
    bus.control("silence", {"device": "hopper", "count": 2, "header": 166})
    assert ask(bus, clock, frame(3, 1, 254)) != b""  # another header still answers
    assert ask(bus, clock, frame(3, 1, 166)) == b"" and ask(bus, clock, frame(3, 1, 166)) == b""
    assert ask(bus, clock, frame(3, 1, 166)) != b""

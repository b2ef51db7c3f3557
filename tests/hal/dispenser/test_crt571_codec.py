"""The CRT-571/591 0xF2 codec against the worked frames of card-dispensers.md §4.2, and fuzzed."""
import pytest
from hypothesis import given, settings, strategies as st

from hal.protocols.crt571 import (
    Ack,
    BadFrame,
    Command,
    Crt571Codec,
    Crt571Error,
    Nak,
    Negative,
    Positive,
    bcc,
    encode,
)

# §4.2 "Examples (BCC verified)"
WORKED = [
    (0x30, 0x33, "F2 00 00 03 43 30 33 03 B2"),  # init, do not move
    (0x31, 0x30, "F2 00 00 03 43 31 30 03 B0"),  # status
    (0x31, 0x31, "F2 00 00 03 43 31 31 03 B1"),  # sensors
    (0x32, 0x32, "F2 00 00 03 43 32 32 03 B1"),  # move to RF
    (0x32, 0x33, "F2 00 00 03 43 32 33 03 B0"),  # capture to bin
    (0x32, 0x30, "F2 00 00 03 43 32 30 03 B3"),
    (0x32, 0x39, "F2 00 00 03 43 32 39 03 BA"),
]


@pytest.mark.parametrize("cm,pm,wire", WORKED)
def test_commands_match_the_worked_frames(cm, pm, wire):
    assert encode(0, Command(cm, pm)) == bytes.fromhex(wire)


def reply(text: bytes, address: int = 0) -> bytes:
    body = bytes([0xF2, address, len(text) >> 8, len(text) & 0xFF]) + text + b"\x03"
    return body + bytes([bcc(body)])


def test_ack_then_positive_status_reply_in_any_chunking():
    wire = b"\x06" + reply(b"P10" + b"012")
    codec = Crt571Codec()
    for i, byte in enumerate(wire):
        codec.feed(bytes([byte]), now=i * 0.001)
    assert codec.events() == [Ack(), Positive(0, 0x31, 0x30, "0", "1", "2", b"")]


def test_negative_reply_carries_the_two_digit_error_code():
    codec = Crt571Codec()
    codec.feed(reply(b"N2" + b"0" + b"10"))
    assert codec.events() == [Negative(0, 0x32, 0x30, "10", b"")]


def test_a_flipped_bcc_is_a_bad_frame_and_the_next_frame_still_parses():
    good = reply(b"P10002")
    bad = good[:-1] + bytes([good[-1] ^ 1])
    codec = Crt571Codec()
    codec.feed(bad + b"\x15" + good)
    events = codec.events()
    assert isinstance(events[0], BadFrame) and events[0].reason == "bad BCC"
    assert events[1:] == [Nak(), Positive(0, 0x31, 0x30, "0", "0", "2", b"")]


def test_a_reply_from_another_unit_on_the_chain_is_not_ours():
    codec = Crt571Codec(address=3)
    codec.feed(reply(b"P10002", address=4) + reply(b"P10002", address=3))
    events = codec.events()
    assert isinstance(events[0], BadFrame) and "unit 4" in events[0].reason
    assert events[1] == Positive(3, 0x31, 0x30, "0", "0", "2", b"")


def test_a_half_frame_older_than_the_gap_is_dropped():
    good = reply(b"P10002")
    codec = Crt571Codec(gap=0.1)
    codec.feed(good[:5], now=0.0)
    codec.feed(good, now=1.0)
    events = codec.events()
    assert events[0] == BadFrame("incomplete", good[:5])
    assert events[1] == Positive(0, 0x31, 0x30, "0", "0", "2", b"")


def test_commands_that_cannot_be_framed_raise_the_codec_error():
    with pytest.raises(Crt571Error):
        encode(16, Command(0x31, 0x30))
    with pytest.raises(Crt571Error):
        encode(0, Command(0x31, 0x30, bytes(513)))


@given(st.integers(0, 15), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64))
def test_every_encoded_frame_has_a_valid_bcc_and_length(address, cm, pm, data):
    frame = encode(address, Command(cm, pm, data))
    assert frame[0] == 0xF2 and frame[-2] == 0x03
    assert bcc(frame[:-1]) == frame[-1]
    assert int.from_bytes(frame[2:4], "big") == 3 + len(data) == len(frame) - 6


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=10))
def test_arbitrary_bytes_only_ever_become_events(noise, cuts):
    codec = Crt571Codec()
    pos = 0
    for n, cut in enumerate(cuts + [len(noise)]):
        codec.feed(noise[pos : pos + cut], now=n * 0.01)
        pos += cut
    codec.events()
    # and the codec still understands a good reply afterwards
    codec.feed(b"", now=100.0)  # stale partial frames expire
    codec.events()
    codec.feed(reply(b"P10012"), now=100.0)
    assert codec.events()[-1] == Positive(0, 0x31, 0x30, "0", "1", "2", b"")

"""The K720/K750 codec against the worked frames of card-dispensers.md §4.3, and fuzzed."""
import pytest
from hypothesis import given, settings, strategies as st

from hal.protocols.k720 import (
    Ack,
    ApStatus,
    BadFrame,
    K720Codec,
    K720Error,
    Nak,
    Negative,
    Positive,
    Status,
    bcc,
    encode,
)

# §4.3 "Examples (verified)"
WORKED = [
    (b"AP", "02 30 30 00 02 41 50 03 12"),
    (b"DC", "02 30 30 00 02 44 43 03 04"),
    (b"FC7", "02 30 30 00 03 46 43 37 03 30"),
    (b"CP", "02 30 30 00 02 43 50 03 10"),
]


@pytest.mark.parametrize("payload,wire", WORKED)
def test_commands_match_the_worked_frames(payload, wire):
    assert encode(0, payload) == bytes.fromhex(wire)


def test_the_idle_status_reply_means_no_flags():
    codec = K720Codec()
    codec.feed(bytes.fromhex("02 30 30 00 06 53 46 30 30 30 30 03 12"))
    (event,) = codec.events()
    assert event == Status(0, "0000") and event.ap() == ApStatus()


def test_the_empty_box_reply_sets_only_the_empty_flag():
    codec = K720Codec()
    codec.feed(bytes.fromhex("02 30 30 00 06 53 46 30 30 30 38 03 1A"))
    (event,) = codec.events()
    assert event.ap() == ApStatus(empty=True)


def test_flag_digits_map_to_the_table_of_section_4_3():
    assert ApStatus.from_digits("8000") == ApStatus(bin_full=True)
    assert ApStatus.from_digits("0200") == ApStatus(dispense_error=True)
    assert ApStatus.from_digits("0020") == ApStatus(jam=True)
    assert ApStatus.from_digits("0010") == ApStatus(pre_empty=True)
    assert ApStatus.from_digits("0004") == ApStatus(sensor3=True)
    assert ApStatus.from_digits("0003").card_in_channel
    with pytest.raises(K720Error):
        ApStatus.from_digits("00G0")


def test_ack_and_nak_carry_the_ascii_address():
    codec = K720Codec(address=12)
    codec.feed(b"\x06" + b"12" + b"\x15" + b"12")
    assert codec.events() == [Ack(12), Nak(12)]
    assert codec.enq() == b"\x0512"


def test_an_ack_whose_address_was_corrupted_is_not_an_ack():
    codec = K720Codec(address=0)
    codec.feed(b"\x06\x30\x31")
    (event,) = codec.events()
    assert isinstance(event, BadFrame)


def frame(text: bytes, address: bytes = b"00") -> bytes:
    body = b"\x02" + address + len(text).to_bytes(2, "big") + text + b"\x03"
    return body + bytes([bcc(body)])


def test_positive_and_negative_replies():
    codec = K720Codec()
    codec.feed(frame(b"PGVK720 V1") + frame(b"NDC\x04"))
    assert codec.events() == [Positive(0, ord("G"), ord("V"), b"K720 V1"), Negative(0, ord("D"), ord("C"), 0x04)]


def test_the_error_code_is_one_byte_as_the_protocol_document_frames_it():
    """K7X0 protocol document: 02 ADDH ADDL 00 04 'N' CM PM ERR_CD 03 BCC (RELEN 4, so ERR_CD is one
    byte), error 0x00 = undefined command. For ZZ at unit 00, BCC worked by hand: 02^30^30^00^04^4E
    ^5A^5A^00^03 = 4B."""
    codec = K720Codec()
    codec.feed(bytes.fromhex("02 30 30 00 04 4E 5A 5A 00 03 4B"))
    (event,) = codec.events()
    assert event == Negative(0, 0x5A, 0x5A, 0x00) and event.meaning == "undefined command"
    assert Negative(0, 0x44, 0x43, 0x99).meaning == "not in the error table"


def test_a_flipped_bcc_is_a_bad_frame():
    good = frame(b"SF0000")
    codec = K720Codec()
    codec.feed(good[:-1] + bytes([good[-1] ^ 1]) + good)
    events = codec.events()
    assert events[0].reason == "bad BCC" and events[1] == Status(0, "0000")


def test_commands_that_cannot_be_framed_raise_the_codec_error():
    with pytest.raises(K720Error):
        encode(16, b"AP")
    with pytest.raises(K720Error):
        encode(0, b"A")


@given(st.integers(0, 15), st.binary(min_size=2, max_size=100))
def test_every_encoded_frame_is_well_formed(address, payload):
    wire = encode(address, payload)
    assert wire[1:3] == f"{address:02d}".encode()
    assert bcc(wire[:-1]) == wire[-1] and wire[-2] == 0x03
    assert int.from_bytes(wire[3:5], "big") == len(payload) == len(wire) - 7


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=10))
def test_arbitrary_bytes_only_ever_become_events(noise, cuts):
    codec = K720Codec()
    pos = 0
    for n, cut in enumerate(cuts + [len(noise)]):
        codec.feed(noise[pos : pos + cut], now=n * 0.01)
        pos += cut
    codec.events()
    codec.feed(b"", now=100.0)
    codec.events()
    codec.feed(frame(b"SF0010"), now=100.0)
    assert codec.events()[-1] == Status(0, "0010")

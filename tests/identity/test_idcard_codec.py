"""The ID card reader codec against the frames of the reader notes §3, and fuzzed."""
import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from hal.protocols.idcard import (
    FIND, NATIONS, READ_BASE, RESET_SAM, SAM_ID, SAM_STATUS, SELECT, BadFrame, IdCardCodec, IdCardError,
    IdText, Reply, check_digit, encode, mask_id_number, mask_name, parse_text, problems, split_base_info,
)

# §3.2 "Commands with full frames (checksums verified)"
COMMANDS = [
    (RESET_SAM, b"", "AA AA AA 96 69 00 03 10 FF EC"),
    (SAM_STATUS, b"", "AA AA AA 96 69 00 03 11 FF ED"),
    (SAM_ID, b"", "AA AA AA 96 69 00 03 12 FF EE"),
    (FIND, b"", "AA AA AA 96 69 00 03 20 01 22"),
    (SELECT, b"", "AA AA AA 96 69 00 03 20 02 21"),
    (READ_BASE, b"", "AA AA AA 96 69 00 03 30 01 32"),
    ((0x30, 0x10), b"", "AA AA AA 96 69 00 03 30 10 23"),
    ((0x61, 0xFF), b"\x50", "AA AA AA 96 69 00 04 61 FF 50 CA"),
]


@pytest.mark.parametrize("command,data,wire", COMMANDS)
def test_commands_match_the_frames_of_section_3_2(command, data, wire):
    assert encode(command, data) == bytes.fromhex(wire)


# §3.3 example response frames
RESPONSES = [
    ("AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97", Reply(0, 0, 0x9F, bytes(4))),
    ("AA AA AA 96 69 00 04 00 00 80 84", Reply(0, 0, 0x80)),
    ("AA AA AA 96 69 00 0C 00 00 90 00 00 00 00 00 00 00 00 9C", Reply(0, 0, 0x90, bytes(8))),
    ("AA AA AA 96 69 00 04 00 00 81 85", Reply(0, 0, 0x81)),
    ("AA AA AA 96 69 00 04 00 00 41 45", Reply(0, 0, 0x41)),
    ("AA AA AA 96 69 00 04 00 00 90 94", Reply(0, 0, 0x90)),
]


@pytest.mark.parametrize("wire,reply", RESPONSES)
def test_the_example_responses_of_section_3_3(wire, reply):
    codec = IdCardCodec()
    codec.feed(bytes.fromhex(wire))
    assert codec.events() == [reply]


def text_block(**fields: str) -> bytes:
    """Built by hand from the §3.4 table, field by field."""
    layout = [("name", 30), ("gender", 2), ("nation", 4), ("birth", 16), ("address", 70),
              ("id_number", 36), ("authority", 30), ("valid_from", 16), ("valid_to", 16), ("", 36)]
    out = b""
    for name, size in layout:
        raw = fields.get(name, "").encode("utf-16-le")
        out += raw + b"\x20\x00" * ((size - len(raw)) // 2)
    assert len(out) == 256
    return out


def base_info_frame(text: bytes, photo: bytes) -> bytes:
    """§3.3: AA AA AA 96 69 05 08 00 00 90 01 00 04 00 + 256 text + 1024 photo + CHK."""
    body = bytes.fromhex("05 08 00 00 90 01 00 04 00") + text + photo
    chk = 0
    for b in body:
        chk ^= b
    return bytes.fromhex("AA AA AA 96 69") + body + bytes([chk])


SAMPLE = dict(name="张三", gender="1", nation="01", birth="19491231", address="北京市西城区",
              id_number="11010519491231002X", authority="北京市公安局西城分局",
              valid_from="20200101", valid_to="长期")


def test_a_base_info_reply_is_1295_bytes_with_text_at_14_and_photo_at_270():
    photo = bytes(range(256)) * 4
    frame = base_info_frame(text_block(**SAMPLE), photo)
    assert len(frame) == 1295 and frame[14:270] == text_block(**SAMPLE) and frame[270:1294] == photo
    codec = IdCardCodec()
    for i in range(0, len(frame), 100):  # any chunking
        codec.feed(frame[i: i + 100])
    (reply,) = codec.events()
    info = split_base_info(reply.data)
    assert info.photo == photo
    text = parse_text(info.text)
    assert text == IdText(**SAMPLE)
    assert text.nation_name == "汉" and text.gender_name == "男"


def test_fingerprint_reply_lengths_are_split_by_the_third_length_field():
    data = bytes.fromhex("01 00 04 00 02 00") + text_block(**SAMPLE) + bytes(1024) + b"\x01" * 512
    info = split_base_info(data, with_fingerprint=True)
    assert len(info.fingerprint) == 512
    with pytest.raises(IdCardError):
        split_base_info(data[:-1], with_fingerprint=True)


def test_the_nation_table_names_46_correctly():
    assert NATIONS["46"] == "德昂" and NATIONS["98"] == "外国血统中国籍人士" and len(NATIONS) == 58


def test_check_digit_of_the_standards_sample():
    assert check_digit("11010519491231002") == "X"  # §3.6 worked example, S = 167


@pytest.mark.parametrize("number,expected", [
    ("11010519491231002X", []),
    ("110105194912310021", ["bad_check_digit"]),
    ("11010519491231002", ["bad_id_number"]),
    ("1101051949123100AX", ["bad_id_number"]),
])
def test_id_numbers(number, expected):
    card = IdText(**dict(SAMPLE, id_number=number))
    assert problems(card, dt.date(2024, 5, 1)) == expected


def test_validity_against_the_kiosks_date():
    card = IdText(**dict(SAMPLE, valid_from="20140101", valid_to="20240101"))
    assert problems(card, dt.date(2024, 1, 1)) == []  # the last day is still valid
    assert problems(card, dt.date(2024, 1, 2)) == ["expired"]
    assert problems(card, dt.date(2013, 12, 31)) == ["not_yet_valid"]
    assert problems(IdText(**SAMPLE), dt.date(2099, 1, 1)) == []  # 长期 never expires
    assert problems(IdText(**dict(SAMPLE, valid_to="20241340")), dt.date(2024, 1, 1)) == ["bad_dates"]


def test_masks():
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_name("张三") == "张*" and mask_name("欧阳娜娜") == "欧***" and mask_name("张") == "张*"


def test_garbage_before_a_frame_is_noise_and_the_frame_still_parses():
    codec = IdCardCodec()
    codec.feed(b"\x00\xff\xaa\xaa" + bytes.fromhex("AA AA AA 96 69 00 04 00 00 80 84"))
    events = codec.events()
    assert isinstance(events[0], BadFrame) and events[-1] == Reply(0, 0, 0x80)


def test_a_bad_checksum_drops_the_frame_and_resyncs_on_the_next():
    good = bytes.fromhex("AA AA AA 96 69 00 04 00 00 90 94")
    codec = IdCardCodec()
    codec.feed(good[:-1] + b"\x95" + good)
    events = codec.events()
    assert events[0].reason == "bad checksum" and events[-1] == Reply(0, 0, 0x90)


def test_a_garbled_length_does_not_swallow_the_next_frame():
    good = bytes.fromhex("AA AA AA 96 69 00 04 00 00 90 94")
    codec = IdCardCodec()
    codec.feed(bytes.fromhex("AA AA AA 96 69 FF FF 00") + good)
    events = codec.events()
    assert events[0].reason.startswith("bad length") and events[-1] == Reply(0, 0, 0x90)
    # a plausible but wrong length: the frame is incomplete until the gap passes
    codec.feed(bytes.fromhex("AA AA AA 96 69 00 40 00 00 90"), now=1.0)
    assert codec.events() == []
    codec.feed(good, now=2.0)
    events = codec.events()
    assert events[0].reason == "incomplete frame" and events[-1] == Reply(0, 0, 0x90)


def test_malformed_text_raises_the_codec_error():
    with pytest.raises(IdCardError):
        parse_text(b"\x20\x00" * 100)
    with pytest.raises(IdCardError):
        split_base_info(bytes.fromhex("00 10 04 00") + bytes(16 + 1024))
    with pytest.raises(IdCardError):
        parse_text(b"\x00\xd8" * 128)  # lone surrogates are not UCS-2 text


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(1, 60), max_size=10))
def test_arbitrary_bytes_only_ever_become_events(noise, cuts):
    codec = IdCardCodec()
    pos = 0
    for n, cut in enumerate(cuts + [len(noise)]):
        codec.feed(noise[pos: pos + cut], now=n * 0.01)
        pos += cut
    codec.events()
    codec.feed(b"", now=100.0)
    codec.events()
    codec.feed(bytes.fromhex("AA AA AA 96 69 00 04 00 00 80 84"), now=100.0)
    assert codec.events()[-1] == Reply(0, 0, 0x80)

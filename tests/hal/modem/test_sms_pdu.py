"""SMS-SUBMIT PDUs pinned by the worked examples of notes gsm-sms-pdu.md §6.2, then fuzzed."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.protocols.sms_pdu import (
    GSM7_BASIC,
    PduError,
    decode_submit,
    encode_address,
    encode_sms,
    reassemble,
)

TO = "+8613800138000"


def test_ucs2_with_four_day_validity_matches_the_worked_example():
    [pdu] = encode_sms(TO, "你好")
    assert pdu.hex == "0011000D91683108108300F00008AA044F60597D"
    assert pdu.tpdu_length == 19  # AT+CMGS=19


def test_ucs2_without_validity_matches_the_worked_example():
    [pdu] = encode_sms(TO, "你好", validity=None)
    assert pdu.hex == "0001000D91683108108300F00008044F60597D"
    assert pdu.tpdu_length == 18


def test_part_one_of_two_with_reference_0x2a_decodes_as_the_worked_example_says():
    submit = decode_submit(bytes.fromhex("0051000D91683108108300F00008AA0A0500032A02014F60597D"))
    assert submit.number == TO and submit.text == "你好"
    assert submit.concat == (0x2A, 2, 1) and submit.validity == 0xAA


def test_a_long_text_part_carries_the_udh_byte_for_byte_like_the_worked_example():
    text = "你好" + "测" * 69  # 71 UCS2 chars: one more than a single part holds
    pdus = encode_sms(TO, text, concat_ref=0x2A)
    assert len(pdus) == 2
    # header of part 1 up to the UDH is exactly the worked example's
    assert pdus[0].hex.startswith("0051000D91683108108300F00008AA8C0500032A0201" + "4F60597D")
    # FO, MR, DA (2 + 7), PID, DCS, VP, UDL, then UD = 6 octets UDH + 67 chars x 2 = 140 (0x8C)
    assert pdus[0].tpdu_length == 1 + 1 + 9 + 1 + 1 + 1 + 1 + 140


def test_plain_ascii_goes_as_packed_gsm7_septets():
    [pdu] = encode_sms(TO, "hellohello")
    # the classic TS 23.038 packing example: "hellohello" -> E8329BFD4697D9EC37, UDL 10 septets
    assert pdu.hex.endswith("0000AA0AE8329BFD4697D9EC37")


def test_number_encoding_swaps_nibbles_and_pads_odd_lengths_with_f():
    assert encode_address("+8613800138000").hex().upper() == "0D91683108108300F0"
    assert encode_address("10086").hex().upper() == "05810180F6"
    with pytest.raises(PduError):
        encode_address("+86 138 abc")
    with pytest.raises(PduError):
        encode_address("")


@pytest.mark.parametrize("length", [70, 71, 134, 135, 136, 201, 202])
def test_ucs2_part_count_is_ceil_of_len_over_67_and_no_character_is_lost(length):
    text = "".join(chr(0x4E00 + i % 500) for i in range(length))
    pdus = encode_sms(TO, text, concat_ref=7)
    expected = 1 if length <= 70 else math.ceil(length / 67)
    assert len(pdus) == expected
    parts = [decode_submit(p.data) for p in pdus]
    assert reassemble(parts) == text
    assert all(p.concat == (7, expected, i + 1) for i, p in enumerate(parts)) or expected == 1


def test_gsm7_long_text_splits_at_153_septets_and_never_splits_an_escape():
    text = "a" * 152 + "€" + "b" * 10  # € costs two septets: it must move whole into part 2
    pdus = encode_sms(TO, text)
    parts = [decode_submit(p.data) for p in pdus]
    assert [len(p.text) for p in parts] == [152, 11]
    assert reassemble(parts) == text


def test_surrogate_pairs_stay_in_one_part():
    text = "字" * 66 + "😀" + "尾" * 3  # 72 UTF-16 units: two parts, the pair would straddle 67
    parts = [decode_submit(p.data) for p in encode_sms(TO, text)]
    assert parts[0].text == "字" * 66 and parts[1].text.startswith("😀")
    assert reassemble(parts) == text


@given(st.text(max_size=400), st.integers(0, 255))
@settings(max_examples=150, deadline=None)
def test_any_text_round_trips(text, ref):
    pdus = encode_sms(TO, text, concat_ref=ref)
    assert all(p.tpdu_length <= 164 for p in pdus)
    parts = [decode_submit(p.data) for p in pdus]
    assert reassemble(parts) == text


@given(st.text(alphabet=GSM7_BASIC.replace("\x1b", "") + "^{}\\[~]|€", max_size=400))
@settings(max_examples=100, deadline=None)
def test_gsm7_texts_stay_gsm7_and_round_trip(text):
    parts = [decode_submit(p.data) for p in encode_sms(TO, text)]
    assert all(p.dcs == 0 for p in parts)
    assert reassemble(parts) == text


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_raise_nothing_but_pdu_error(data):
    try:
        decode_submit(data)
    except PduError:
        pass

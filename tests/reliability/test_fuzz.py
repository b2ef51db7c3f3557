"""Fuzzing, bounded for ./dev test: every codec and parser (tests/reliability/fuzz_targets.py) on
random and mutated input raises nothing but its declared error; codecs that encode round-trip;
stream codecs find the next good frame after garbage and a pause. bench/fuzz.py runs the same
targets a million inputs each (docs/reliability.md "Fuzzing")."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal.protocols import at, cctalk, crt571, idcard, k720, sms_pdu, usim

from .fuzz_targets import TARGETS, _crt571_reply, _idcard_reply, _k720_reply

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes overwritten, inserted or cut (or, without seeds, plain bytes)."""
    if not seeds or draw(st.booleans()):
        return draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        at_ = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(("set", "insert", "cut")))
        if how == "set" and at_ < len(data):
            data[at_] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at_:at_] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at_:at_ + draw(st.integers(1, 8))]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_any_input_raises_nothing_but_the_declared_error(name):
    target = TARGETS[name]

    @FUZZ
    @given(mutated(target.seeds))
    def run(data):
        target.one(data)
    for seed in target.seeds:
        target.one(seed)
    run()


# -- round trips ----------------------------------------------------------------------------------

@FUZZ
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=252),
       st.sampled_from(("simple", "crc16")))
def test_cctalk_frames_round_trip(dest, src, header, data, checksum):
    frame = cctalk.encode_frame(dest, src, header, data, checksum)
    assert cctalk.decode_frame(frame, checksum) == (dest, src if checksum == "simple" else None, header, data)


@FUZZ
@given(st.integers(0, 15), st.integers(0, 255), st.integers(0, 255), st.binary(min_size=3, max_size=3),
       st.binary(max_size=100))
def test_crt571_reply_layout_decodes_to_its_fields(address, cm, pm, st_bytes, data):
    st_text = bytes(b % 10 + 0x30 for b in st_bytes)
    codec = crt571.Crt571Codec(address)
    codec.feed(_crt571_reply(bytes([ord("P"), cm, pm]) + st_text + data, address))
    assert codec.events() == [crt571.Positive(address, cm, pm, *st_text.decode(), data)]


@FUZZ
@given(st.integers(0, 15), st.integers(0x20, 0x7E), st.integers(0x20, 0x7E), st.binary(max_size=100))
def test_k720_reply_layout_decodes_to_its_fields(address, cm, pm, data):
    codec = k720.K720Codec(address)
    text = bytes([ord("P"), cm, pm]) + data
    codec.feed(_k720_reply(text, address))
    [event] = codec.events()
    if text[:2] == b"SF":  # "SF" is the status reply's text, a different frame by design
        return
    assert event == k720.Positive(address, cm, pm, data)


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=300))
def test_idcard_reply_layout_decodes_to_its_fields(sw3, data):
    codec = idcard.IdCardCodec()
    codec.feed(_idcard_reply(sw3, data))
    assert codec.events() == [idcard.Reply(0, 0, sw3, data)]


@settings(FUZZ, max_examples=40)
@given(st.from_regex(r"\+?86?1[3-9][0-9]{9}", fullmatch=True), st.text(max_size=300), st.integers(0, 255))
def test_sms_pdus_round_trip_to_the_text(number, text, ref):
    parts = [sms_pdu.decode_submit(p.data) for p in sms_pdu.encode_sms(number, text, concat_ref=ref)]
    assert sms_pdu.reassemble(parts) == text and {p.number for p in parts} == {number}


@FUZZ
@given(st.from_regex(r"[0-9]{6,15}", fullmatch=True))
def test_imsi_round_trips(imsi):
    assert usim.dec_imsi(usim.enc_imsi(imsi)) == imsi


@FUZZ
@given(st.binary(max_size=20))
def test_nibble_swap_round_trips(data):
    assert usim.swap_nibbles(usim.unswap(data)) == data


def test_non_hex_nibbles_and_non_ascii_digits_are_the_codecs_error_not_a_crash():
    """Found by the fuzzer: int('²', 16) inside swap_nibbles raised a bare ValueError."""
    with pytest.raises(usim.UsimCodingError):
        usim.swap_nibbles("h9")
    with pytest.raises(usim.UsimCodingError):
        usim.enc_imsi("46000123456789²")


# -- resync: garbage, a pause, then a good frame is found ------------------------------------------

def _settle(codec, frame: bytes, garbage: bytes) -> list:
    codec.feed(garbage, 0.0)
    codec.feed(frame, 1.0)
    events = codec.events()
    for i in range(2, 40):  # pauses drop what garbage left half-read (a frame hidden behind it too)
        codec.feed(b"", float(i))
        events += codec.events()
    return events


@FUZZ
@given(st.binary(max_size=64))
def test_cctalk_finds_the_reply_after_garbage_and_the_50_ms_gap(garbage):
    codec = cctalk.CcTalkCodec(echo=False)
    codec.feed(garbage, 0.0)
    list(codec.replies())
    codec.feed(cctalk.encode_frame(1, 2, 0, b"\x07", "simple"), 1.0)
    assert list(codec.replies())[-1] == cctalk.Reply(1, 2, 0, b"\x07")


@FUZZ
@given(st.binary(max_size=64))
def test_crt571_finds_the_reply_after_garbage_and_a_pause(garbage):
    good = crt571.Positive(0, 0x31, 0x30, "0", "0", "0", b"")
    assert good in _settle(crt571.Crt571Codec(0), _crt571_reply(b"P10000"), garbage)


@FUZZ
@given(st.binary(max_size=64))
def test_k720_finds_the_reply_after_garbage_and_a_pause(garbage):
    assert k720.Positive(0, ord("D"), ord("C"), b"") in _settle(k720.K720Codec(0), _k720_reply(b"PDC"), garbage)


@FUZZ
@given(st.binary(max_size=64))
def test_idcard_finds_the_reply_after_garbage_and_a_pause(garbage):
    assert idcard.Reply(0, 0, 0x90, b"ok") in _settle(idcard.IdCardCodec(), _idcard_reply(0x90, b"ok"), garbage)


@FUZZ
@given(st.binary(max_size=64))
def test_at_finds_the_final_result_after_garbage(garbage):
    codec = at.AtCodec()
    codec.command("AT+CSQ")
    codec.feed(garbage)
    codec.events()
    codec.command("AT+CSQ")  # the driver's retry after the garbled answer
    codec.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert codec.events()[-2:] == [at.Response("+CSQ: 20,99"), at.Final("OK")]

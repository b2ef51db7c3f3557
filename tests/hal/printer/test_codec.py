"""The host-side ESC/POS codec, pinned by the bytes of shared/protocols/escpos.md §5.1–5.2."""
import pytest
from hypothesis import given, strategies as st

from hal.peripherals import PrinterStatus
from hal.protocols import escpos


def test_core_commands_are_the_bytes_of_the_table():
    assert escpos.INITIALIZE == bytes.fromhex("1b40")
    assert escpos.CHINESE_ON == bytes.fromhex("1c26")  # FS &
    assert escpos.CHINESE_OFF == bytes.fromhex("1c2e")  # FS .
    assert escpos.justify("center") == bytes.fromhex("1b6101")
    assert escpos.bold(True) == bytes.fromhex("1b4501")
    assert escpos.size(2, 2) == bytes.fromhex("1d2111")  # 0x11 = double
    assert escpos.size(1, 2) == bytes.fromhex("1d2101")
    assert escpos.feed(4) == bytes.fromhex("1b6404")
    assert escpos.cut(partial=False) == bytes.fromhex("1d5600")
    assert escpos.cut(partial=True) == bytes.fromhex("1d5601")
    assert escpos.cut(partial=True, feed_lines=3) == bytes.fromhex("1d564203")  # function B
    assert escpos.select_code_table(19) == bytes.fromhex("1b7413")


def test_qr_is_model_size_level_store_print():
    wire = escpos.qr("RF7K2Q9M", module_size=6, ec="M")
    assert wire == bytes.fromhex(
        "1d286b0400314132 00"  # model 2
        "1d286b03003143 06"  # module size 6
        "1d286b03003145 31"  # EC level M
        "1d286b0b00315030" + "RF7K2Q9M".encode().hex() +  # pL + 256·pH = k + 3 = 11
        "1d286b03003151 30"  # print
    )


def test_qr_store_length_crosses_into_ph():
    data = "x" * 300
    store = escpos.qr(data)[25:33]
    assert store == bytes([0x1D, 0x28, 0x6B, (303) & 0xFF, 303 >> 8, 0x31, 0x50, 0x30])


def test_qr_matches_python_escpos_native_qr():
    """An independent implementation (python-escpos 3.1) sends the same bytes for level L."""
    from escpos.printer import Dummy

    dummy = Dummy()
    dummy.qr("RF7K2Q9M", native=True, size=6)
    assert escpos.qr("RF7K2Q9M", module_size=6, ec="L") == dummy.output


@pytest.mark.parametrize("bad", [dict(data=""), dict(module_size=0), dict(module_size=17), dict(ec="X")])
def test_qr_out_of_range_is_our_own_error(bad):
    args = dict(data="abc", module_size=6, ec="M") | bad
    with pytest.raises(escpos.EscPosError):
        escpos.qr(**args)


def test_chinese_text_is_gb18030_and_unencodable_becomes_question_mark():
    assert escpos.text("中文 OK") == "中文 OK".encode("gb18030") + b"\n"
    assert escpos.text("中文") == bytes.fromhex("d6d0cec40a")
    assert escpos.text("¥", encoding="gbk") == b"?\n"  # GBK-only printers: no 4-byte sequences
    assert escpos.text("a\nb") == b"a b\n"  # one call, one line


def test_status_query_is_dle_eot_n():
    assert [escpos.status_query(n) for n in (1, 2, 3, 4)] == [bytes([0x10, 0x04, n]) for n in (1, 2, 3, 4)]
    with pytest.raises(escpos.EscPosError):
        escpos.status_query(5)


@pytest.mark.parametrize(
    "paper, near_end, out",
    [(0x12, False, False), (0x1E, True, False), (0x72, False, True), (0x7E, True, True)],
)
def test_paper_sensor_values_of_the_notes(paper, near_end, out):
    status = escpos.decode_status({1: 0x12, 2: 0x12, 3: 0x12, 4: paper})
    assert (status.paper_near_end, status.paper_out) == (near_end, out)


def test_idle_printer_can_print():
    assert escpos.decode_status({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}) == PrinterStatus(known=True, online=True)


def test_out_of_paper_example_of_the_notes():
    """§5.2: n=1 0x1A (offline), n=2 0x32 (stopped by paper end), n=4 0x7E."""
    status = escpos.decode_status({1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E})
    assert status.known and not status.online and status.paper_out and not status.can_print


def test_cover_open_and_cutter_error_bits():
    assert escpos.decode_status({1: 0x1A, 2: 0x16, 3: 0x12, 4: 0x12}).cover_open  # n=2 b2
    cut = escpos.decode_status({1: 0x1A, 2: 0x52, 3: 0x1A, 4: 0x12})  # n=2 b6, n=3 b3
    assert cut.cutter_error and not cut.can_print
    assert escpos.unrecoverable({3: 0x32})


def test_a_missing_answer_means_unknown_never_paper_ok():
    status = escpos.decode_status({1: 0x12, 2: 0x12, 3: 0x12})
    assert status == PrinterStatus(known=False) and not status.can_print


def test_only_one_byte_of_the_dle_eot_pattern_is_an_answer():
    assert escpos.parse_status_reply(b"\x12") == 0x12
    for bad in (b"", b"\x12\x12", b"\x10", b"A", b"\x92", b"\x13"):
        with pytest.raises(escpos.StatusReplyError):
            escpos.parse_status_reply(bad)
    # the first byte of an ASB report (0xx1xx00) is not a DLE EOT answer
    assert not escpos.is_status_byte(0x10) and not escpos.is_status_byte(0x38)


@given(st.binary(max_size=8))
def test_any_reply_either_parses_or_raises_our_error(data):
    try:
        b = escpos.parse_status_reply(data)
    except escpos.StatusReplyError:
        return
    assert len(data) == 1 and b & 0x93 == 0x12


@given(st.dictionaries(st.integers(1, 4), st.integers(0, 255)))
def test_any_status_bytes_decode_without_raising(replies):
    status = escpos.decode_status(replies)
    assert status.known == (len(replies) == 4)
    if status.can_print:
        assert not replies[4] & 0x60 and not replies[1] & 0x08


def test_gs_i_blocks_are_underscore_text_nul_and_incomplete_until_the_nul():
    """Epson reference, GS I n (n = 65..68): header 0x5F, the text, NUL."""
    assert escpos.info_query(67) == b"\x1d\x49\x43"
    assert escpos.parse_info_block(b"_TM-T88V\x00") == "TM-T88V"
    assert escpos.parse_info_block(b"_TM-T8") is None and escpos.parse_info_block(b"") is None
    with pytest.raises(escpos.StatusReplyError):
        escpos.parse_info_block(b"\x12")  # a status byte is no block

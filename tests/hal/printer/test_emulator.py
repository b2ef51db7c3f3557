"""The printer emulator, driven with bytes written from the notes (§5), not by our driver."""
import pytest
from hypothesis import given, settings, strategies as st

from hal.emulators.escpos import EscPosPrinterModel
from hal.emulators.model import ControlError

INIT, FS_AND, FS_DOT, CUT = b"\x1b\x40", b"\x1c\x26", b"\x1c\x2e", b"\x1d\x56\x01"


def status(m, n):
    return m.receive(bytes([0x10, 0x04, n]), 0.0)


def test_idle_printer_answers_0x12_to_every_dle_eot():
    m = EscPosPrinterModel()
    assert [status(m, n) for n in (1, 2, 3, 4)] == [b"\x12"] * 4


def test_out_of_paper_answers_like_the_notes_example():
    m = EscPosPrinterModel()
    m.control("paper_out", {})
    assert [status(m, n) for n in (1, 2, 4)] == [b"\x1a", b"\x32", b"\x7e"]


def test_near_end_cover_and_cutter_bits():
    m = EscPosPrinterModel()
    m.control("paper_near_end", {})
    assert status(m, 4) == b"\x1e" and status(m, 1) == b"\x12"  # near end still prints
    m.control("paper_ok", {})
    m.control("open_cover", {})
    assert status(m, 1) == b"\x1a" and status(m, 2) == b"\x16"
    m.control("close_cover", {})
    m.control("cutter_error", {})
    assert status(m, 2) == b"\x52" and status(m, 3) == b"\x1a"
    m.control("clear_errors", {})
    assert [status(m, n) for n in (1, 2, 3, 4)] == [b"\x12"] * 4


def test_chinese_needs_fs_and_on_a_printer_that_boots_single_byte():
    m = EscPosPrinterModel()
    m.receive(INIT + "中文".encode("gb18030") + b"\n" + FS_AND + "中文".encode("gb18030") + b"\n" + CUT, 0.0)
    wrong, right = m.control("receipts", {})[0].split("\n")
    assert right == "中文" and wrong != "中文"  # without FS & the bytes print as PC437 symbols


def test_four_byte_gb18030_and_fs_dot_back_to_single_byte():
    m = EscPosPrinterModel(boots_chinese=True)
    m.receive("¥€".encode("gb18030") + b"\n" + FS_DOT + b"abc\n" + CUT, 0.0)
    assert m.control("receipts", {}) == ["¥€\nabc"]


def test_qr_is_printed_from_the_stored_data_and_cuts_split_receipts():
    store = b"\x1d\x28\x6b\x0b\x00\x31\x50\x30RF7K2Q9M"
    m = EscPosPrinterModel()
    m.receive(b"one\n" + CUT + store + b"\x1d\x28\x6b\x03\x00\x31\x51\x30" + b"\x1d\x56\x42\x03", 0.0)
    assert m.control("receipts", {}) == ["one", "[QR:RF7K2Q9M]"] and m.cuts == 2


def test_paper_out_drops_text_and_cuts():
    m = EscPosPrinterModel()
    m.control("paper_out", {})
    m.receive(b"lost\n" + CUT, 0.0)
    assert m.control("receipts", {}) == [] and m.cuts == 0 and m.dropped > 0


def test_cover_opening_mid_job_loses_the_rest():
    m = EscPosPrinterModel()
    m.control("open_cover", {"after_bytes": 6})
    m.receive(b"first\nsecond\n" + CUT, 0.0)
    assert m.snapshot()["uncut"] == "first" and m.cuts == 0 and m.cover_open


def test_long_lines_wrap_at_the_head_width_and_double_width_counts_twice():
    m = EscPosPrinterModel(columns=8)
    m.receive(b"abcdefghij\n" + b"\x1d\x21\x10" + b"abcde\n" + CUT, 0.0)
    assert m.control("receipts", {}) == ["abcdefgh\nij\nabcd\ne"]


def test_styles_are_recorded_per_line():
    m = EscPosPrinterModel()
    m.receive(b"\x1b\x61\x01\x1b\x45\x01\x1d\x21\x01T\n" + INIT + b"x\n" + CUT, 0.0)
    title, body = m.cut_receipts[0]
    assert (title.style.align, title.style.bold, title.style.height) == (1, True, 2)
    assert (body.style.align, body.style.bold, body.style.height) == (0, False, 1)


def test_unknown_control_command_is_refused():
    with pytest.raises(ControlError):
        EscPosPrinterModel().control("frobnicate", {})


def test_render_png_draws_the_last_receipt(tmp_path):
    from PIL import Image

    m = EscPosPrinterModel()
    m.receive(FS_AND + "交易凭条\n".encode("gb18030") + CUT, 0.0)
    path = m.control("render_png", {"path": str(tmp_path / "r.png")})
    image = Image.open(path)
    assert image.width == 32 * 12 + 32 and image.convert("L").getextrema()[0] < 64  # something black


JOB_PIECES = st.sampled_from([
    INIT, FS_AND, FS_DOT, CUT, b"\n", "中文".encode("gb18030"), b"ab", b"\x1b\x61\x01", b"\x1d\x21\x11",
    b"\x10\x04\x01", b"\x10\x04\x04", b"\x1d\x28\x6b\x04\x00\x31\x50\x30A", b"\x1d\x28\x6b\x03\x00\x31\x51\x30",
    b"\x1d\x76\x30\x00\x01\x00\x02\x00\xff\x10", b"\x81\x30\x84\x36", b"\xff",
])


@settings(max_examples=150)
@given(st.lists(st.one_of(JOB_PIECES, st.binary(max_size=6)), max_size=30), st.integers(1, 7))
def test_any_stream_in_any_chunking_prints_and_answers_the_same(pieces, chunk):
    data = b"".join(pieces)
    whole, chunked = EscPosPrinterModel(), EscPosPrinterModel()
    reply_whole = whole.receive(data, 0.0)
    reply_chunked = b"".join(chunked.receive(data[i : i + chunk], 0.0) for i in range(0, len(data), chunk))
    assert reply_whole == reply_chunked
    assert whole.snapshot() == chunked.snapshot()
    assert all(b & 0x93 == 0x12 for b in reply_whole)  # every answer has the DLE EOT fixed bits


@pytest.mark.parametrize("faults", [set(), {"paper_out"}, {"paper_near_end"}, {"open_cover"}, {"cutter_error"},
                                    {"paper_out", "open_cover"}, {"paper_near_end", "cutter_error", "open_cover"}])
def test_emulator_and_driver_codec_agree_on_every_fault(faults):
    """Both sides were written from §5.2 separately; a disagreement here is a misread table."""
    from hal.protocols.escpos import decode_status

    m = EscPosPrinterModel()
    for fault in faults:
        m.control(fault, {})
    decoded = decode_status({n: status(m, n)[0] for n in (1, 2, 3, 4)})
    assert decoded.known and decoded.online == (not faults - {"paper_near_end"})
    assert (decoded.paper_out, decoded.cover_open, decoded.cutter_error) == (
        "paper_out" in faults, "open_cover" in faults, "cutter_error" in faults)
    assert decoded.paper_near_end == bool(faults & {"paper_near_end", "paper_out"})


async def test_control_socket_scripts_faults_and_pictures(tmp_path):
    from hal.emulators.control import call
    from hal.emulators.runner import EmulatorRunner
    from hal.emulators.simports import SimPort

    port = SimPort("escpos", EmulatorRunner(EscPosPrinterModel()))
    sock = str(tmp_path / "emu.sock")
    await port.start(sock)
    try:
        await call(sock, "paper_out")
        assert (await call(sock, "state"))["paper_out"] is True
        png = await call(sock, "render_png", file=str(tmp_path / "x.png"))
        assert (tmp_path / "x.png").stat().st_size > 0 and png.endswith("x.png")
        with pytest.raises(ControlError):
            await call(sock, "jam_the_paper")
    finally:
        await port.stop()

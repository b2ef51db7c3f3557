"""The ESC/POS driver against the emulator on a real pty: receipts, status, and the status traps."""
import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hal.device import DeviceContext, Health
from hal.emulators.escpos import EscPosPrinterModel
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort
from hal.peripherals import PrinterStatus, PrintFailed
from hal.printer import receipts
from hal.printer.escpos import EscPosOptions, EscPosPrinter
from hal.printer.layout import layout, printed_text
from hal.registry import load_driver
from tests.rig import lines

RECEIPT = receipts.transaction_receipt(
    kiosk_id="KS-0101-07", seq=1042, txn_id="T20240501-000123", when=datetime(2024, 5, 1, 14, 3, 9),
    service="话费充值 Top-up", phone="13812345678", amount_fen=10000, paid_fen=10500, change_fen=500,
    balance_after_fen=12345,
)


class Rig:
    def __init__(self, line, printer, events):
        self.line, self.printer, self.events = line, printer, events
        self.path = line.path

    @property
    def model(self):
        return self.line.model  # on the rig: skips (the emulator is another process)

    @property
    def runner(self):
        return self.line.runner or self.line.model.runner

    def codes(self):
        return [(e.kind, e.code) for e in self.events]


@pytest.fixture
async def rig(tmp_path):
    async with lines.device_line("escpos", EscPosPrinterModel(), str(tmp_path / "emu.sock")) as line:
        events = []
        on_rig = lines.rig_device("escpos").options if lines.rig_mode() else {}
        options = EscPosOptions(port=line.path, **{"timeout": 0.2, **on_rig})
        printer = EscPosPrinter("printer", options, DeviceContext(report=events.append))
        await printer.start()
        try:
            yield Rig(line, printer, events)
        finally:
            await printer.stop()


async def test_the_printer_tells_its_maker_model_firmware_and_serial(rig):
    """GS I 65..68 (Epson reference: "_" text NUL); the rig report shows what a real printer says."""
    ident = await rig.printer.identify()
    lines.note_identity("escpos", **ident)
    assert set(ident) >= {"maker", "model"} and all(ident.values())
    if not lines.rig_mode():
        assert ident == {"firmware": "1.00 EMU", "maker": "KIOSKD-EMU", "model": "EMU-58 GB18030", "serial": "EMU0000001"}
        assert (await rig.printer.status()).known  # the blocks left nothing on the line to answer DLE EOT


def test_registry_names_this_driver():
    assert load_driver("escpos") is EscPosPrinter


async def test_chinese_receipt_round_trips_to_the_same_text(rig):
    await rig.printer.print_receipt(RECEIPT)
    printed = rig.model.control("receipts", {})
    assert printed == [printed_text(layout(RECEIPT, 32))]
    assert "号码 Phone           138****5678" in printed[0] and "￥123.45" in printed[0]
    assert rig.model.cuts == 1 and rig.printer.health is Health.OK


async def test_refund_voucher_prints_its_qr(rig):
    voucher = receipts.refund_voucher(kiosk_id="K1", seq=7, txn_id="T7", when=datetime(2024, 5, 1),
                                      amount_fen=550, claim_code="RF7K2Q9M")
    await rig.printer.print_receipt(voucher)
    assert "[QR:RF7K2Q9M]" in rig.model.control("receipts", {})[0]


async def test_status_bits_reach_the_status(rig):
    assert await rig.printer.status() == PrinterStatus(known=True, online=True)
    rig.model.control("paper_near_end", {})
    near = await rig.printer.status()
    assert near.paper_near_end and near.can_print and rig.printer.health is Health.DEGRADED
    rig.model.control("open_cover", {})
    cover = await rig.printer.status()
    assert cover.cover_open and not cover.online and not cover.can_print
    rig.model.control("close_cover", {})
    rig.model.control("cutter_error", {})
    assert (await rig.printer.status()).cutter_error
    assert ("paper_low", "paper_near_end") in rig.codes() and ("cover_open", "cover_open") in rig.codes()
    assert ("fault", "cutter_error") in rig.codes()


async def test_events_are_reported_once_per_condition(rig):
    rig.model.control("paper_out", {})
    for _ in range(3):
        assert (await rig.printer.status()).paper_out
    assert rig.codes().count(("paper_out", "paper_out")) == 1
    assert rig.printer.health is Health.FAULT


async def test_paper_out_before_printing_fails_and_prints_nothing(rig):
    rig.model.control("paper_out", {})
    with pytest.raises(PrintFailed, match="paper out"):
        await rig.printer.print_receipt(RECEIPT)
    assert rig.model.snapshot()["dropped_bytes"] == 0  # not a byte of the job was sent
    assert rig.model.control("receipts", {}) == [] and ("fault", "print_failed") in rig.codes()


async def test_a_silent_printer_is_unknown_and_never_printed_to(rig):
    rig.runner.muted = True
    status = await rig.printer.status()
    assert status == PrinterStatus(known=False) and not status.paper_out
    assert rig.printer.health is Health.FAULT and ("fault", "printer_silent") in rig.codes()
    with pytest.raises(PrintFailed, match="silent"):
        await rig.printer.print_receipt(RECEIPT)
    assert rig.model.cuts == 0


async def test_a_late_status_byte_does_not_answer_the_next_question(rig):
    """A stale "all fine" (0x12) sitting in the input must not hide a printer out of paper."""
    rig.model.control("paper_out", {})
    rig.runner.control("inject", {"hex": "12121212"})
    async with asyncio.timeout(2):
        while rig.printer.link.pending < 4:
            await asyncio.sleep(0.005)
    assert (await rig.printer.status()).paper_out


async def test_an_answer_that_comes_after_the_timeout_is_not_taken_for_the_next(rig):
    rig.runner.muted = True
    assert not (await rig.printer.status()).known
    rig.runner.muted = False
    rig.model.control("paper_out", {})
    rig.runner.control("inject", {"hex": "12"})  # the late answer to the question we gave up on
    status = await rig.printer.status()
    assert status.known and status.paper_out


async def test_one_garbled_status_byte_is_asked_again(rig):
    rig.runner.corrupt_next = 1  # bit 0 flipped: 0x13 breaks the fixed bits
    assert (await rig.printer.status()).known
    assert ("fault", "status_garbage") in rig.codes()


async def test_garbage_twice_is_unknown_not_paper_ok(rig):
    rig.runner.corrupt_next = 2
    status = await rig.printer.status()
    assert not status.known and rig.codes().count(("fault", "status_garbage")) == 2
    assert (await rig.printer.status()).known  # the line recovers


async def test_cover_opened_mid_print_fails_the_print(rig):
    rig.model.control("open_cover", {"after_bytes": 60})
    with pytest.raises(PrintFailed, match="cover open"):
        await rig.printer.print_receipt(RECEIPT)
    assert rig.model.cuts == 0 and rig.printer.printed == 0


async def test_paper_running_out_mid_print_fails_the_print(rig):
    rig.model.control("paper_out", {"after_bytes": 200})
    with pytest.raises(PrintFailed, match="paper out"):
        await rig.printer.print_receipt(RECEIPT)


async def test_self_test_prints_a_test_receipt(rig):
    result = await rig.printer.self_test()
    assert "printed" in result and "中文打印正常" in rig.model.control("receipts", {})[0]
    rig.model.control("paper_out", {})
    with pytest.raises(PrintFailed, match="paper out"):  # a failed test is an error, not a line of text
        await rig.printer.self_test()


async def test_without_chinese_mode_the_printer_scrambles_chinese(rig):
    """Why chinese_mode defaults on: the emulated printer boots in single-byte mode."""
    plain = EscPosPrinter("p2", EscPosOptions(port=rig.path, timeout=0.2, chinese_mode=False), DeviceContext())
    plain.link = rig.printer.link
    await plain.print_receipt(RECEIPT)
    assert "交易凭条" not in rig.model.control("receipts", {})[0]


async def test_same_driver_over_tcp():
    model = EscPosPrinterModel()
    runner = EmulatorRunner(model)
    server = await runner.serve_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    printer = EscPosPrinter("p", EscPosOptions(port=f"tcp://127.0.0.1:{port}", timeout=0.2), DeviceContext())
    try:
        await printer.start()
        await printer.print_receipt(RECEIPT)
        assert model.control("receipts", {}) == [printed_text(layout(RECEIPT, 32))]
    finally:
        await printer.stop()
        server.close()
        await runner.stop()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=12))
def test_no_junk_left_on_the_line_makes_a_printer_without_paper_look_ready(junk):
    """Whatever stale bytes wait in the input (late answers, ASB, noise), paper out stays paper out."""

    async def scenario():
        model = EscPosPrinterModel()
        model.control("paper_out", {})
        port = SimPort("escpos", EmulatorRunner(model))
        await port.start(None)
        printer = EscPosPrinter("p", EscPosOptions(port=port.path, timeout=0.2), DeviceContext())
        try:
            await printer.start()
            port.runner.control("inject", {"hex": junk.hex()})
            async with asyncio.timeout(2):
                while printer.link.pending < len(junk):
                    await asyncio.sleep(0.002)
            status = await printer.status()
            assert status.known and status.paper_out and not status.can_print
        finally:
            await printer.stop()
            await port.stop()

    asyncio.run(scenario())


async def test_the_example_sheet_puts_printed_receipts_side_by_side(rig, tmp_path):
    from PIL import Image

    from hal.printer.example import side_by_side

    pictures = []
    for i, receipt in enumerate([RECEIPT, receipts.refund_voucher(kiosk_id="K1", seq=7, txn_id="T7",
                                                                  when=datetime(2024, 5, 1), amount_fen=550,
                                                                  claim_code="RF7K2Q9M")]):
        await rig.printer.print_receipt(receipt)
        pictures.append(Path(rig.model.control("render_png", {"file": str(tmp_path / f"{i}.png")})))
    sheet = Image.open(side_by_side(pictures, tmp_path / "sheet.png"))
    assert sheet.width > sum(Image.open(p).width for p in pictures)


async def test_a_receipt_wraps_at_words_on_paper_and_in_the_rendered_png(rig, tmp_path):
    """English wraps between words and Chinese between characters before the bytes leave; the
    emulator, which wraps at its head width as a printer does, then has nothing left to cut."""
    from PIL import Image

    from hal.emulators.escpos_render import CELL_W, LINE_H, MARGIN
    from hal.peripherals import Receipt

    receipt = Receipt(title="充值卡销售凭条 / Recharge card receipt",
                      lines=[("业务 / Service", "话费充值 / Top-up"), ("原因 / Reason", "找零不足 / Not enough change")],
                      footer="凭退款码到人工柜台领取退款。服务热线 10086 / Collect your refund at the service counter. "
                             "Hotline 10086")
    await rig.printer.print_receipt(receipt)
    [paper] = rig.model.control("receipts", {})
    lines = paper.splitlines()
    assert lines == printed_text(layout(receipt, 32)).splitlines()  # the printer re-wrapped nothing
    words = {"Recharge", "receipt", "Top-up", "Collect", "refund", "service", "counter.", "Hotline", "10086", "change"}
    assert words <= {w for line in lines for w in line.split()}, lines  # each word whole on one line
    assert "业务 / Service 话费充值 / Top-up" in lines and "热线 10086 / Collect your refund" in lines
    png = tmp_path / "receipt.png"
    rig.model.control("render_png", {"file": str(png)})
    picture = Image.open(png)
    picture.load()
    assert picture.width == 32 * CELL_W + 2 * MARGIN  # the 58 mm head: 32 columns
    assert picture.height >= len(lines) * LINE_H  # every line drawn

"""Print example receipts through the real driver into the emulator and save the emulator's picture.

    python -m hal.printer.example docs/receipt-example.png

Runs the whole path a kiosk runs — template, layout, ESC/POS bytes, a real pty, DLE EOT status
before and after — and writes a transaction receipt and a refund voucher side by side.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from hal.device import DeviceContext
from hal.emulators.escpos import EscPosPrinterModel
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort

from . import receipts
from .escpos import EscPosOptions, EscPosPrinter

WHEN = datetime(2024, 5, 1, 14, 3, 9)
EXAMPLES = [
    receipts.transaction_receipt(
        kiosk_id="KS-0101-07", seq=1042, txn_id="T20240501-000123", when=WHEN, service="话费充值 Top-up",
        phone="13812345678", amount_fen=10000, paid_fen=10500, change_fen=500, balance_after_fen=12345,
    ),
    receipts.refund_voucher(
        kiosk_id="KS-0101-07", seq=1043, txn_id="T20240501-000124", when=WHEN, amount_fen=500,
        claim_code="RF7K2Q9M", reason="找零不足 No change", phone="13812345678",
    ),
]


async def render(out: Path) -> list[str]:
    from PIL import Image

    model = EscPosPrinterModel()
    port = SimPort("escpos", EmulatorRunner(model))
    await port.start(None)
    printer = EscPosPrinter("printer", EscPosOptions(port=port.path, timeout=0.3), DeviceContext())
    pictures = []
    try:
        await printer.start()
        with tempfile.TemporaryDirectory() as tmp:
            for i, receipt in enumerate(EXAMPLES):
                await printer.print_receipt(receipt)
                pictures.append(Image.open(model.control("render_png", {"path": f"{tmp}/{i}.png"})).copy())
    finally:
        await printer.stop()
        await port.stop()
    gap = 24
    sheet = Image.new("L", (sum(p.width for p in pictures) + gap * (len(pictures) + 1),
                            max(p.height for p in pictures) + 2 * gap), 200)
    x = gap
    for picture in pictures:
        sheet.paste(picture, (x, gap))
        x += picture.width + gap
    sheet.save(out, optimize=True)
    return model.control("receipts", {})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "receipt-example.png")
    for text in asyncio.run(render(out)):
        print(text, end="\n\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

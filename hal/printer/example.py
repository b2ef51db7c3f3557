"""The receipt picture in docs/hardware/printer.md: receipts the flows printed, side by side.

    ./dev demo --once                          # writes var/demo/SIM-0001/receipt.png, SIM-0002/receipt.png
    python -m hal.printer.example docs/receipt-example.png var/demo/SIM-0001/receipt.png var/demo/SIM-0002/receipt.png

The demo's customers run the real flows (top-up, card sale) on simulated kiosks; each kiosk's
printer emulator draws the receipt it cut (`render_png`), byte for byte what the driver sent.
This only lays those pictures out on one sheet.
"""
from __future__ import annotations

import sys
from pathlib import Path


def side_by_side(pictures: list[Path], out: Path, gap: int = 24) -> Path:
    from PIL import Image

    images = [Image.open(p).convert("L") for p in pictures]
    sheet = Image.new("L", (sum(i.width for i in images) + gap * (len(images) + 1),
                            max(i.height for i in images) + 2 * gap), 200)
    x = gap
    for image in images:
        sheet.paste(image, (x, gap))
        x += image.width + gap
    sheet.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print(f"wrote {side_by_side([Path(a) for a in argv[1:]], Path(argv[0]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

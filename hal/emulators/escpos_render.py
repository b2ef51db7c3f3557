"""What the emulated printer put on paper, as a PNG: a picture of the receipt for docs and demos.

Each character sits in its printer cell (font A: 12×24 dots ASCII, 24×24 dots Chinese), so
what overflows or misaligns on a real 58 mm head misaligns here too. A CJK font is needed for
the Chinese: Debian fonts-wqy-microhei or fonts-noto-cjk (apt-packages.txt); without one the
text still renders, as boxes, rather than failing.
"""
from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .escpos import Printed

CELL_W, CELL_H, LINE_H, MARGIN = 12, 24, 30, 16
FONT_CANDIDATES = [
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 1),  # index 1: "Micro Hei Mono"
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # SC
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 1),
]


def find_cjk_font() -> tuple[str, int] | None:
    """A font file with Chinese glyphs, or None; looked up at run time (paths differ per distro)."""
    env = os.environ.get("KIOSK_CJK_FONT")
    if env and os.path.exists(env):
        return env, 0
    for path, index in FONT_CANDIDATES:
        if os.path.exists(path):
            return path, index
    for pattern in ("/usr/share/fonts/**/*CJK*", "/usr/share/fonts/**/wqy*"):
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return found[0], 0
    return None


def _font(px: int) -> Any:
    from PIL import ImageFont

    found = find_cjk_font()
    if found:
        try:
            return ImageFont.truetype(found[0], px, index=found[1])
        except OSError:
            pass
    return ImageFont.load_default(px)


def render_png(receipt: list["Printed"], path: str, columns: int = 32) -> None:
    from PIL import Image, ImageDraw

    width = columns * CELL_W
    heights = [
        (p.qr_module * _qr_modules(p.qr) + 16) if p.qr is not None else LINE_H + CELL_H * (p.style.height - 1)
        for p in receipt
    ]
    image = Image.new("L", (width + 2 * MARGIN, sum(heights) + 2 * MARGIN + 40), 255)
    draw = ImageDraw.Draw(image)
    font = _font(CELL_H - 2)  # a little smaller than the cell so descenders stay inside it
    y = MARGIN
    for printed, h in zip(receipt, heights):
        if printed.qr is not None:
            _draw_qr(image, printed, y, width)
        else:
            _draw_line(image, draw, font, printed, y, width)
        y += h
    # the tear line left by the cutter
    for x in range(0, image.width, 8):
        draw.line([(x, image.height - 12), (x + 4, image.height - 12)], fill=128)
    image.save(path)


def _draw_line(image: Any, draw: Any, font: Any, printed: "Printed", y: int, width: int) -> None:
    from PIL import Image, ImageDraw

    style = printed.style
    cells = [(ch, 1 if ord(ch) < 0x80 else 2) for ch in printed.text]
    line_w = sum(w for _, w in cells) * CELL_W
    strip = Image.new("L", (max(line_w, 1), CELL_H), 255)
    sd = ImageDraw.Draw(strip)
    x = 0
    for ch, w in cells:
        cx = x + (w * CELL_W) // 2
        for dx in (0, 1) if style.bold else (0,):  # emphasized: the head prints each dot twice, shifted
            sd.text((cx + dx, CELL_H // 2), ch, font=font, fill=0, anchor="mm")
        x += w * CELL_W
    if style.width > 1 or style.height > 1:
        strip = strip.resize((strip.width * style.width, CELL_H * style.height), Image.NEAREST)
    left = {0: 0, 1: (width - strip.width) // 2, 2: width - strip.width}[style.align]
    image.paste(strip, (MARGIN + max(left, 0), y))


def _qr_modules(data: str | None) -> int:
    try:
        import qrcode

        code = qrcode.QRCode(border=0, error_correction=qrcode.constants.ERROR_CORRECT_M)
        code.add_data((data or "").encode("utf-8"))
        code.make(fit=True)
        return len(code.get_matrix())
    except ImportError:
        return 25


def _draw_qr(image: Any, printed: "Printed", y: int, width: int) -> None:
    from PIL import Image

    size = printed.qr_module * _qr_modules(printed.qr)
    try:
        import qrcode

        code = qrcode.QRCode(border=0, box_size=printed.qr_module, error_correction=qrcode.constants.ERROR_CORRECT_M)
        code.add_data((printed.qr or "").encode("utf-8"))
        code.make(fit=True)
        symbol = code.make_image().get_image().convert("L")
    except ImportError:  # qrcode comes with python-escpos; without it, a placeholder square
        symbol = Image.new("L", (size, size), 0)
    left = {0: 0, 1: (width - symbol.width) // 2, 2: width - symbol.width}[printed.style.align]
    image.paste(symbol, (MARGIN + max(left, 0), y + 4))

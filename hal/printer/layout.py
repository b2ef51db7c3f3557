"""A Receipt (hal.peripherals) laid out in printer columns, then turned into one ESC/POS job.

Why columns, not characters: on a GB printer an ASCII character is half a cell (12 dots in
font A) and a Chinese one a full cell (24 dots), so a 58 mm head (384 dots) holds 32 ASCII or
16 Chinese characters. A row that overflows would wrap in the printer and scramble the
right-aligned amounts, so we wrap it ourselves.
"""
from __future__ import annotations

from dataclasses import dataclass

from hal.peripherals import Receipt
from hal.protocols import escpos

# Characters GB2312/GBK lack but whose full-width twin they have: "¥" (U+00A5) exists only as
# a 4-byte GB18030 sequence, which many printers print as garbage (§5.1 note).
PRINTABLE_TWINS = str.maketrans({"¥": "￥", "\u00a0": " "})


@dataclass(frozen=True)
class Line:
    text: str
    align: str = "left"
    bold: bool = False
    height: int = 1  # GS ! height multiplier; width stays 1 so the column count holds


@dataclass(frozen=True)
class Qr:
    data: str


Block = Line | Qr


def columns(s: str) -> int:
    """Printer cells a string takes: 1 for ASCII, 2 for anything sent as a multi-byte GB character."""
    return sum(1 if ord(c) < 0x80 else 2 for c in s)


def wrap(s: str, width: int) -> list[str]:
    """Split ``s`` into pieces of at most ``width`` columns (never splitting a character)."""
    pieces, current, used = [], "", 0
    for c in s:
        w = columns(c)
        if used + w > width and current:
            pieces.append(current)
            current, used = "", 0
        current += c
        used += w
    pieces.append(current)
    return pieces


def row(label: str, value: str, width: int) -> list[str]:
    """``label ...... value`` on one line, or the value right-aligned on the line(s) below."""
    if not value:
        return wrap(label, width)
    gap = width - columns(label) - columns(value)
    if gap >= 1:
        return [label + " " * gap + value]
    lines = wrap(label, width)
    for piece in wrap(value, width):
        lines.append(" " * (width - columns(piece)) + piece)
    return lines


def layout(receipt: Receipt, width: int) -> list[Block]:
    """Title (bold, double height, centred), rule, rows, rule, QR, footer (centred)."""
    tr = PRINTABLE_TWINS
    blocks: list[Block] = []
    for piece in wrap(receipt.title.translate(tr), width):
        blocks.append(Line(piece, align="center", bold=True, height=2))
    blocks.append(Line("-" * width))
    for label, value in receipt.lines:
        for piece in row(str(label).translate(tr), str(value).translate(tr), width):
            blocks.append(Line(piece))
    blocks.append(Line("-" * width))
    if receipt.qr:
        blocks.append(Qr(receipt.qr))
    for paragraph in receipt.footer.translate(tr).splitlines():
        for piece in wrap(paragraph, width):
            blocks.append(Line(piece, align="center"))
    return blocks


def printed_text(blocks: list[Block]) -> str:
    """What a correct printer shows, one line per block, a QR as ``[QR:data]``."""
    return "\n".join(b.text if isinstance(b, Line) else f"[QR:{b.data}]" for b in blocks)


def encode_job(
    blocks: list[Block],
    *,
    encoding: str = "gb18030",
    chinese_mode: bool = True,
    codepage: int = -1,
    feed_lines: int = 4,
    qr_module: int = 6,
) -> bytes:
    """One print job: ESC @, the character mode set explicitly, the blocks, feed, partial cut.

    Chinese mode is switched on (FS &) or off (FS .) explicitly every job: printers differ in
    their power-on default, and ESC @ may or may not reset it (§5.1).
    """
    out = [escpos.INITIALIZE]
    if codepage >= 0:
        out.append(escpos.select_code_table(codepage))
    out.append(escpos.CHINESE_ON if chinese_mode else escpos.CHINESE_OFF)
    style: tuple[str, bool, int] = ("left", False, 1)
    out += [escpos.justify("left"), escpos.bold(False), escpos.size(1, 1)]
    for block in blocks:
        want = (block.align, block.bold, block.height) if isinstance(block, Line) else ("center", False, 1)
        if want != style:
            out += [escpos.justify(want[0]), escpos.bold(want[1]), escpos.size(1, want[2])]
            style = want
        if isinstance(block, Line):
            out.append(escpos.text(block.text, encoding))
        else:
            out.append(escpos.qr(block.data, module_size=qr_module))  # prints at once, no LF
    out += [escpos.justify("left"), escpos.bold(False), escpos.size(1, 1)]
    out += [escpos.feed(feed_lines), escpos.cut(partial=True)]
    return b"".join(out)

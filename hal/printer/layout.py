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


# Chinese punctuation that must not begin a line (GB/T 15834 line-breaking practice): it stays
# with the character before it.
NO_LINE_START = set("，。、；：！？）》」』】〉”’…·,.;:!?)]}%")


def _tokens(s: str) -> list[str]:
    """Break opportunities: a run of spaces; an English word (never split); one Chinese character
    (a line may break between any two), with the punctuation that may not start a line."""
    tokens: list[str] = []
    for c in s:
        prev = tokens[-1] if tokens else ""
        if c in NO_LINE_START and prev and not prev[-1].isspace():
            tokens[-1] += c
        elif c.isspace():
            tokens.append(c) if not prev or not prev[-1].isspace() else tokens.__setitem__(-1, prev + c)
        elif columns(c) == 1 and prev and columns(prev[-1]) == 1 and not prev[-1].isspace():
            tokens[-1] += c  # another letter of the same word
        else:
            tokens.append(c)
    return tokens


def wrap(s: str, width: int) -> list[str]:
    """Split ``s`` into lines of at most ``width`` columns: between words in English, between
    characters in Chinese, never inside a word — unless one word alone is wider than a line."""
    lines: list[str] = []
    current, used, space = "", 0, ""
    for token in _tokens(s):
        if token.isspace():
            space = token if current else ""  # a break eats the space; leading spaces go too
            continue
        need = columns(space) + columns(token)
        if current and used + need <= width:
            current, used = current + space + token, used + need
        else:
            if current:
                lines.append(current)
            current, used = "", 0
            while columns(token) > width:  # a word longer than the line: cut it, the only way it fits
                cut = _fit(token, width)
                lines.append(token[:cut])
                token = token[cut:]
            current, used = token, columns(token)
        space = ""
    lines.append(current)
    return lines


def _fit(s: str, width: int) -> int:
    """How many leading characters of ``s`` fit in ``width`` columns (at least one)."""
    used = 0
    for i, c in enumerate(s):
        used += columns(c)
        if used > width:
            return max(i, 1)
    return len(s)


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

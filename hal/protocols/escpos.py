"""ESC/POS, host side, without I/O: commands to bytes, real-time status bytes to a PrinterStatus.

Why our own encoder rather than python-escpos: the part a kiosk needs is small (init, Chinese
mode, justify/bold/size, QR, cut, DLE EOT), python-escpos costs ~170 ms to import, sends Chinese
without ``FS &`` and reads status in a way that mistakes silence for "paper adequate"
(shared/test-environment.md). Everything here is pure: the driver does the reading and the
timing. Section numbers refer to shared/protocols/escpos.md.
"""
from __future__ import annotations

from collections.abc import Mapping

from hal.peripherals import PrinterStatus

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A

# §5.1 core commands
INITIALIZE = bytes([ESC, 0x40])  # ESC @ — clears modes, also turns ASB off
CHINESE_ON = bytes([FS, 0x26])  # FS & — bytes >= 0x81 start a 2-byte (GB) character
CHINESE_OFF = bytes([FS, 0x2E])  # FS . — back to single-byte code page

JUSTIFY = {"left": 0, "center": 1, "right": 2}  # ESC a n

# §5.1 QR: GS ( k pL pH cn=0x31 fn ...
QR_EC = {"L": 0x30, "M": 0x31, "Q": 0x32, "H": 0x33}
QR_MAX_DATA = 7089  # model 2, numeric, level L: the most a QR can hold at all


class EscPosError(ValueError):
    """A command we were asked to build is out of the spec's range (the caller's mistake)."""


class StatusReplyError(ValueError):
    """A real-time status answer that is not exactly one byte of the DLE EOT pattern 0xx1xx10."""


def select_code_table(n: int) -> bytes:
    """ESC t n (§5.1): single-byte code page; only meaningful outside Chinese mode."""
    _byte(n, "code table")
    return bytes([ESC, 0x74, n])


def justify(where: str) -> bytes:
    try:
        return bytes([ESC, 0x61, JUSTIFY[where]])
    except KeyError:
        raise EscPosError(f"justify: {where!r} is not left/center/right") from None


def bold(on: bool) -> bytes:
    return bytes([ESC, 0x45, 1 if on else 0])  # ESC E n, only the LSB counts


def size(width: int = 1, height: int = 1) -> bytes:
    """GS ! n (§5.1): high nibble width−1, low nibble height−1 (0x11 = double both)."""
    if not (1 <= width <= 8 and 1 <= height <= 8):
        raise EscPosError(f"size: width/height must be 1..8, got {width}x{height}")
    return bytes([GS, 0x21, ((width - 1) << 4) | (height - 1)])


def feed(lines: int) -> bytes:
    _byte(lines, "feed")
    return bytes([ESC, 0x64, lines])  # ESC d n


def cut(partial: bool = True, feed_lines: int | None = None) -> bytes:
    """GS V m (§5.1): m = 0 full / 1 partial; with ``feed_lines`` function B (65/66 n): feed then cut."""
    if feed_lines is None:
        return bytes([GS, 0x56, 1 if partial else 0])
    _byte(feed_lines, "cut feed")
    return bytes([GS, 0x56, 0x42 if partial else 0x41, feed_lines])


def qr(data: str | bytes, module_size: int = 6, ec: str = "M") -> bytes:
    """The five GS ( k functions of §5.1: model 2, module size, EC level, store data, print."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)  # byte mode; UTF-8 is what phones read
    if not payload or len(payload) > QR_MAX_DATA:
        raise EscPosError(f"qr: data length {len(payload)} not in 1..{QR_MAX_DATA}")
    if not 1 <= module_size <= 16:
        raise EscPosError(f"qr: module size {module_size} not in 1..16")
    if ec not in QR_EC:
        raise EscPosError(f"qr: EC level {ec!r} not one of L/M/Q/H")
    stored = len(payload) + 3  # pL + 256·pH = k + 3
    return b"".join(
        [
            bytes([GS, 0x28, 0x6B, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00]),  # model 2
            bytes([GS, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, module_size]),
            bytes([GS, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x45, QR_EC[ec]]),
            bytes([GS, 0x28, 0x6B, stored & 0xFF, stored >> 8, 0x31, 0x50, 0x30]) + payload,
            bytes([GS, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x51, 0x30]),  # print
        ]
    )


def text(line: str, encoding: str = "gb18030") -> bytes:
    """One line of text and LF. Characters the encoding lacks print as '?', never raise.

    GBK-only printers: pass encoding="gbk" so 4-byte GB18030 characters become '?' instead
    of four bytes of garbage (§5.1 note on GB18030 support).
    """
    cleaned = line.replace("\n", " ").replace("\r", " ")
    return cleaned.encode(encoding, errors="replace") + bytes([LF])


def _byte(n: int, what: str) -> None:
    if not 0 <= n <= 255:
        raise EscPosError(f"{what}: {n} is not a byte")


# -- §5.2 real-time status ---------------------------------------------------------------------

STATUS_PRINTER, STATUS_OFFLINE_CAUSE, STATUS_ERROR_CAUSE, STATUS_PAPER = 1, 2, 3, 4


def status_query(n: int) -> bytes:
    """DLE EOT n (§5.1): processed at once even while printing; answer is one byte."""
    if n not in (1, 2, 3, 4):
        raise EscPosError(f"DLE EOT: n={n} not in 1..4")
    return bytes([DLE, EOT, n])


def is_status_byte(b: int) -> bool:
    """§5.2: bits 1 and 4 always 1, bits 0 and 7 always 0 — pattern 0xx1xx10.

    An ASB byte 1 (0xx1xx00), a stray ASCII letter or line noise fails this test.
    """
    return (b & 0b1001_0011) == 0b0001_0010


def parse_status_reply(data: bytes) -> int:
    """The answer to one DLE EOT: exactly one byte, right fixed bits; anything else is an error."""
    if len(data) != 1:
        raise StatusReplyError(f"expected 1 status byte, got {len(data)}: {data[:8].hex()}")
    if not is_status_byte(data[0]):
        raise StatusReplyError(f"0x{data[0]:02X} does not match the DLE EOT pattern 0xx1xx10")
    return data[0]


def decode_status(replies: Mapping[int, int]) -> PrinterStatus:
    """Four answers (n=1..4) to a PrinterStatus; a missing answer means the status is unknown.

    Paired sensor bits (§5.2 n=4: b2+b3 near end, b5+b6 paper end) count as set when either
    bit is set: models differ, and erring towards "no paper" never loses a receipt.
    """
    if any(n not in replies for n in (1, 2, 3, 4)):
        return PrinterStatus(known=False)
    printer, offline, error, paper = (replies[n] for n in (1, 2, 3, 4))
    return PrinterStatus(
        known=True,
        online=not printer & 0x08,  # n=1 b3 offline
        cover_open=bool(offline & 0x04),  # n=2 b2 cover open
        paper_near_end=bool(paper & 0x0C),  # n=4 b2+b3
        paper_out=bool(paper & 0x60) or bool(offline & 0x20),  # n=4 b5+b6; n=2 b5 stopped by paper end
        cutter_error=bool(error & 0x08),  # n=3 b3 autocutter error
    )


def unrecoverable(replies: Mapping[int, int]) -> bool:
    """n=3 b5: an unrecoverable error — the printer needs a technician, not a paper roll."""
    return bool(replies.get(3, 0) & 0x20)


# GS I n, "transmit printer ID" (Epson ESC/POS Application Programming Guide / Command Reference,
# GS I): n = 65..68 answer a block "_" (0x5F), the ASCII text, NUL (0x00). Printers that lack a
# block answer nothing; silence means unknown, never an error of the printer.
PRINTER_INFO = {"firmware": 65, "maker": 66, "model": 67, "serial": 68}


def info_query(n: int) -> bytes:
    _byte(n, "GS I n")
    return bytes([GS, 0x49, n])


def parse_info_block(data: bytes) -> str | None:
    """The text of a ``_ text NUL`` block; None while the NUL has not arrived yet."""
    if not data:
        return None
    if data[0] != 0x5F:
        raise StatusReplyError(f"GS I block starts with {data[0]:#04x}, not 0x5f")
    end = data.find(b"\x00")
    if end < 0:
        return None
    return data[1:end].decode("ascii", "replace")

"""An ESC/POS thermal receipt printer, device side, written from shared/protocols/escpos.md §5.

What it models: the command stream (any chunking), Chinese (FS &) vs single-byte mode, print
modes, QR, cuts, and the paper / cover / cutter state a kiosk cares about. Real-time status
(DLE EOT n, §5.2) is answered at once, also while offline. While offline (paper out, cover open,
cutter error) printing data is dropped, as a printer that has stopped would lose it to us.
It does not import our driver's codec: the bytes here are read off the spec tables.

Deliberately not modelled: ASB pushes (GS a n is parsed and remembered, never sent), real-time
commands hidden inside raster or QR data, barcodes (GS k is skipped by its length rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import ControlError, EmulatorModel


@dataclass
class Style:
    align: int = 0  # ESC a: 0 left, 1 centre, 2 right
    bold: bool = False  # ESC E, or ESC ! bit 3
    width: int = 1  # GS ! high nibble + 1, or ESC ! bit 5
    height: int = 1  # GS ! low nibble + 1, or ESC ! bit 4


@dataclass
class Printed:
    """One printed line (``text``) or QR symbol (``qr``)."""

    text: str = ""
    style: Style = field(default_factory=Style)
    qr: str | None = None
    qr_module: int = 3

    def as_text(self) -> str:
        return f"[QR:{self.qr}]" if self.qr is not None else self.text


# Parameter bytes after ESC x / GS x / FS x for commands we accept and ignore (Epson reference).
ESC_PARAMS = {0x20: 1, 0x2D: 1, 0x32: 0, 0x33: 1, 0x4A: 1, 0x4D: 1, 0x52: 1, 0x56: 1, 0x7B: 1, 0x63: 2, 0x70: 3}
GS_PARAMS = {0x42: 1, 0x48: 1, 0x66: 1, 0x68: 1, 0x77: 1, 0x4C: 2, 0x57: 2, 0x62: 1, 0x72: 1}
# GS I n (Epson reference, "Transmit printer ID"): 1/49 model ID, 2/50 type ID (bit 1: multi-byte
# characters), 3/51 version ID as one byte each; 65..68 firmware, maker, model, serial as "_" text NUL.
PRINTER_ID = {1: b"\x20", 49: b"\x20", 2: b"\x02", 50: b"\x02", 3: b"\x10", 51: b"\x10",
              65: b"_1.00 EMU\x00", 66: b"_KIOSKD-EMU\x00", 67: b"_EMU-58 GB18030\x00", 68: b"_EMU0000001\x00"}
FS_PARAMS = {0x21: 1, 0x2D: 1, 0x43: 1, 0x57: 1, 0x53: 2}


class EscPosPrinterModel(EmulatorModel):
    name = "escpos"

    def __init__(self, columns: int = 32, boots_chinese: bool = False) -> None:
        self.columns = columns  # font A half-width cells across the head (58 mm: 32, 80 mm: 48)
        self.boots_chinese = boots_chinese  # the power-on (and ESC @) Kanji mode, model dependent
        self.paper_out = False
        self.paper_near_end = False
        self.cover_open = False
        self.cutter_error = False
        self._pending: list[tuple[int, str]] = []  # (bytes still to come, fault) — faults mid-job
        self.clear()

    def clear(self) -> None:
        self._buf = bytearray()
        self._reset_modes()
        self.chinese = self.boots_chinese
        self.current: list[Printed] = []  # since the last cut
        self.cut_receipts: list[list[Printed]] = []
        self.cuts = 0
        self.dropped = 0  # printing bytes thrown away while offline
        self.status_queries = 0
        self.asb = 0
        self.code_table = 0

    def _reset_modes(self) -> None:
        self.style = Style()
        self.line = ""
        self.line_cols = 0
        self.qr_data: bytes = b""
        self.qr_module = 3
        self.asb = 0

    # -- state the host can see ----------------------------------------------------------------
    @property
    def offline(self) -> bool:
        return self.paper_out or self.cover_open or self.cutter_error

    def status_byte(self, n: int) -> int:
        """§5.2: fixed bits 1 and 4 set (0x12), then the cause bits for n."""
        b = 0x12
        if n == 1 and self.offline:
            b |= 0x08  # b3 offline
        elif n == 2:
            b |= 0x04 if self.cover_open else 0  # b2 cover open
            b |= 0x20 if self.paper_out else 0  # b5 printing stopped by paper end
            b |= 0x40 if self.cutter_error else 0  # b6 error occurred
        elif n == 3 and self.cutter_error:
            b |= 0x08  # b3 autocutter error
        elif n == 4:
            # b2+b3 near end; b5+b6 paper not present. No roll also reads "near end": 0x7E.
            b |= 0x0C if (self.paper_near_end or self.paper_out) else 0
            b |= 0x60 if self.paper_out else 0
        return b

    # -- the byte stream -----------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for byte in data:
            self._buf.append(byte)
            out += self._parse()
            if self._pending:
                self._count_down()
        return bytes(out)

    def _count_down(self) -> None:
        still = []
        for left, fault in self._pending:
            if left <= 1:
                self._apply(fault)
            else:
                still.append((left - 1, fault))
        self._pending = still

    def _parse(self) -> bytes:
        """Consume every complete command or character at the front of the buffer."""
        out = bytearray()
        while self._buf:
            used, reply = self._one(self._buf)
            if used == 0:
                break  # incomplete: wait for more bytes
            del self._buf[:used]
            out += reply
        return bytes(out)

    def _one(self, b: bytearray) -> tuple[int, bytes]:
        c = b[0]
        if c == 0x10:  # DLE
            if len(b) < 3:
                return (0, b"") if len(b) < 2 or b[1] in (0x04, 0x05, 0x14) else (1, b"")
            if b[1] == 0x04 and b[2] in (1, 2, 3, 4):  # DLE EOT n, real time
                self.status_queries += 1
                return 3, bytes([self.status_byte(b[2])])
            if b[1] == 0x14:  # DLE DC4 fn m t
                return (5, b"") if len(b) >= 5 else (0, b"")
            return (3, b"") if b[1] in (0x04, 0x05) else (1, b"")
        if c == 0x1B:
            return self._esc(b)
        if c == 0x1D:
            return self._gs(b)
        if c == 0x1C:
            return self._fs(b)
        if c == 0x0A:
            self._print_line()
            return 1, b""
        if c < 0x20 or c == 0x7F:
            return 1, b""  # CR, HT and other controls: nothing printed
        return self._char(b)

    def _char(self, b: bytearray) -> tuple[int, bytes]:
        if b[0] < 0x80:
            return self._put(chr(b[0]), 1)
        if not self.chinese:  # single-byte code page (ESC t); PC437 stands for all of them
            return self._put(bytes(b[:1]).decode("cp437"), 1)
        # GB18030: lead 0x81–0xFE; trail 0x40–0xFE (2 bytes) or 0x30–0x39 then 2 more (4 bytes)
        if not 0x81 <= b[0] <= 0xFE:
            return self._put("?", 1)
        if len(b) < 2:
            return 0, b""
        if 0x30 <= b[1] <= 0x39:
            if len(b) < 4:
                return 0, b""
            raw, used = bytes(b[:4]), 4
        else:
            raw, used = bytes(b[:2]), 2
        try:
            ch = raw.decode("gb18030")
        except UnicodeDecodeError:
            ch, used = "?", 1
        return self._put(ch, used)

    def _put(self, ch: str, used: int) -> tuple[int, bytes]:
        if self.offline:
            self.dropped += used
            return used, b""
        cols = (1 if ord(ch) < 0x80 else 2) * self.style.width
        if self.line_cols + cols > self.columns:
            self._print_line()  # the head is full: the printer wraps by itself
        self.line += ch
        self.line_cols += cols
        return used, b""

    def _print_line(self) -> None:
        if self.offline:
            self.dropped += 1
            self.line, self.line_cols = "", 0
            return
        self.current.append(Printed(self.line, Style(**vars(self.style))))
        self.line, self.line_cols = "", 0

    def _esc(self, b: bytearray) -> tuple[int, bytes]:
        if len(b) < 2:
            return 0, b""
        cmd = b[1]
        if cmd == 0x40:  # ESC @ initialize
            self._reset_modes()
            self.chinese = self.boots_chinese
            return 2, b""
        if cmd in (0x21, 0x61, 0x45, 0x64, 0x74, 0x47):
            if len(b) < 3:
                return 0, b""
            n = b[2]
            if cmd == 0x21:  # ESC ! n: b3 emphasized, b4 double height, b5 double width
                self.style.bold = bool(n & 0x08)
                self.style.height = 2 if n & 0x10 else 1
                self.style.width = 2 if n & 0x20 else 1
            elif cmd == 0x61:
                self.style.align = {0: 0, 1: 1, 2: 2, 48: 0, 49: 1, 50: 2}.get(n, self.style.align)
            elif cmd in (0x45, 0x47):
                self.style.bold = bool(n & 1)
            elif cmd == 0x64:  # ESC d n: print the buffer and feed n lines
                if self.line:
                    self._print_line()
                for _ in range(n):
                    self._print_line()
            else:
                self.code_table = n
            return 3, b""
        if cmd == 0x2A:  # ESC * m nL nH d1..dk: bit image, 8- or 24-dot
            if len(b) < 5:
                return 0, b""
            k = (b[3] + 256 * b[4]) * (3 if b[2] in (32, 33) else 1)
            return (5 + k, b"") if len(b) >= 5 + k else (0, b"")
        need = ESC_PARAMS.get(cmd, 0)
        return (2 + need, b"") if len(b) >= 2 + need else (0, b"")

    def _gs(self, b: bytearray) -> tuple[int, bytes]:
        if len(b) < 2:
            return 0, b""
        cmd = b[1]
        if cmd == 0x49:  # GS I n: printer ID; an n the printer lacks is answered with nothing
            return (3, PRINTER_ID.get(b[2], b"")) if len(b) >= 3 else (0, b"")
        if cmd == 0x21:  # GS ! n: high nibble width−1, low nibble height−1
            if len(b) < 3:
                return 0, b""
            self.style.width = (b[2] >> 4) + 1
            self.style.height = (b[2] & 0x0F) + 1
            return 3, b""
        if cmd == 0x56:  # GS V m, or GS V 65/66 n
            if len(b) < 3:
                return 0, b""
            if b[2] in (65, 66):
                if len(b) < 4:
                    return 0, b""
                self._cut()
                return 4, b""
            self._cut()
            return 3, b""
        if cmd == 0x61:  # GS a n: ASB (remembered, not pushed)
            if len(b) < 3:
                return 0, b""
            self.asb = b[2]
            return 3, b""
        if cmd == 0x28:  # GS ( x pL pH data
            if len(b) < 5:
                return 0, b""
            k = b[3] + 256 * b[4]
            if len(b) < 5 + k:
                return 0, b""
            if b[2] == 0x6B:
                self._qr_function(bytes(b[5 : 5 + k]))
            return 5 + k, b""
        if cmd == 0x76 and len(b) >= 2:  # GS v 0 m xL xH yL yH d1..dk: raster image
            if len(b) < 8:
                return 0, b""
            k = (b[4] + 256 * b[5]) * (b[6] + 256 * b[7])
            return (8 + k, b"") if len(b) >= 8 + k else (0, b"")
        if cmd == 0x6B:  # GS k m ...: barcode. m 0–6: NUL-terminated; m 65–73: length n
            if len(b) < 3:
                return 0, b""
            if b[2] <= 6:
                end = b.find(0, 3)
                return (end + 1, b"") if end >= 0 else (0, b"")
            if len(b) < 4:
                return 0, b""
            return (4 + b[3], b"") if len(b) >= 4 + b[3] else (0, b"")
        need = GS_PARAMS.get(cmd, 0)
        return (2 + need, b"") if len(b) >= 2 + need else (0, b"")

    def _fs(self, b: bytearray) -> tuple[int, bytes]:
        if len(b) < 2:
            return 0, b""
        if b[1] == 0x26:  # FS & Chinese (Kanji) mode on
            self.chinese = True
            return 2, b""
        if b[1] == 0x2E:  # FS . off
            self.chinese = False
            return 2, b""
        need = FS_PARAMS.get(b[1], 0)
        return (2 + need, b"") if len(b) >= 2 + need else (0, b"")

    def _qr_function(self, body: bytes) -> None:
        """GS ( k with cn = 0x31 (QR): fn 0x43 size, 0x50 store, 0x51 print (§5.1)."""
        if len(body) < 2 or body[0] != 0x31:
            return
        fn = body[1]
        if fn == 0x43 and len(body) >= 3:
            self.qr_module = body[2]
        elif fn == 0x50 and len(body) >= 3:  # store: m = 0x30, then the data
            self.qr_data = body[3:]
        elif fn == 0x51:
            if self.offline:
                self.dropped += len(body)
            elif self.qr_data:
                data = self.qr_data.decode("utf-8", errors="replace")
                self.current.append(Printed(style=Style(**vars(self.style)), qr=data, qr_module=self.qr_module))

    def _cut(self) -> None:
        if self.offline:
            return  # a stopped printer does not cut either
        if self.line:
            self._print_line()
        self.cuts += 1
        self.cut_receipts.append(self.current)
        self.current = []

    # -- faults and the control socket --------------------------------------------------------
    FAULTS = ("paper_out", "paper_near_end", "paper_ok", "open_cover", "close_cover", "cutter_error", "clear_errors")

    def _apply(self, fault: str) -> None:
        if fault == "paper_out":
            self.paper_out = True
        elif fault == "paper_near_end":
            self.paper_near_end = True
        elif fault == "paper_ok":
            self.paper_out = self.paper_near_end = False
        elif fault == "open_cover":
            self.cover_open = True
        elif fault == "close_cover":
            self.cover_open = False
        elif fault == "cutter_error":
            self.cutter_error = True
        elif fault == "clear_errors":
            self.cutter_error = False

    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd in self.FAULTS:
            after = int(args.get("after_bytes", 0))
            if after > 0:  # e.g. the cover opened while a job is coming in
                self._pending.append((after, cmd))
            else:
                self._apply(cmd)
            return None
        if cmd == "receipts":
            return [receipt_text(r) for r in self.cut_receipts]
        if cmd == "render_png":
            from .escpos_render import render_png

            # "file" because call()/call_sync() take the socket as ``path``; raw JSON may say "path"
            path = str(args["file"] if "file" in args else args["path"])
            receipt = self.cut_receipts[-1] if self.cut_receipts else self.current
            render_png(receipt, path, self.columns)
            return path
        if cmd == "clear":
            self.clear()
            return None
        raise ControlError(f"unknown command {cmd!r}")

    def snapshot(self) -> dict[str, Any]:
        return {
            "paper_out": self.paper_out,
            "paper_near_end": self.paper_near_end,
            "cover_open": self.cover_open,
            "cutter_error": self.cutter_error,
            "chinese_mode": self.chinese,
            "cuts": self.cuts,
            "receipts": len(self.cut_receipts),
            "uncut": receipt_text(self.current),
            "dropped_bytes": self.dropped,
            "status_queries": self.status_queries,
            "asb": self.asb,
        }


def receipt_text(receipt: list[Printed]) -> str:
    """The receipt as text, one line per printed line, trailing blank feed dropped."""
    lines = [p.as_text() for p in receipt]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)

"""A second-generation ID card reader module (SAM_V serial frames), device side, from the reader notes §3.

Not built on hal.protocols.idcard (see hal/emulators/model.py for why): frames are cut, checked
and built here again from the notes.

Receive logic (§3.1): wait for AA AA AA 96 69, read LEN_H LEN_L, then LEN more bytes. A frame
whose XOR fails answers SW3 10; a length outside what any command can have answers 11; an
unknown CMD PARA answers 21 (§3.3). Find answers 9F with a card on the reader and 80 without;
select 90 / 81; read 30 01 answers the 1295-byte base-info frame (§3.3) or 41.

``reread`` (default True): whether a card already read is still reported by find. §3.7 notes
many readers stop answering 9F until the card is presented again; set False to behave so.

Control commands: ``place_card`` (name, gender, nation, birth, address, id_number, authority,
valid_from, valid_to, optional photo as hex), ``remove_card``, ``fail_next_read`` (the card is
pulled away during the next read: 41, and it is gone), ``sam_fault`` (SW3 for status/reset,
e.g. 60), plus the runner's line faults.
"""
from __future__ import annotations

import collections
import hashlib
from typing import Any

from .model import ControlError, EmulatorModel

HEAD = b"\xaa\xaa\xaa\x96\x69"
GAP_S = 0.5

# §3.4: field -> (offset, bytes) in the 256-byte text block
LAYOUT = {
    "name": (0, 30), "gender": (30, 2), "nation": (32, 4), "birth": (36, 16), "address": (52, 70),
    "id_number": (122, 36), "authority": (158, 30), "valid_from": (188, 16), "valid_to": (204, 16),
}
GENDER_CODES = {"男": "1", "女": "2", "未知": "0", "未说明": "9"}
# A few GB 3304 names accepted in place of the code (the rest by code).
NATION_CODES = {"汉": "01", "蒙古": "02", "回": "03", "藏": "04", "维吾尔": "05", "苗": "06", "壮": "08", "满": "11"}


def _chk(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def _answer(sw3: int, data: bytes = b"") -> bytes:
    """§3.1 response: SW1 SW2 are 00 00, LEN covers SW1..CHK."""
    body = (3 + len(data) + 1).to_bytes(2, "big") + bytes([0, 0, sw3]) + data
    return HEAD + body + bytes([_chk(body)])


def text_block(card: dict[str, str]) -> bytes:
    """§3.4: each field UCS-2LE, right-padded with spaces (20 00) to its width."""
    block = bytearray(" ".encode("utf-16-le") * 128)
    for field, (offset, size) in LAYOUT.items():
        raw = str(card.get(field, "")).encode("utf-16-le")
        if len(raw) > size:
            raise ControlError(f"place_card: {field} longer than {size // 2} characters")
        block[offset: offset + len(raw)] = raw
    return bytes(block)


class IdCardReaderModel(EmulatorModel):
    name = "idcard"

    def __init__(self, reread: bool = True) -> None:
        self.reread = reread
        self.card: dict[str, str] | None = None
        self.photo = b""
        self.selected = False
        self.already_read = False
        self.fail_read = False
        self.sam_sw3 = 0x90
        self.commands: collections.deque[tuple[float, str]] = collections.deque(maxlen=200)
        self.reads = 0
        self._rx = bytearray()
        self._last = 0.0

    # -- wire ----------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> bytes:
        if self._rx and now - self._last > GAP_S:
            self._rx.clear()
        self._last = now
        self._rx += data
        out = bytearray()
        rx = self._rx
        while rx:
            start = rx.find(HEAD)
            if start < 0:
                keep = next((k for k in range(4, 0, -1) if rx.endswith(HEAD[:k])), 0)
                del rx[: len(rx) - keep]
                break
            del rx[:start]
            if len(rx) < 7:
                break
            length = rx[5] << 8 | rx[6]
            if length < 3 or length > 64:  # a bare command has 3; none of ours carries much data
                del rx[:7]
                out += _answer(0x11)
                continue
            if len(rx) < 7 + length:
                break
            frame = bytes(rx[: 7 + length])
            del rx[: 7 + length]
            if _chk(frame[5:-1]) != frame[-1]:
                out += _answer(0x10)
                continue
            out += self._command(frame[7], frame[8], frame[9:-1], now)
        return bytes(out)

    def _command(self, cmd: int, para: int, data: bytes, now: float) -> bytes:
        self.commands.append((now, f"{cmd:02X}{para:02X}"))
        if (cmd, para) in ((0x10, 0xFF), (0x11, 0xFF)):  # reset SAM, SAM status
            return _answer(self.sam_sw3)
        if (cmd, para) == (0x12, 0xFF):  # SAM ID: 16 bytes
            return _answer(0x90, bytes(range(16)))
        if (cmd, para) == (0x61, 0xFF):  # max RF frame bytes
            return _answer(0x90)
        if (cmd, para) == (0x20, 0x01):  # find
            if self.card is None or (self.already_read and not self.reread):
                return _answer(0x80)
            return _answer(0x9F, bytes(4))
        if (cmd, para) == (0x20, 0x02):  # select
            if self.card is None:
                return _answer(0x81)
            self.selected = True
            return _answer(0x90, bytes(8))
        if (cmd, para) in ((0x30, 0x01), (0x30, 0x10)):
            return self._read(with_fp=para == 0x10)
        return _answer(0x21)

    def _read(self, with_fp: bool) -> bytes:
        if self.card is None or not self.selected:
            return _answer(0x41)
        if self.fail_read:  # pulled away mid-read
            self.fail_read = False
            self.card = None
            self.selected = False
            return _answer(0x41)
        self.reads += 1
        self.already_read = True
        self.selected = False
        text = text_block(self.card)
        lengths = len(text).to_bytes(2, "big") + len(self.photo).to_bytes(2, "big")
        if with_fp:
            lengths += (0).to_bytes(2, "big")  # no fingerprint on this card
        return _answer(0x90, lengths + text + self.photo)

    # -- control -------------------------------------------------------------------------
    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "place_card":
            card = {k: str(args.get(k, "")) for k in LAYOUT}
            card["gender"] = GENDER_CODES.get(card["gender"], card["gender"])
            card["nation"] = NATION_CODES.get(card["nation"], card["nation"])
            text_block(card)  # fields that do not fit are refused here, not at read time
            photo = bytes.fromhex(args["photo"]) if args.get("photo") else _blob(card)
            if len(photo) != 1024:
                raise ControlError(f"place_card: photo of {len(photo)} bytes, a WLT photo has 1024")
            self.card, self.photo = card, photo
            self.already_read = self.selected = False
            return None
        if cmd == "remove_card":
            self.card = None
            self.selected = self.already_read = False
            return None
        if cmd == "fail_next_read":
            self.fail_read = True
            return None
        if cmd == "sam_fault":
            self.sam_sw3 = int(str(args.get("sw3", "60")), 16)
            return None
        if cmd == "find_times":  # when each find arrived (monotonic s), for the polling-rate test
            return [t for t, c in self.commands if c == "2001"]
        raise ControlError(f"unknown command {cmd!r}")

    def snapshot(self) -> dict[str, Any]:
        # Never the card's text: the emulator's output is scanned for plaintext PII too.
        return {"card_present": self.card is not None, "reads": self.reads,
                "last_commands": [c for _, c in list(self.commands)[-10:]]}


def _blob(card: dict[str, str]) -> bytes:
    """An opaque 1024-byte stand-in for the WLT photo (§3.5), different per card."""
    seed = hashlib.sha256(("wlt:" + card.get("id_number", "")).encode()).digest()
    return b"WLT" + (seed * 33)[:1021]

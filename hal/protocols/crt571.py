"""CREATOR CRT-571/591 (and QUIO QU-TK-F3x) 0xF2 frames, host side, without I/O.

Why a codec of its own: the 0xF2 family shares nothing with the CRT-541's 7-byte frames or
the K720's ASCII-address frames except the XOR checksum (card-dispensers.md §4.1-4.3), and a
dispenser that answers with a frame of the wrong family must end in a named fault, not in a
half-parsed status.

    codec = Crt571Codec(address=0)
    wire = codec.encode(Command(0x31, 0x30))    # status enquiry
    codec.feed(chunk, now)                      # bytes read, any chunking
    for event in codec.events(): ...            # Ack / Nak / Enq / Eot / Positive / Negative / BadFrame

Frame layout (§4.2):
    command   F2 ADDR LEN_H LEN_L 'C' CM PM [data]           03 BCC
    positive  F2 ADDR LEN_H LEN_L 'P' CM PM st0 st1 st2 [data] 03 BCC
    negative  F2 ADDR LEN_H LEN_L 'N' CM PM e1 e0 [data]     03 BCC
LEN counts the TEXT (from 'C'/'P'/'N' to the end of data); BCC = XOR from STX through ETX.
"""
from __future__ import annotations

from dataclasses import dataclass

STX = 0xF2  # §4.2: this family's start byte (not 0x02)
ETX = 0x03
ACK = 0x06  # §4.2 control bytes
NAK = 0x15
EOT = 0x04  # host -> device: cancel
ENQ = 0x05  # older Creator tools send it after the ACK; the F3x manual does not
MAX_PACKET = 1024  # §4.2: max packet 1024 bytes
MAX_DATA = 512  # §4.2: data <= 512
FRAME_OVERHEAD = 6  # STX ADDR LEN_H LEN_L ... ETX BCC


class Crt571Error(ValueError):
    """The codec's own error: a command that cannot be put on the wire."""


def bcc(data: bytes) -> int:
    """§4.2: XOR of every byte from STX through ETX."""
    value = 0
    for byte in data:
        value ^= byte
    return value


@dataclass(frozen=True)
class Command:
    cm: int
    pm: int
    data: bytes = b""


@dataclass(frozen=True)
class Ack:
    """The device accepted the command frame and will execute it."""


@dataclass(frozen=True)
class Nak:
    """The device refused the frame (bad format or BCC): nothing was executed."""


@dataclass(frozen=True)
class Enq:
    pass


@dataclass(frozen=True)
class Eot:
    pass


@dataclass(frozen=True)
class Positive:
    """'P' reply: st0 card position, st1 stacker level, st2 error-card bin (ASCII digits)."""

    address: int
    cm: int
    pm: int
    st0: str
    st1: str
    st2: str
    data: bytes = b""


@dataclass(frozen=True)
class Negative:
    """'N' reply: ``code`` is the two ASCII digits e1 e0 (e.g. "60" IC power)."""

    address: int
    cm: int
    pm: int
    code: str
    data: bytes = b""


@dataclass(frozen=True)
class BadFrame:
    """Bytes that were not a good frame: wrong BCC, no ETX, noise, a frame for another unit."""

    reason: str
    raw: bytes


Event = Ack | Nak | Enq | Eot | Positive | Negative | BadFrame
_CONTROLS = {ACK: Ack(), NAK: Nak(), ENQ: Enq(), EOT: Eot()}


def encode(address: int, command: Command) -> bytes:
    """One command frame for unit ``address`` (0x00-0x0F, §4.2)."""
    if not 0 <= address <= 0x0F:
        raise Crt571Error(f"address {address} outside 0x00-0x0F")
    if not (0 <= command.cm <= 0xFF and 0 <= command.pm <= 0xFF):
        raise Crt571Error(f"CM/PM must be bytes, got {command.cm!r}/{command.pm!r}")
    if len(command.data) > MAX_DATA:
        raise Crt571Error(f"data of {len(command.data)} bytes exceeds {MAX_DATA}")
    text = bytes([ord("C"), command.cm, command.pm]) + command.data
    body = bytes([STX, address, len(text) >> 8, len(text) & 0xFF]) + text + bytes([ETX])
    return body + bytes([bcc(body)])


def _parse_text(address: int, text: bytes) -> Event:
    kind = text[0]
    if kind == ord("P") and len(text) >= 6:
        st = text[3:6].decode("latin-1")
        return Positive(address, text[1], text[2], st[0], st[1], st[2], bytes(text[6:]))
    if kind == ord("N") and len(text) >= 5:
        return Negative(address, text[1], text[2], text[3:5].decode("latin-1"), bytes(text[5:]))
    return BadFrame(f"unexpected text type 0x{kind:02X} of {len(text)} bytes", bytes(text))


class Crt571Codec:
    """Host side of one unit on the line. Never raises on input: bad bytes become BadFrame.

    ``gap`` (s): a frame still incomplete after this long is dropped as BadFrame("incomplete"),
    so a lost byte cannot swallow the next reply.
    """

    def __init__(self, address: int = 0, gap: float = 0.5) -> None:
        if not 0 <= address <= 0x0F:
            raise Crt571Error(f"address {address} outside 0x00-0x0F")
        self.address = address
        self.gap = gap
        self._buf = bytearray()
        self._last = 0.0
        self._events: list[Event] = []

    def encode(self, command: Command) -> bytes:
        return encode(self.address, command)

    def reset(self) -> None:
        """Forget partial input and unread events (before a fresh command)."""
        self._buf.clear()
        self._events.clear()

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def feed(self, data: bytes, now: float = 0.0) -> None:
        if self._buf and now - self._last > self.gap:
            self._events.append(BadFrame("incomplete", bytes(self._buf)))
            self._buf.clear()
        if data:
            self._last = now
        self._buf += data
        self._parse()

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            first = buf[0]
            if first != STX:
                if first in _CONTROLS:
                    self._events.append(_CONTROLS[first])
                    del buf[0]
                    continue
                end = 1
                while end < len(buf) and buf[end] != STX and buf[end] not in _CONTROLS:
                    end += 1
                self._events.append(BadFrame("noise", bytes(buf[:end])))
                del buf[:end]
                continue
            if len(buf) < 4:
                return
            length = buf[2] << 8 | buf[3]
            if length == 0 or length + FRAME_OVERHEAD > MAX_PACKET:
                self._events.append(BadFrame(f"bad length {length}", bytes(buf[:4])))
                del buf[0]
                continue
            total = length + FRAME_OVERHEAD
            if len(buf) < total:
                return
            frame = bytes(buf[:total])
            if frame[-2] != ETX:
                self._events.append(BadFrame("no ETX where LEN puts it", frame))
                del buf[0]  # resynchronise on the next STX
                continue
            del buf[:total]
            if bcc(frame[:-1]) != frame[-1]:
                self._events.append(BadFrame("bad BCC", frame))
                continue
            if frame[1] != self.address:
                self._events.append(BadFrame(f"frame for unit {frame[1]}", frame))
                continue
            self._events.append(_parse_text(frame[1], frame[4:-2]))

"""Mingte / TTCE K720, K730, K750 frames and the ACK/ENQ handshake, host side, without I/O.

Why the handshake matters: the device only *executes* a command when the host follows its
ACK with ENQ (card-dispensers.md §4.3), so a command whose ACK was lost can be sent again
without dispensing twice. The driver leans on that; this codec only says what arrived.

    codec = K720Codec(address=0)
    wire = codec.encode(b"AP")       # status; b"DC" dispense, b"FC7" to read position, ...
    enq = codec.enq()                # "execute it", after the ACK
    codec.feed(chunk, now)
    for event in codec.events(): ... # Ack / Nak / Status / Positive / Negative / BadFrame

Frames (§4.3):
    command   02 ADDH ADDL LEN_H LEN_L CM PM [data] 03 BCC
    reply     02 ADDH ADDL LEN_H LEN_L 'P' CM PM [data] 03 BCC   ('N' CM PM ERR_CD on error)
    AP / RF   02 ADDH ADDL 00 06 'S' 'F' d1 d2 d3 d4 03 BCC        (RF: three digits)
    control   06|15|05|04 ADDH ADDL
ADDH ADDL are two ASCII digits '00'..'15'; BCC = XOR STX..ETX inclusive.
"""
from __future__ import annotations

from dataclasses import dataclass

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
ENQ = 0x05
EOT = 0x04
MAX_PACKET = 300  # §4.3: "max ~300 bytes"
FRAME_OVERHEAD = 7  # STX ADDH ADDL LEN_H LEN_L ... ETX BCC


class K720Error(ValueError):
    """The codec's own error: a command that cannot be put on the wire."""


def bcc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def address_bytes(address: int) -> bytes:
    """§4.3 DIP table: unit 10 is '1''0', not 0x0A."""
    if not 0 <= address <= 15:
        raise K720Error(f"address {address} outside 0-15")
    return f"{address:02d}".encode()


def _address_of(pair: bytes) -> int | None:
    if len(pair) == 2 and pair.isdigit():
        value = int(pair)
        return value if value <= 15 else None
    return None


@dataclass(frozen=True)
class ApStatus:
    """The four flag digits of an AP reply (§4.3), each a 4-bit group."""

    bin_full: bool = False  # digit 1: 8 recycling box full
    cannot_execute: bool = False  # 4
    prepare_failed: bool = False  # 2 card-prepare failed (K720)
    box_pre_full: bool = False  # 1 (K750)
    dispensing: bool = False  # digit 2: 8
    collecting: bool = False  # 4
    dispense_error: bool = False  # 2
    collect_error: bool = False  # 1
    box_full: bool = False  # digit 3: 8 (K750)
    overlap: bool = False  # 4
    jam: bool = False  # 2
    pre_empty: bool = False  # 1 card pre-empty (low)
    empty: bool = False  # digit 4: 8 card box empty
    sensor3: bool = False  # 4
    sensor2: bool = False  # 2
    sensor1: bool = False  # 1

    @classmethod
    def from_digits(cls, digits: str) -> "ApStatus":
        """Four hex digits, most significant flag group first; K720Error if not."""
        if len(digits) != 4 or any(c not in "0123456789ABCDEFabcdef" for c in digits):
            raise K720Error(f"AP status digits {digits!r} are not 4 hex digits")
        bits = int(digits, 16)
        names = [f.name for f in cls.__dataclass_fields__.values()]  # declared order: MSB first
        return cls(**{name: bool(bits >> (15 - i) & 1) for i, name in enumerate(names)})

    @property
    def card_in_channel(self) -> bool:
        return self.sensor1 or self.sensor2 or self.sensor3


@dataclass(frozen=True)
class Ack:
    address: int


@dataclass(frozen=True)
class Nak:
    address: int


@dataclass(frozen=True)
class Status:
    """An "SF" reply to AP (four digits) or RF (three)."""

    address: int
    digits: str

    def ap(self) -> ApStatus:
        return ApStatus.from_digits(self.digits)


@dataclass(frozen=True)
class Positive:
    address: int
    cm: int
    pm: int
    data: bytes = b""


# ERR_CD, one byte (the K720/K730/K750 protocol document: every error reply is
# 02 ADDH ADDL 00 04 'N' CM PM ERR_CD 03 BCC, RELEN 4, and its error-code table)
UNDEFINED_COMMAND = 0x00
ERRORS = {
    0x00: "undefined command",
    0x01: "command parameter error",
    0x02: "command data error",
    0x03: "command could not be executed",
    0x04: "command execution failed",
    0x41: "search card failure",
    0x42: "read serial number failure",
    0x43: "check password error",
    0x44: "choose card error",
    0x45: "read data failure",
    0x46: "write data failure",
    0x49: "increment failure",
    0x4A: "devalue failure",
}


@dataclass(frozen=True)
class Negative:
    """The error reply: ``code`` is the ERR_CD byte (0x00 undefined command, see ERRORS);
    ``extra`` what follows it (ISO 15693 card commands add a second error byte)."""

    address: int
    cm: int
    pm: int
    code: int
    extra: bytes = b""

    @property
    def meaning(self) -> str:
        return ERRORS.get(self.code, "not in the error table")


@dataclass(frozen=True)
class BadFrame:
    reason: str
    raw: bytes


Event = Ack | Nak | Status | Positive | Negative | BadFrame


def encode(address: int, payload: bytes) -> bytes:
    """Command frame: ``payload`` is CM PM [data], e.g. b"AP", b"FC7"."""
    if len(payload) < 2:
        raise K720Error(f"payload {payload!r}: a command has at least CM and PM")
    body = bytes([STX]) + address_bytes(address) + len(payload).to_bytes(2, "big") + payload
    if len(body) + 2 > MAX_PACKET:
        raise K720Error(f"command of {len(body) + 2} bytes exceeds {MAX_PACKET}")
    body += bytes([ETX])
    return body + bytes([bcc(body)])


def _parse_text(address: int, text: bytes) -> Event:
    if text[:2] == b"SF" and len(text) in (5, 6):
        digits = text[2:].decode("latin-1")
        if all(c in "0123456789ABCDEFabcdef" for c in digits):
            return Status(address, digits)
        return BadFrame(f"status digits {digits!r} not hex", text)
    if text[:1] == b"P" and len(text) >= 3:
        return Positive(address, text[1], text[2], bytes(text[3:]))
    if text[:1] == b"N" and len(text) >= 4:
        return Negative(address, text[1], text[2], text[3], bytes(text[4:]))
    return BadFrame("unknown reply text", text)


class K720Codec:
    """Host side of one unit; never raises on input (bad bytes become BadFrame events).

    ``gap`` (s): a reply still incomplete after this long is dropped (§4.3 voids commands
    after a 15-50 ms gap; replies get more slack, a USB adapter may batch bytes).
    """

    def __init__(self, address: int = 0, gap: float = 0.5) -> None:
        self.address = address
        self._addr = address_bytes(address)
        self.gap = gap
        self._buf = bytearray()
        self._last = 0.0
        self._events: list[Event] = []

    def encode(self, payload: bytes) -> bytes:
        return encode(self.address, payload)

    def enq(self) -> bytes:
        """§4.3: "execute command request", sent after the device's ACK."""
        return bytes([ENQ]) + self._addr

    def eot(self) -> bytes:
        return bytes([EOT]) + self._addr

    def reset(self) -> None:
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

    def _mine(self, address: int | None, raw: bytes) -> bool:
        if address == self.address:
            return True
        self._events.append(BadFrame("bad or foreign address", raw))
        return False

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            first = buf[0]
            if first in (ACK, NAK):
                if len(buf) < 3:
                    return
                raw = bytes(buf[:3])
                address = _address_of(raw[1:3])
                if address is None:  # not an address: treat the byte as noise, rescan
                    self._events.append(BadFrame("control byte without address", raw[:1]))
                    del buf[0]
                    continue
                del buf[:3]
                if self._mine(address, raw):
                    self._events.append(Ack(address) if first == ACK else Nak(address))
                continue
            if first != STX:
                end = 1
                while end < len(buf) and buf[end] not in (STX, ACK, NAK):
                    end += 1
                self._events.append(BadFrame("noise", bytes(buf[:end])))
                del buf[:end]
                continue
            if len(buf) < 5:
                return
            length = buf[3] << 8 | buf[4]
            address = _address_of(bytes(buf[1:3]))
            if address is None or length == 0 or length + FRAME_OVERHEAD > MAX_PACKET:
                self._events.append(BadFrame("bad header", bytes(buf[:5])))
                del buf[0]
                continue
            total = length + FRAME_OVERHEAD
            if len(buf) < total:
                return
            frame = bytes(buf[:total])
            if frame[-2] != ETX:
                self._events.append(BadFrame("no ETX where LEN puts it", frame))
                del buf[0]
                continue
            del buf[:total]
            if bcc(frame[:-1]) != frame[-1]:
                self._events.append(BadFrame("bad BCC", frame))
                continue
            if self._mine(address, frame):
                self._events.append(_parse_text(address, frame[5:-2]))

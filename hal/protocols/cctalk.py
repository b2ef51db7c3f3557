"""ccTalk framing without I/O: requests in, bytes out; bytes in (any chunking), replies out.

ccTalk has no start delimiter: frames are found by counting (after dest and N come N+3 more
bytes) and recovered after a 50 ms silence (notes §1.5). The host shares the wire with its
own transmitter, so many adapters hand our request back before the reply (local echo, §1.1);
the codec skips exactly the bytes it sent and calls a mismatch a comms failure.

    codec = CcTalkCodec(echo=True)
    wire = codec.encode(Request(dest=2, header=229))
    codec.feed(chunk, now)
    for reply in codec.replies(): ...
    for problem in codec.errors(): ...   # ChecksumError, EchoMismatch, Resync

Time is passed in as ``now`` (seconds, monotonic); nothing here reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

HOST = 1  # §1.4: address 1 is the host
BROADCAST = 0
INTER_BYTE_TIMEOUT = 0.050  # §1.5: receiver discards a partial packet after 50 ms of silence
MAX_DATA = 255  # §1.2: N ranges 0-255

Checksum = Literal["simple", "crc16"]


class Header:
    """Header numbers the drivers use (§1.6, Part 2)."""

    REPLY = 0  # §1.2: header 0 marks a reply; N = 0 is the ACK
    RESET_DEVICE = 1
    COMMS_REVISION = 4
    NAK = 5
    BUSY = 6
    ROUTE_BILL = 154
    REQUEST_COUNTRY_SCALING = 156
    REQUEST_BILL_ID = 157
    READ_BUFFERED_BILL_EVENTS = 159
    REQUEST_CIPHER_KEY = 160
    PUMP_RNG = 161
    TEST_HOPPER = 163
    ENABLE_HOPPER = 164
    REQUEST_HOPPER_STATUS = 166
    DISPENSE_HOPPER_COINS = 167
    REQUEST_COIN_ID = 184
    REQUEST_PAYOUT_HIGH_LOW_STATUS = 217
    MODIFY_MASTER_INHIBIT = 228
    READ_BUFFERED_CREDIT = 229
    MODIFY_INHIBIT_STATUS = 231
    SOFTWARE_REVISION = 241
    SERIAL_NUMBER = 242
    PRODUCT_CODE = 244
    EQUIPMENT_CATEGORY = 245
    MANUFACTURER_ID = 246
    SIMPLE_POLL = 254


class CcTalkError(ValueError):
    """The codec's own error: a request that cannot be put on the wire."""


@dataclass(frozen=True)
class Request:
    dest: int
    header: int
    data: bytes = b""
    src: int = HOST


@dataclass(frozen=True)
class Reply:
    """A complete, checksummed frame addressed to the host.

    ``src`` is the answering device under the simple checksum, and None under CRC-16, where
    that byte carries the CRC's low half (§1.2).
    """

    dest: int
    src: int | None
    header: int
    data: bytes = b""

    @property
    def is_ack(self) -> bool:
        return self.header == Header.REPLY and not self.data

    @property
    def is_nak(self) -> bool:
        return self.header == Header.NAK


@dataclass(frozen=True)
class ChecksumError:
    """A frame whose checksum did not add up (line noise): the slave would stay silent; we retry."""

    frame: bytes


@dataclass(frozen=True)
class EchoMismatch:
    """The bytes coming back are not the ones we sent: a collision or a broken adapter (§1.1)."""

    expected: bytes
    got: bytes


@dataclass(frozen=True)
class Resync:
    """A partial frame was dropped after the 50 ms inter-byte timeout (§1.5)."""

    discarded: bytes


FrameProblem = ChecksumError | EchoMismatch | Resync


def simple_checksum(body: bytes) -> int:
    """§1.2: the byte that makes the 8-bit sum of the whole packet zero."""
    return -sum(body) & 0xFF


def crc16_xmodem(data: bytes) -> int:
    """§1.2, Appendix 9: poly 0x1021, init 0, no reflection, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _check_byte(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise CcTalkError(f"{name} must be a byte 0..255, not {value!r}")


def encode_frame(dest: int, src: int, header: int, data: bytes, checksum: Checksum) -> bytes:
    """One packet in either form. Under CRC-16 ``src`` is ignored (its slot carries the CRC)."""
    for name, value in (("dest", dest), ("src", src), ("header", header)):
        _check_byte(name, value)
    data = bytes(data)
    if len(data) > MAX_DATA:
        raise CcTalkError(f"at most {MAX_DATA} data bytes, not {len(data)}")
    if checksum == "simple":
        body = bytes([dest, len(data), src, header]) + data
        return body + bytes([simple_checksum(body)])
    if checksum == "crc16":
        crc = crc16_xmodem(bytes([dest, len(data), header]) + data)
        return bytes([dest, len(data), crc & 0xFF, header]) + data + bytes([crc >> 8])
    raise CcTalkError(f"checksum must be 'simple' or 'crc16', not {checksum!r}")


def decode_frame(frame: bytes, checksum: Checksum) -> tuple[int, int | None, int, bytes] | None:
    """(dest, src, header, data) of one whole packet, or None when its checksum is wrong."""
    if len(frame) < 5 or len(frame) != frame[1] + 5:
        raise CcTalkError(f"not one whole packet: {frame.hex(' ')}")
    dest, n, third, header = frame[0], frame[1], frame[2], frame[3]
    data = bytes(frame[4 : 4 + n])
    if checksum == "simple":
        if sum(frame) & 0xFF:
            return None
        return dest, third, header, data
    if checksum == "crc16":
        crc = crc16_xmodem(bytes([dest, n, header]) + data)
        if crc != third | (frame[-1] << 8):
            return None
        return dest, None, header, data
    raise CcTalkError(f"checksum must be 'simple' or 'crc16', not {checksum!r}")


class CcTalkCodec:
    """The host's side of one ccTalk line.

    ``echo``: the adapter returns our own bytes first; skip exactly those (§1.1).
    ``checksum``: "simple" (8-bit) or "crc16"; per device in the spec, so a bus with mixed
    devices keeps one codec per checksum form.
    Frames not addressed to the host (another host's traffic, our own echo on an adapter
    we believed silent) are counted through and dropped, keeping us in step.
    """

    def __init__(
        self,
        echo: bool = True,
        checksum: Checksum = "simple",
        host: int = HOST,
        gap: float = INTER_BYTE_TIMEOUT,
    ) -> None:
        if checksum not in ("simple", "crc16"):
            raise CcTalkError(f"checksum must be 'simple' or 'crc16', not {checksum!r}")
        self.echo = echo
        self.checksum: Checksum = checksum
        self.host = host
        self.gap = gap
        self._echo_left = b""  # our own bytes still to come back
        self._echo_seen = 0  # how many of them already did
        self._buf = bytearray()  # a partial frame
        self._last_rx: float | None = None
        self._replies: list[Reply] = []
        self._errors: list[FrameProblem] = []
        self._draining = False  # after an echo mismatch: drop bytes until the line goes quiet

    def encode(self, request: Request) -> bytes:
        """Bytes to write for ``request``; with echo on, they are expected back first."""
        wire = encode_frame(request.dest, request.src, request.header, request.data, self.checksum)
        if self.echo:
            self._echo_left += wire
        return wire

    def reset(self) -> None:
        """Forget partial input, pending echo and unread results (before each new transaction)."""
        self._replies.clear()
        self._errors.clear()
        self._echo_left = b""
        self._echo_seen = 0
        self._buf.clear()
        self._draining = False

    def feed(self, chunk: bytes, now: float) -> None:
        """Bytes as read from the line at time ``now``. Never raises on any input."""
        if self._last_rx is not None and now - self._last_rx > self.gap:
            self._on_gap()
        if chunk:
            self._last_rx = now
        for byte in chunk:
            self._byte(byte)

    def _on_gap(self) -> None:
        # §1.5: a 50 ms silence ends whatever was in progress.
        self._draining = False
        if self._buf:
            self._errors.append(Resync(bytes(self._buf)))
            self._buf.clear()
        if self._echo_seen:  # half an echo and then silence: the rest is not coming
            self._errors.append(EchoMismatch(self._echo_left, b""))
            self._echo_left = b""
            self._echo_seen = 0

    def _byte(self, byte: int) -> None:
        if self._draining:
            return
        if self._echo_left:
            if byte == self._echo_left[0]:
                self._echo_left = self._echo_left[1:]
                self._echo_seen = 0 if not self._echo_left else self._echo_seen + 1
                return
            self._errors.append(EchoMismatch(self._echo_left, bytes([byte])))
            self._echo_left = b""
            self._echo_seen = 0
            self._draining = True
            return
        self._buf.append(byte)
        if len(self._buf) >= 2 and len(self._buf) == self._buf[1] + 5:
            frame = bytes(self._buf)
            self._buf.clear()
            decoded = decode_frame(frame, self.checksum)
            if decoded is None:
                self._errors.append(ChecksumError(frame))
                return
            dest, src, header, data = decoded
            if dest == self.host:
                self._replies.append(Reply(dest, src, header, data))

    @property
    def idle(self) -> bool:
        """Nothing half-received and no echo outstanding."""
        return not self._buf and not self._echo_left and not self._draining

    def replies(self) -> Iterator[Reply]:
        """Complete replies received so far (each handed out once)."""
        while self._replies:
            yield self._replies.pop(0)

    def errors(self) -> Iterator[FrameProblem]:
        """Framing problems seen so far (each handed out once)."""
        while self._errors:
            yield self._errors.pop(0)

"""ccTalk framing as a *device* on the bus sees it, written from the notes (cctalk.md §1.2, §1.5).

Deliberately independent of the driver's codec (hal/protocols/cctalk.py): if both sides shared
one misreading of the spec, the tests would pass and the kiosk would fail on a real bus.

A frame is ``[dest][N][src][header][data 1..N][checksum]`` (simple 8-bit checksum) or
``[dest][N][CRC LSB][header][data 1..N][CRC MSB]`` (CRC-16). There is no start byte: frames are
found by byte counting, and a gap of more than 50 ms between bytes throws away a partial frame.
"""
from __future__ import annotations

from dataclasses import dataclass

HOST = 1  # §1.4: address 1 is the host
BROADCAST = 0
INTER_BYTE_TIMEOUT = 0.050  # §1.5: receiver discards a partial packet after 50 ms of silence

SIMPLE = "simple"
CRC16 = "crc16"
CHECKSUMS = (SIMPLE, CRC16)

HDR_REPLY = 0  # §1.2: header 0 marks a reply; with N = 0 it is the ACK
HDR_NAK = 5  # §1.2: NAK = header 5, N = 0


def simple_checksum(body: bytes) -> int:
    """§1.2: the byte that makes the 8-bit sum of the whole packet 0."""
    return (-sum(body)) & 0xFF


def crc16(data: bytes) -> int:
    """§1.2 / Appendix 9: poly 0x1021, init 0, no reflection, no final XOR (CRC-16/XMODEM)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@dataclass(frozen=True)
class Request:
    """One checked frame from the host. ``src`` is None under CRC (that byte is half the CRC)."""

    dest: int
    src: int | None
    header: int
    data: bytes


def parse(raw: bytes, checksum: str) -> Request | None:
    """A complete frame checked with the device's checksum type; None if the check fails."""
    dest, n, third, header = raw[0], raw[1], raw[2], raw[3]
    data = bytes(raw[4 : 4 + n])
    if checksum == SIMPLE:
        if sum(raw) & 0xFF:
            return None
        return Request(dest, third, header, data)
    crc = crc16(bytes([dest, n, header]) + data)
    if third != crc & 0xFF or raw[-1] != crc >> 8:
        return None
    return Request(dest, None, header, data)


def build(dest: int, src: int, header: int, data: bytes, checksum: str) -> bytes:
    """A frame from a device: simple checksum names ``src``; CRC puts the CRC LSB in its place."""
    if len(data) > 255:
        raise ValueError("ccTalk carries at most 255 data bytes")
    if checksum == SIMPLE:
        body = bytes([dest, len(data), src, header]) + data
        return body + bytes([simple_checksum(body)])
    crc = crc16(bytes([dest, len(data), header]) + data)
    return bytes([dest, len(data), crc & 0xFF, header]) + data + bytes([crc >> 8])


class FrameSplitter:
    """Cuts the host's byte stream into frames by counting bytes (§1.5).

    After ``dest`` and ``N`` another N + 3 bytes follow. Bytes more than 50 ms apart start afresh,
    which is how a device that came in mid-frame (or heard noise) finds the frame boundary again.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._last = float("-inf")
        self.resyncs = 0  # partial frames thrown away on a gap

    def feed(self, data: bytes, now: float) -> list[bytes]:
        frames: list[bytes] = []
        if self._buf and data and now - self._last > INTER_BYTE_TIMEOUT:
            self._buf.clear()
            self.resyncs += 1
        for byte in data:
            self._buf.append(byte)
            if len(self._buf) >= 2 and len(self._buf) == self._buf[1] + 5:
                frames.append(bytes(self._buf))
                self._buf.clear()
        if data:
            self._last = now
        return frames

    def clear(self) -> None:
        self._buf.clear()

"""What every emulated ccTalk peripheral shares: identity headers, the event buffer, replies.

A peripheral answers ``handle(header, data, now)`` with ``(reply header, reply data)`` or None
for silence. Silence is the spec's answer to anything it does not support (§1.5, §1.11: "never
reply to an unsupported header"), so every header a device knows is listed explicitly.
"""
from __future__ import annotations

from typing import Any

from .cctalk_frame import HDR_NAK, HDR_REPLY, SIMPLE

Reply = tuple[int, bytes] | None
ACK: Reply = (HDR_REPLY, b"")
NAK: Reply = (HDR_NAK, b"")

# §1.6 common identification headers
H_RESET = 1
H_COMMS_REVISION = 4
H_BUILD_CODE = 192
H_SOFTWARE_REVISION = 241
H_SERIAL_NUMBER = 242
H_PRODUCT_CODE = 244
H_EQUIPMENT_CATEGORY = 245
H_MANUFACTURER = 246
H_POLLING_PRIORITY = 249
H_SELF_CHECK = 232
H_SIMPLE_POLL = 254


def next_counter(counter: int) -> int:
    """§1.7: 0 only after power-up or reset; 1, 2, ... 255, then 1 again (never 0)."""
    return 1 if counter >= 255 else counter + 1


class EventBuffer:
    """The 229 / 159 buffer (§1.7): a counter and five result pairs, result 1 the newest."""

    def __init__(self) -> None:
        self.counter = 0
        self.results: list[tuple[int, int]] = [(0, 0)] * 5

    def push(self, a: int, b: int) -> None:
        self.counter = next_counter(self.counter)
        self.results = [(a, b)] + self.results[:4]  # the oldest pair falls off the end

    def drop(self, count: int) -> None:
        """Events that happened but never reached the buffer (lost events, for tests)."""
        for _ in range(count):
            self.counter = next_counter(self.counter)

    def reset(self) -> None:
        self.counter = 0
        self.results = [(0, 0)] * 5

    def encode(self) -> bytes:
        """§1.7 / Table: [event counter][1A][1B]...[5A][5B] — 11 bytes."""
        return bytes([self.counter, *(x for pair in self.results for x in pair)])


def ascii_reply(text: str) -> Reply:
    return (HDR_REPLY, text.encode("ascii"))


class Peripheral:
    """Base of the coin acceptor, bill validator and hopper on the emulated bus."""

    category = ""  # Table 1 string, exactly as returned by hdr 245
    default_address = 0

    def __init__(
        self,
        *,
        address: int | None = None,
        checksum: str = SIMPLE,
        manufacturer: str = "KSK",
        product: str = "EMU",
        serial: int = 0,
        software: str = "1.0",
    ) -> None:
        self.address = self.default_address if address is None else address
        self.checksum = checksum
        self.manufacturer = manufacturer
        self.product = product
        self.serial = serial
        self.software = software
        self.events = EventBuffer()

    # -- requests ------------------------------------------------------------------------
    def handle(self, header: int, data: bytes, now: float) -> Reply:
        if header == H_SIMPLE_POLL:
            return ACK  # §1.6: every ccTalk device must answer 254
        if header == H_EQUIPMENT_CATEGORY:
            return ascii_reply(self.category)
        if header == H_MANUFACTURER:
            return ascii_reply(self.manufacturer)
        if header == H_PRODUCT_CODE:
            return ascii_reply(self.product)
        if header == H_BUILD_CODE:
            return ascii_reply("STD")
        if header == H_SOFTWARE_REVISION:
            return ascii_reply(self.software)
        if header == H_SERIAL_NUMBER:
            return (HDR_REPLY, self.serial.to_bytes(3, "little"))  # §1.6: 3 bytes LSB first
        if header == H_COMMS_REVISION:
            return (HDR_REPLY, bytes([1, 4, 2]))  # [release][major][minor], as in the §1.3 example
        if header == H_SELF_CHECK:
            return (HDR_REPLY, bytes([self.fault_code()]))  # Table 3: 0 = OK
        if header == H_POLLING_PRIORITY:
            return (HDR_REPLY, bytes([2, 20]))  # units 2 = x10 ms, value 20: poll every 200 ms
        if header == H_RESET:
            return ACK  # the bus resets the device after the ACK is on the wire (§1.5)
        return None

    def fault_code(self) -> int:
        return 0

    # -- state ---------------------------------------------------------------------------
    def power_up(self, now: float) -> None:
        """State after power-up or hdr 1: counter 0, all results 0 (§1.7)."""
        self.events.reset()

    def advance(self, now: float) -> None:
        """Let time-driven behaviour (watchdogs, escrow timer, motor) catch up to ``now``."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "checksum": self.checksum,
            "event_counter": self.events.counter,
            "events": [list(pair) for pair in self.events.results],
        }


H_MODIFY_INHIBIT = 231
H_REQUEST_INHIBIT = 230
H_MODIFY_MASTER_INHIBIT = 228
H_REQUEST_MASTER_INHIBIT = 227


class Inhibits:
    """Headers 231/230 and 228/227, shared by coin acceptor and bill validator (§1.6).

    Mask bit set = type **enabled**; master byte b0 = 1 normal operation, 0 = master inhibit
    active (§1.11: the polarity is the reverse of what one guesses). Both start inhibited after
    power-up, so a host must re-enable a device that reset behind its back (§1.7).
    """

    def __init__(self) -> None:
        self.mask = 0  # bit n-1 = type n
        self.master = False  # True = normal operation

    def power_up(self) -> None:
        self.mask = 0
        self.master = False

    def enabled(self, position: int) -> bool:
        return bool(self.mask >> (position - 1) & 1)

    def handle(self, header: int, data: bytes) -> Reply:
        if header == H_MODIFY_INHIBIT:
            if not 1 <= len(data) <= 16:  # Table 8: 1..16 mask bytes
                return None
            self.mask = int.from_bytes(data, "little")
            return ACK
        if header == H_REQUEST_INHIBIT:
            return (HDR_REPLY, (self.mask & 0xFFFF).to_bytes(2, "little"))
        if header == H_MODIFY_MASTER_INHIBIT:
            if len(data) != 1:
                return None
            self.master = bool(data[0] & 1)
            return ACK
        if header == H_REQUEST_MASTER_INHIBIT:
            return (HDR_REPLY, bytes([int(self.master)]))
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"inhibit_mask": self.mask, "master_enabled": self.master}

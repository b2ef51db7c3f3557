"""Mingte / TTCE K720 card dispenser, device side, written from card-dispensers.md §4.3.

Not built on hal.protocols.k720 (see hal/emulators/model.py for why).

Handshake (§4.3): a well-formed command addressed to us is answered ACK+ADDH+ADDL and kept;
nothing happens until the host sends ENQ+ADDH+ADDL. Then "list 1" commands (AP, RF, GV, FC1,
FR) return a response and "list 2" (mechanical: DC, CP, DB, RS, FCx, ...) return nothing —
the host polls AP. A bad frame gets NAK+ADDH+ADDL; EOT drops the kept command; a command
whose bytes arrive more than 50 ms apart is void (§4.3 gives 15 and 50 ms; we take the kinder).

Assumed where the notes are silent (docs/hardware/dispenser.md): a card held at the gate
(DC/FC4) covers sensor 3, a card at the read position (FC7/FC6) sensor 2; RF answers the last
three AP digits. A command the unit does not know (not in its lists, or named in ``unsupported``
to play a firmware without it) is ACKed like any well-formed frame and, after the ENQ, answered
with the error reply 'N' CM PM 00, ERR_CD one byte (the K7X0 protocol document: RELEN 4).
"""
from __future__ import annotations

import collections
from typing import Any

from .crt571 import CardPath
from .model import EmulatorModel

GAP_S = 0.050
VERSION = b"K720-EMU V1.0"
_LIST1 = {b"AP", b"RF", b"GV", b"FC1", b"FR"}
_LIST2 = {b"DC", b"FC4", b"FC7", b"FC6", b"FC8", b"FC0", b"CP", b"DB", b"RS", b"FD2", b"FD3", b"FD4",
          b"BE", b"BD", b"FD0", b"FD1"}  # plus the CSn baud-rate family


def _xor(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


class K720Model(EmulatorModel):
    name = "k720"

    def __init__(
        self, address: int = 0, stock: int = 50, near_empty: int = 5, bin_capacity: int = 30,
        unsupported: tuple[str, ...] | list[str] = (),
    ) -> None:
        if not 0 <= address <= 15:
            raise ValueError("K720 address is 0-15 (DIP switches)")
        self.addr = f"{address:02d}".encode()
        self.cards = CardPath(stock, near_empty, bin_capacity)
        self.unsupported = {c.encode() for c in unsupported}  # commands this firmware lacks
        self.pending: bytes | None = None  # ACKed command waiting for ENQ
        self.cannot_execute = False  # AP digit 1, bit 4: the last command could not run
        self.dispense_error = False  # AP digit 2, bit 2
        self.collect_error = False  # AP digit 2, bit 1
        self.corrupt_rx = 0
        self.executed = 0
        self.history: collections.deque[str] = collections.deque(maxlen=50)  # executed commands
        self._rx = bytearray()
        self._last = 0.0

    # -- wire ----------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> bytes:
        if self._rx and now - self._last > GAP_S:
            self._rx.clear()  # §4.3: inter-character gap too long, the command is void
        self._last = now
        self._rx += data
        out = bytearray()
        rx = self._rx
        while rx:
            head = rx[0]
            if head in (0x05, 0x04):  # ENQ / EOT + ADDH ADDL
                if len(rx) < 3:
                    break
                ours = bytes(rx[1:3]) == self.addr
                del rx[:3]
                if ours and head == 0x05:
                    out += self._run()
                elif ours:
                    self.pending = None
                continue
            if head != 0x02:
                del rx[0]
                continue
            if len(rx) < 5:
                break
            size = (rx[3] << 8 | rx[4]) + 7
            if size == 7 or size > 300:
                del rx[0]
                continue
            if len(rx) < size:
                break
            frame = bytearray(rx[:size])
            del rx[:size]
            if self.corrupt_rx > 0:
                self.corrupt_rx -= 1
                frame[len(frame) // 2] ^= 0x01
            out += self._frame(bytes(frame))
        return bytes(out)

    def _frame(self, frame: bytes) -> bytes:
        if frame[1:3] != self.addr:
            return b""  # for another unit on the line (or our address was garbled)
        if frame[-2] != 0x03 or _xor(frame[:-1]) != frame[-1]:
            return b"\x15" + self.addr
        self.pending = frame[5:-2]
        return b"\x06" + self.addr

    def _out(self, text: bytes) -> bytes:
        body = b"\x02" + self.addr + len(text).to_bytes(2, "big") + text + b"\x03"
        return body + bytes([_xor(body)])

    def _run(self) -> bytes:
        command, self.pending = self.pending, None
        if command is None:
            return b""
        self.executed += 1
        self.history.append(command.decode("latin-1"))
        known = command in _LIST1 or command in _LIST2 or command.startswith(b"CS")
        if not known or command in self.unsupported:
            # §4.3 error reply 'N' CM PM ERR_CD with ERR_CD 0x00 "undefined command"; nothing moves
            return self._out(b"N" + command[:2] + bytes([0x00]))
        if command in _LIST1:
            return self._query(command)
        self._mechanical(command)
        return b""

    # -- commands ------------------------------------------------------------------------
    def digits(self) -> str:
        c = self.cards
        d1 = 8 * c.bin_full + 4 * self.cannot_execute
        d2 = 2 * self.dispense_error + 1 * self.collect_error
        d3 = 2 * c.jammed + 1 * c.low
        d4 = 8 * (c.stock == 0) + 4 * (c.position == "gate") + 2 * (c.position == "read")
        return "".join(f"{d:X}" for d in (d1, d2, d3, d4))

    def _query(self, command: bytes) -> bytes:
        if command == b"AP":
            return self._out(b"SF" + self.digits().encode())
        if command == b"RF":
            return self._out(b"SF" + self.digits()[1:].encode())
        if command == b"GV":
            return self._out(b"PGV" + VERSION)
        if command == b"FC1":
            where = {"gate": b"4", "read": b"7"}.get(self.cards.position, b"0")
            return self._out(b"PFC" + where)
        return self._out(b"PFR" + b"0000")

    def _mechanical(self, command: bytes) -> None:
        c = self.cards
        self.cannot_execute = False
        if command in (b"DC", b"FC4"):
            fault = c.move_to("gate")
            self.dispense_error = fault is not None
            self.cannot_execute = fault is not None
        elif command in (b"FC7", b"FC6", b"FC8"):
            fault = c.move_to("read")
            self.dispense_error = fault is not None
            self.cannot_execute = fault is not None
        elif command == b"FC0":
            fault = c.eject()
            self.dispense_error = fault is not None
        elif command == b"CP":
            fault = c.capture()
            self.collect_error = fault not in (None, "no_card")
            self.cannot_execute = fault is not None
        elif command == b"DB":
            self.cannot_execute = c.back_to_stack() is not None
        elif command in (b"RS", b"FD2", b"FD3", b"FD4"):
            self.dispense_error = self.collect_error = False  # a jam stays until cleared by hand
        # BE, BD, FD0, FD1, CSn: settings; nothing moves

    # -- control -------------------------------------------------------------------------
    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "corrupt_rx":
            self.corrupt_rx = int(args.get("count", 1))
            return None
        return self.cards.control(cmd, args)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.cards.snapshot(),
            "status": self.digits(),
            "pending": self.pending.decode("latin-1") if self.pending else None,
            "executed": self.executed,
            "history": list(self.history),
        }

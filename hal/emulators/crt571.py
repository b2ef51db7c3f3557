"""CREATOR CRT-571/591 card dispenser, device side, written from card-dispensers.md §4.2.

Deliberately not built on hal.protocols.crt571: frames are parsed and built here again from the
notes, so a misreading in the driver's codec shows up as a failing test instead of cancelling out.

Sequence (§4.2, the documented F3x one): host command -> ACK(06) -> execute -> response; the
host's ACK after the response, ENQ and EOT are taken and ignored (motions here are instant).
A frame with a bad BCC, a misplaced ETX or no 'C' gets NAK(15); a frame for another address
gets nothing (another unit on the daisy chain).

Values the notes could not pin down (Medium/Low there) and this emulator assumes, documented in
docs/hardware/dispenser.md: st0 '0' no card in the channel, '1' card at the gate, '2' card at
the IC/RF position; st2 '0' bin not full, '1' full; error codes "10" jam, "A0" stacker empty,
"A1" error-card bin full, "B0" not initialised, "00" undefined command, "01" bad parameter.
"""
from __future__ import annotations

from typing import Any

from .model import ControlError, EmulatorModel


class CardPath:
    """Where the cards of a motorised dispenser are: stack, channel (read position, gate), bin.

    Shared by the CRT-571 and K720 emulators: the mechanics are the same, only the wire differs.
    ``position`` is where the last card to leave the stack is now:
    stack (none out) | read | gate | taken | bin.
    """

    def __init__(self, stock: int = 50, near_empty: int = 5, bin_capacity: int = 30) -> None:
        self.stock = stock
        self.near_empty = near_empty  # "low" once stock <= this many cards
        self.bin_capacity = bin_capacity
        self.position = "stack"
        self.captured = 0  # cards captured since power-on (a running total: empty_bin does not reset it)
        self.in_bin = 0  # cards in the error-card bin now (empty_bin: 0)
        self.dispensed = 0  # cards that left the stack
        self.taken = 0  # cards the customer pulled from the gate (or that were ejected)
        self.jammed = False
        self.jam_at: str | None = None  # the next card to move to this position jams on its way
        # called when a fresh card leaves the stack: a SIM dispenser's virtual USIM plugs it into the reader
        self.on_new_card: Any = None

    @property
    def in_channel(self) -> bool:
        return self.position in ("read", "gate")

    @property
    def low(self) -> bool:
        return 0 < self.stock <= self.near_empty

    @property
    def bin_full(self) -> bool:
        return self.in_bin >= self.bin_capacity

    def move_to(self, where: str) -> str | None:
        """Move the card in the channel (or a fresh one from the stack) to read/gate.

        Returns None on success or the fault: "jam", "empty".
        """
        if self.jammed:
            return "jam"
        if self.jam_at == where and self.in_channel:
            self.jam_at, self.jammed = None, True
            return "jam"
        if not self.in_channel:
            if self.stock <= 0:
                return "empty"
            self.stock -= 1
            self.dispensed += 1
            if self.on_new_card is not None:
                self.on_new_card()
        self.position = where
        return None

    def capture(self) -> str | None:
        if self.jammed:
            return "jam"
        if not self.in_channel:
            return "no_card"
        if self.bin_full:
            return "bin_full"
        self.position = "bin"
        self.captured += 1
        self.in_bin += 1
        return None

    def eject(self) -> str | None:
        """Throw the card out of the machine: as good as taken."""
        fault = self.move_to("gate")
        if fault is None:
            self.take()
        return fault

    def back_to_stack(self) -> str | None:
        if self.jammed:
            return "jam"
        if self.in_channel:
            self.position = "stack"
            self.stock += 1
            self.dispensed -= 1
        return None

    def take(self) -> None:
        self.position = "taken"
        self.taken += 1

    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "set_stock":
            count = int(args["count"])
            if count < 0:
                raise ControlError("set_stock: count must be >= 0")
            self.stock = count
            if "near_empty" in args:
                self.near_empty = int(args["near_empty"])
            return self.snapshot()
        if cmd == "jam":  # optional "at": the card in the channel jams on its way there (e.g. "gate")
            if args.get("at") in ("read", "gate"):
                self.jam_at = str(args["at"])
            else:
                self.jammed = True
            return None
        if cmd == "clear_jam":
            self.jammed, self.jam_at = False, None
            return None
        if cmd == "take_card":
            if self.position != "gate":
                raise ControlError(f"take_card: no card at the gate (card position: {self.position})")
            self.take()
            return None
        if cmd == "pull_card":  # a technician pulls a card stuck in the channel out, into the bin's bag
            if not self.in_channel:
                raise ControlError(f"pull_card: no card in the channel (card position: {self.position})")
            self.position = "bin"
            self.captured += 1
            return None
        if cmd == "empty_bin":
            self.in_bin = 0
            return None
        if cmd == "set_bin":
            self.bin_capacity = int(args["capacity"])
            if "in_bin" in args:
                self.in_bin = int(args["in_bin"])
            return self.snapshot()
        raise ControlError(f"unknown command {cmd!r}")

    def snapshot(self) -> dict[str, Any]:
        return {
            "stock": self.stock,
            "near_empty": self.near_empty,
            "position": self.position,
            "captured": self.captured,
            "in_bin": self.in_bin,
            "bin_capacity": self.bin_capacity,
            "bin_full": self.bin_full,
            "dispensed": self.dispensed,
            "taken": self.taken,
            "jammed": self.jammed,
        }


# Error codes e1 e0 this emulator sends (see module docstring for their confidence).
ERR_UNDEFINED = b"00"
ERR_PARAM = b"01"
ERR_JAM = b"10"
ERR_EMPTY = b"A0"
ERR_BIN_FULL = b"A1"
ERR_NOT_INIT = b"B0"
_FAULT_CODES = {"jam": ERR_JAM, "empty": ERR_EMPTY, "bin_full": ERR_BIN_FULL}

VERSION = b"CRT-571-EMU V1.0"


class Crt571Model(EmulatorModel):
    name = "crt571"

    def __init__(
        self,
        address: int = 0,
        stock: int = 50,
        near_empty: int = 5,
        bin_capacity: int = 30,
        needs_enq: bool = False,
    ) -> None:
        self.address = address
        # §4.2: older Creator units answer only after the host's ENQ; the F3x needs none
        self.needs_enq = needs_enq
        self._held = b""  # response waiting for that ENQ
        self.cards = CardPath(stock, near_empty, bin_capacity)
        self.initialised = False  # §4.2: reset/initialise "required first after power-on"
        self.corrupt_rx = 0  # line noise on the host -> device wire: next N frames arrive damaged
        self.commands = 0
        self._rx = bytearray()
        self._last = 0.0

    # -- wire ----------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> bytes:
        if self._rx and now - self._last > 1.0:
            self._rx.clear()  # a half command from long ago is void
        self._last = now
        self._rx += data
        out = bytearray()
        while self._rx:
            if self._rx[0] != 0xF2:
                if self._rx[0] == 0x05 and self._held:
                    out += self._held
                    self._held = b""
                del self._rx[0]  # host ACK/ENQ/EOT after a response, or noise: nothing to do
                continue
            if len(self._rx) < 4:
                break
            size = (self._rx[2] << 8 | self._rx[3]) + 6  # LEN counts the text only
            if size == 6 or size > 1024:
                del self._rx[0]
                out += b"\x15"
                continue
            if len(self._rx) < size:
                break
            frame = bytearray(self._rx[:size])
            del self._rx[:size]
            if self.corrupt_rx > 0:
                self.corrupt_rx -= 1
                frame[len(frame) // 2] ^= 0x01
            out += self._frame(bytes(frame))
        return bytes(out)

    def _frame(self, frame: bytes) -> bytes:
        check = 0
        for byte in frame[:-1]:
            check ^= byte
        if frame[-2] != 0x03 or check != frame[-1]:
            return b"\x15"
        if frame[1] != self.address:
            return b""  # addressed to another unit on the chain
        text = frame[4:-2]
        if len(text) < 3 or text[0] != ord("C"):
            return b"\x15"
        self.commands += 1
        response = self._execute(text[1], text[2], text[3:])
        if self.needs_enq:
            self._held = response
            return b"\x06"
        return b"\x06" + response

    def _reply(self, cm: int, pm: int, data: bytes = b"") -> bytes:
        c = self.cards
        st0 = {"gate": b"1", "read": b"2"}.get(c.position, b"0")
        st1 = b"0" if c.stock == 0 else b"1" if c.low else b"2"
        st2 = b"1" if c.bin_full else b"0"
        return self._frame_out(b"P" + bytes([cm, pm]) + st0 + st1 + st2 + data)

    def _error(self, cm: int, pm: int, code: bytes) -> bytes:
        return self._frame_out(b"N" + bytes([cm, pm]) + code)

    def _frame_out(self, text: bytes) -> bytes:
        body = bytes([0xF2, self.address, len(text) >> 8, len(text) & 0xFF]) + text + b"\x03"
        check = 0
        for byte in body:
            check ^= byte
        return body + bytes([check])

    def _execute(self, cm: int, pm: int, data: bytes) -> bytes:
        c = self.cards
        if cm == 0x31 and pm in (0x30, 0x31):  # status; raw sensors
            if pm == 0x30:
                return self._reply(cm, pm)
            return self._reply(cm, pm, self._sensors())
        if cm == 0x30:  # reset / initialise
            if pm not in (0x30, 0x31, 0x33, 0x34, 0x35, 0x37):
                return self._error(cm, pm, ERR_PARAM)
            if c.jammed:
                return self._error(cm, pm, ERR_JAM)
            if c.in_channel and pm in (0x30, 0x34):
                c.position = "gate"
            elif c.in_channel and pm in (0x31, 0x35):
                fault = c.capture()
                if fault:
                    return self._error(cm, pm, _FAULT_CODES[fault])
            self.initialised = True
            return self._reply(cm, pm, VERSION)
        if not self.initialised:
            return self._error(cm, pm, ERR_NOT_INIT)
        if cm == 0x32:  # move card (F3x labelling: 30 gate, 31 IC, 32 RF, 33 bin, 39 eject)
            if pm == 0x30:
                fault = c.move_to("gate")
            elif pm in (0x31, 0x32):
                fault = c.move_to("read")
            elif pm == 0x33:
                fault = c.capture()
                if fault == "no_card":
                    fault = None  # nothing in the channel: nothing to capture
            elif pm == 0x39:
                fault = c.eject()
            else:
                return self._error(cm, pm, ERR_PARAM)
            if fault:
                return self._error(cm, pm, _FAULT_CODES[fault])
            return self._reply(cm, pm)
        if cm == 0x33 and pm in (0x30, 0x31):  # allow / forbid insertion from the front
            return self._reply(cm, pm)
        if cm == 0xA4 and pm == 0x30:
            return self._reply(cm, pm, VERSION)
        return self._error(cm, pm, ERR_UNDEFINED)

    def _sensors(self) -> bytes:
        """12 sensor bytes, '1' blocked: [0] stack, [1..4] read position, [5..7] gate (illustrative)."""
        c = self.cards
        bits = ["0"] * 12
        if c.stock:
            bits[0] = "1"
        if c.position == "read":
            bits[1:5] = ["1"] * 4
        if c.position == "gate":
            bits[5:8] = ["1"] * 3
        return "".join(bits).encode()

    # -- control -------------------------------------------------------------------------
    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "corrupt_rx":
            self.corrupt_rx = int(args.get("count", 1))
            return None
        if cmd == "power_cycle":
            self.initialised = False
            return None
        return self.cards.control(cmd, args)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.cards.snapshot(),
            "initialised": self.initialised,
            "address": self.address,
            "commands": self.commands,
        }

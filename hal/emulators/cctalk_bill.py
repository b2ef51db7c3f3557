"""An emulated ccTalk bill validator with escrow (category "Bill Validator", address 40).

From cctalk.md §1.6 (headers), §1.7 (event buffer, Table 7 codes) and §1.8 (escrow flow).
Time-driven behaviour (escrow timeout, the 5 s poll watchdog) catches up lazily in ``advance``,
so a test can drive it with any clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cctalk_device import ACK, H_MODIFY_MASTER_INHIBIT, HDR_REPLY, Inhibits, Peripheral, Reply
from .model import ControlError

H_READ_BILL_EVENTS = 159  # same 11-byte structure as 229
H_REQUEST_BILL_ID = 157  # 7 ASCII chars CCVVVVI
H_COUNTRY_SCALING = 156  # [2 ASCII country] -> [factor LSB][factor MSB][decimals]
H_ROUTE_BILL = 154
H_MODIFY_MODE = 153  # [mask] b0 stacker, b1 escrow
H_REQUEST_MODE = 152
H_VARIABLE_SET = 247  # BV: [no. of bill types][no. of banks]

POLL_WATCHDOG = 5.0  # §1.5: self-inhibit if not polled with 159 for 5 s

# §1.8 route codes and route errors
ROUTE_RETURN = 0
ROUTE_STACK = 1
ROUTE_EXTEND = 255
ERR_ESCROW_EMPTY = 254
ERR_ROUTE_FAILED = 255

# Table 7 (result B when A = 0)
MASTER_INHIBIT_ACTIVE = 0
RETURNED_FROM_ESCROW = 1
INVALID_BILL = 2
INHIBITED_BILL = 4
JAM_UNSAFE = 6
PULLED_BACKWARDS = 8
STACKER_REMOVED = 11
STACKER_INSERTED = 12
STACKER_FULL = 14
# §1.7 bill result pair: B = 0 credit (stacked), B = 1 pending credit (in escrow)
STACKED = 0
PENDING = 1

SCALING_FACTOR = 100  # hdr 156: bill id value digits x 100 = fen
DECIMALS = 2


def bill_id(country: str, fen: int) -> str:
    """§1.6 bill id ``CCVVVVI``: four value digits, scaled by hdr 156 (here yuan x 100 = fen)."""
    return f"{country}{fen // SCALING_FACTOR:04d}A"


@dataclass
class Held:
    bill_type: int
    fen: int
    deadline: float


class BillValidator(Peripheral):
    category = "Bill Validator"
    default_address = 40

    def __init__(self, bills: dict[int, int], country: str = "CN", escrow_timeout: float = 30.0, **kw: Any) -> None:
        super().__init__(**kw)
        if not bills or not all(1 <= t <= 16 for t in bills):
            raise ValueError("bill types must be 1..16")
        if any(fen % SCALING_FACTOR for fen in bills.values()):
            raise ValueError("bill values must be whole yuan (multiples of 100 fen)")
        self.bills = dict(sorted(bills.items()))  # type -> fen
        self.country = country
        self.escrow_timeout = escrow_timeout
        self.inhibits = Inhibits()
        self.mode = 0b11  # Part 4: escrow on by default after power-up
        self.escrow: Held | None = None
        self.watch_since = float("-inf")
        self.stacker_present = True
        self.stacker_full = False
        self.jammed = False
        self.stacked_fen = 0
        self.returned_fen = 0
        self.jammed_fen = 0
        self.pulled_fen = 0

    # -- power and time ------------------------------------------------------------------
    def power_up(self, now: float) -> None:
        super().power_up(now)
        self.inhibits.power_up()
        self.mode = 0b11
        self.jammed = False

    def advance(self, now: float) -> None:
        while True:
            watchdog = self.watch_since + POLL_WATCHDOG if self.inhibits.master else float("inf")
            escrow = self.escrow.deadline if self.escrow else float("inf")
            due = min(watchdog, escrow)
            if due > now:
                return
            if escrow <= watchdog:
                self._return_escrow()  # §1.8: the escrow timer ran out; the bill goes back
            else:
                self.inhibits.master = False  # §1.5: not polled for 5 s -> self-inhibit, event (0,0)
                self.events.push(0, MASTER_INHIBIT_ACTIVE)

    def _return_escrow(self) -> None:
        assert self.escrow
        self.returned_fen += self.escrow.fen
        self.escrow = None
        self.events.push(0, RETURNED_FROM_ESCROW)

    # -- requests ------------------------------------------------------------------------
    def handle(self, header: int, data: bytes, now: float) -> Reply:
        if header == H_READ_BILL_EVENTS:
            self.watch_since = now
            return (HDR_REPLY, self.events.encode())
        if header == H_ROUTE_BILL:
            return self._route(data, now)
        if header == H_REQUEST_BILL_ID:
            if len(data) != 1:
                return None
            fen = self.bills.get(data[0])
            return (HDR_REPLY, (bill_id(self.country, fen) if fen else ".......").encode())
        if header == H_COUNTRY_SCALING:
            if data == self.country.encode():
                return (HDR_REPLY, bytes([SCALING_FACTOR & 0xFF, SCALING_FACTOR >> 8, DECIMALS]))
            return (HDR_REPLY, b"\x00\x00\x00")  # all 0 = country not supported
        if header == H_MODIFY_MODE:
            if len(data) != 1:
                return None
            self.mode = data[0] & 0b11
            return ACK
        if header == H_REQUEST_MODE:
            return (HDR_REPLY, bytes([self.mode]))
        if header == H_VARIABLE_SET:
            return (HDR_REPLY, bytes([16, 1]))
        reply = self.inhibits.handle(header, data)
        if reply is not None:
            if header == H_MODIFY_MASTER_INHIBIT and self.inhibits.master:
                self.watch_since = max(self.watch_since, now)  # the watchdog runs from enabling on
            return reply
        return super().handle(header, data, now)

    def _route(self, data: bytes, now: float) -> Reply:
        """§1.8 step 3: ACK, or one error byte: 254 escrow empty, 255 failed to route."""
        if len(data) != 1 or data[0] not in (ROUTE_RETURN, ROUTE_STACK, ROUTE_EXTEND):
            return None
        if self.escrow is None:
            return (HDR_REPLY, bytes([ERR_ESCROW_EMPTY]))
        if data[0] == ROUTE_EXTEND:
            self.escrow.deadline = now + self.escrow_timeout
            return ACK
        if self.jammed:
            return (HDR_REPLY, bytes([ERR_ROUTE_FAILED]))
        if data[0] == ROUTE_RETURN:
            self._return_escrow()
            return ACK
        if not self.stacker_present or self.stacker_full:
            return (HDR_REPLY, bytes([ERR_ROUTE_FAILED]))
        self.stacked_fen += self.escrow.fen
        self.events.push(self.escrow.bill_type, STACKED)
        self.escrow = None
        return ACK

    # -- script --------------------------------------------------------------------------
    def type_of(self, fen: int) -> int | None:
        return next((t for t, v in self.bills.items() if v == fen), None)

    def insert(self, fen: int, now: float) -> str:
        if self.jammed:
            return "jammed"  # nothing enters a jammed transport
        if self.escrow is not None:
            return "busy"  # one bill at a time in the escrow position
        if not self.stacker_present or self.stacker_full:
            return "stacker_unavailable"
        bill_type = self.type_of(fen)
        if bill_type is None:
            self.events.push(0, INVALID_BILL)
            return "rejected"
        if not self.inhibits.master or not self.inhibits.enabled(bill_type):
            self.events.push(0, INHIBITED_BILL)
            return "inhibited"
        if not self.mode & 0b10:  # escrow off: straight to the stacker
            self.stacked_fen += fen
            self.events.push(bill_type, STACKED)
            return "stacked"
        self.escrow = Held(bill_type, fen, now + self.escrow_timeout)
        self.events.push(bill_type, PENDING)
        return "escrow"

    def reject(self) -> None:
        self.events.push(0, INVALID_BILL)

    def jam(self, code: int) -> None:
        """Table 7: 6 unsafe jam, 7 jam in stacker, 16 safe jam. An escrowed bill is stuck."""
        if code not in (6, 7, 15, 16):
            raise ControlError("jam_bill: code must be 6, 7, 15 or 16 (Table 7)")
        if self.escrow:
            self.jammed_fen += self.escrow.fen
            self.escrow = None
        self.jammed = True
        self.events.push(0, code)

    def fraud(self, code: int) -> None:
        """Table 7 fraud codes 8, 9, 17, 18: an escrowed bill goes back out with the customer."""
        if code not in (8, 9, 17, 18):
            raise ControlError("fraud: bill fraud code must be 8, 9, 17 or 18 (Table 7)")
        if self.escrow:
            self.pulled_fen += self.escrow.fen
            self.escrow = None
        self.events.push(0, code)

    def remove_stacker(self) -> None:
        self.stacker_present = False
        self.events.push(0, STACKER_REMOVED)

    def replace_stacker(self) -> None:
        self.stacker_present = True
        self.stacker_full = False
        self.events.push(0, STACKER_INSERTED)

    def fill_stacker(self) -> None:
        """§1.8 step 6: stacker full (0,14), then the device self-inhibits (0,0)."""
        self.stacker_full = True
        self.events.push(0, STACKER_FULL)
        self.inhibits.master = False
        self.events.push(0, MASTER_INHIBIT_ACTIVE)

    def power_cycle(self, now: float, bill_in_escrow: bool, bill_in_stacker: bool) -> None:
        """Power lost and back. An escrowed bill is returned at power-up unless the script says
        it stayed in escrow (reported again as pending) or reached the stacker unseen (no event:
        the buffer was cleared; only the cash count knows)."""
        held = self.escrow
        if held is None and (bill_in_escrow or bill_in_stacker):
            raise ControlError("power_cycle: no bill in escrow")
        self.escrow = None
        self.power_up(now)
        if held is None:
            return
        if bill_in_stacker:
            self.stacked_fen += held.fen
        elif bill_in_escrow:
            self.escrow = Held(held.bill_type, held.fen, now + self.escrow_timeout)
            self.events.push(held.bill_type, PENDING)
        else:
            self.returned_fen += held.fen

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            **self.inhibits.snapshot(),
            "escrow_fen": self.escrow.fen if self.escrow else None,
            "escrow_mode": bool(self.mode & 0b10),
            "stacker_present": self.stacker_present,
            "stacker_full": self.stacker_full,
            "jammed": self.jammed,
            "bills": {str(t): fen for t, fen in self.bills.items()},
        }

"""What the flows see of the printer, the card dispenser and the modem.

Each is an interface; drivers live in hal/printer/, hal/dispenser/, hal/modem.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .device import Device


@dataclass(frozen=True)
class PrinterStatus:
    """Real-time status. ``known`` False means the printer did not answer: never assume paper."""

    known: bool
    online: bool = False
    cover_open: bool = False
    paper_near_end: bool = False
    paper_out: bool = False
    cutter_error: bool = False

    @property
    def can_print(self) -> bool:
        return self.known and self.online and not (self.cover_open or self.paper_out or self.cutter_error)


@dataclass(frozen=True)
class Receipt:
    """A receipt as data; templates in hal/printer/receipts.py turn it into lines."""

    title: str  # e.g. "充值凭条 / Top-up receipt"
    lines: list[tuple[str, str]] = field(default_factory=list)  # (label, value) rows
    qr: str | None = None  # e.g. the claim code of a refund voucher
    footer: str = ""


class PrintFailed(Exception):
    """The receipt was not (completely) printed; the message says why (paper out, silent, ...)."""


class Printer(Device):
    kind: ClassVar[str] = "printer"

    async def status(self) -> PrinterStatus:
        raise NotImplementedError

    async def print_receipt(self, receipt: Receipt) -> None:
        """Print and cut; raises PrintFailed unless the status after printing is good."""
        raise NotImplementedError


@dataclass(frozen=True)
class DispenserStatus:
    known: bool
    empty: bool = False
    near_empty: bool = False
    jammed: bool = False
    card_at_gate: bool = False
    card_in_read_position: bool = False


class DispenseFailed(Exception):
    """No card reached the gate (empty, jam, silent); ``code`` names which."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class CardDispenser(Device):
    kind: ClassVar[str] = "dispenser"

    async def status(self) -> DispenserStatus:
        raise NotImplementedError

    async def dispense_to_gate(self) -> None:
        """Move one card to the gate; raises DispenseFailed."""
        raise NotImplementedError

    async def wait_taken(self, timeout: float) -> bool:
        """True when the customer took the card; False on timeout (the caller captures it)."""
        raise NotImplementedError

    async def capture(self) -> None:
        """Pull a card back into the reject bin."""
        raise NotImplementedError

    async def move_to_read_position(self) -> None:
        """For writing a SIM before it is given out."""
        raise NotImplementedError


class SmsFailed(Exception):
    """The modem could not send (``+CMS ERROR``, no network, silent)."""


class Modem(Device):
    kind: ClassVar[str] = "modem"

    async def send_sms(self, number: str, text: str) -> list[int]:
        """Send ``text`` (Chinese fine: UCS2, split into parts); returns the message references."""
        raise NotImplementedError

    async def signal(self) -> dict:
        """Registration and signal quality for telemetry: {"registered": bool, "rssi_dbm": int|None}."""
        raise NotImplementedError

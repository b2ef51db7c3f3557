"""What the flows see of money hardware: acceptors that stream events, payout devices that dispense.

Amounts are integer fen. An acceptor credits only on ``Stacked`` (or ``CoinAccepted``), never
on ``Escrow``: a bill in escrow can still be returned, jam, or be pulled back out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, ClassVar, Iterable

from .device import Device


@dataclass(frozen=True)
class CashEvent:
    device: str


@dataclass(frozen=True)
class CoinAccepted(CashEvent):
    """A coin went into the cash box (or the hopper): credit ``fen``."""

    fen: int
    # the device's event counter for this coin, when it has one (ccTalk §1.7): journalled with the
    # credit so that recovery can find coins accepted after the last journalled one (a crash)
    seq: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Escrow(CashEvent):
    """A bill of ``fen`` waits in escrow: the controller must call stack() or return_bill()."""

    fen: int


@dataclass(frozen=True)
class Stacked(CashEvent):
    """The escrowed bill is in the cash box: credit ``fen``."""

    fen: int


@dataclass(frozen=True)
class Returned(CashEvent):
    """The escrowed bill went back to the customer: no credit."""

    fen: int


@dataclass(frozen=True)
class Rejected(CashEvent):
    """Coin or bill refused (not genuine, inhibited, unknown): no credit."""

    reason: str


@dataclass(frozen=True)
class CashFault(CashEvent):
    """Jam, fraud attempt, stacker removed, lost events, device silent... ``code`` names it."""

    code: str
    detail: str = ""


class CashAcceptor(Device):
    kind: ClassVar[str] = "cash_acceptor"

    def events(self) -> AsyncIterator[CashEvent]:
        """Every event from now on, in order. One consumer (the flow in progress)."""
        raise NotImplementedError

    async def set_inhibit(self, inhibited: bool) -> None:
        """Inhibited: the device refuses all money (the safe state)."""
        raise NotImplementedError

    async def accept_only(self, fen_values: Iterable[int]) -> None:
        """Accept just these denominations (e.g. no 100-yuan bill for a 30-yuan card)."""
        raise NotImplementedError

    async def stack(self) -> None:
        """Bill validators: move the escrowed bill into the cash box."""
        raise NotImplementedError

    async def return_bill(self) -> None:
        """Bill validators: give the escrowed bill back."""
        raise NotImplementedError


@dataclass(frozen=True)
class PayoutResult:
    paid: int  # coins (or notes) that left the device
    unpaid: int  # asked for but not paid: empty, jam, power cut
    fen_paid: int = 0


class PayoutDevice(Device):
    kind: ClassVar[str] = "payout"
    coin_fen: int = 100  # value of one unit this device pays

    async def dispense(self, count: int) -> PayoutResult:
        """Pay ``count`` units; returns exactly what was and was not paid, also on failure."""
        raise NotImplementedError

    async def last_payout(self) -> PayoutResult:
        """What the device says of its last payout (recovery after a crash mid-payout)."""
        raise NotImplementedError

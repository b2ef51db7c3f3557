"""The money rule of every transaction, in integer fen.

    cash_in = applied + change_paid + refunded + held_for_review

cash_in: what the customer put in (stacked bills, accepted coins). applied: what bought the
service (credited to the phone, paid on the bill, the card handed out). change_paid: overpayment
paid back by the hopper. refunded: paid back by the hopper after a failure, or owed on a refund
voucher. held_for_review: money whose fate the kiosk cannot know (a bill whose stack was cut by
a power loss, a BOSS credit nobody can confirm) — parked for a person, never guessed.

A transaction may only finish balanced; ``check()`` raises ``LedgerUnbalanced`` otherwise, and
the caller moves the transaction to review. Floats are refused outright.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

KINDS = ("cash_in", "applied", "change", "refunded", "held")


class LedgerError(Exception):
    """Money that is not integer fen, negative, or of an unknown kind."""


class LedgerUnbalanced(LedgerError):
    """A finish whose money does not add up; the transaction goes to review."""


@dataclass
class Ledger:
    cash_in: int = 0
    applied: int = 0
    change_paid: int = 0
    refunded: int = 0
    held_for_review: int = 0

    _FIELDS = {"cash_in": "cash_in", "applied": "applied", "change": "change_paid",
               "refunded": "refunded", "held": "held_for_review"}

    def record(self, kind: str, fen: int) -> None:
        if type(fen) is not int:  # bool and float are both refused: money is int fen
            raise LedgerError(f"{kind}: {fen!r} is not integer fen")
        if fen < 0:
            raise LedgerError(f"{kind}: negative amount {fen}")
        try:
            field = self._FIELDS[kind]
        except KeyError:
            raise LedgerError(f"unknown money kind {kind!r}") from None
        setattr(self, field, getattr(self, field) + fen)

    @property
    def paid_out(self) -> int:
        return self.applied + self.change_paid + self.refunded + self.held_for_review

    @property
    def outstanding(self) -> int:
        """Cash in that is not yet accounted for: still to apply, pay back or hold."""
        return self.cash_in - self.paid_out

    @property
    def balanced(self) -> bool:
        return self.outstanding == 0

    def check(self) -> None:
        if not self.balanced:
            raise LedgerUnbalanced(
                f"cash_in {self.cash_in} != applied {self.applied} + change {self.change_paid}"
                f" + refunded {self.refunded} + held {self.held_for_review}")

    def as_dict(self) -> dict[str, int]:
        return {"cash_in": self.cash_in, "applied": self.applied, "change_paid": self.change_paid,
                "refunded": self.refunded, "held_for_review": self.held_for_review}

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, int]]) -> "Ledger":
        ledger = cls()
        for kind, fen in rows:
            ledger.record(kind, fen)
        return ledger


def split_payout(fen: int, coin_fen: int, available: int | None = None) -> tuple[int, int]:
    """How many coins of ``coin_fen`` pay ``fen`` (at most ``available``), and the fen left over.

    The left-over goes on a refund voucher: the hopper only pays whole coins.
    """
    if type(fen) is not int or type(coin_fen) is not int or coin_fen <= 0 or fen < 0:
        raise LedgerError(f"bad payout split {fen!r} / {coin_fen!r}")
    count = fen // coin_fen
    if available is not None:
        count = max(0, min(count, available))
    return count, fen - count * coin_fen

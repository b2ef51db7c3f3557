"""What the flows see of the SIM writer (a PC/SC reader at the card dispenser's IC position).

A write either returns the ICCID of a card that reads back exactly what was written, or raises
SimWriteFailed with a code the flow turns into words and a captured card:

    no_card, pcsc_gone        no card at the reader / pcscd or the reader is gone
    adm_low                   ADM retry counter at or below the floor: not tried (a blocked ADM
                              bricks the card), nothing written
    adm_rejected, adm_blocked the one ADM try failed / the key is blocked
    security, file_not_found, card_error   the card refused a read or write (6982, 6A82, other)
    verify_mismatch           the read-back differs from what was written
    bad_profile               the BOSS's card data cannot be encoded
"""
from __future__ import annotations

from typing import ClassVar

from ..device import Device
from ..protocols.usim import SimProfile


class SimWriteFailed(Exception):
    def __init__(self, code: str, detail: str = "", written: bool = False) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.written = written  # something reached the card before the failure


class SimWriter(Device):
    kind: ClassVar[str] = "sim_writer"

    async def read_iccid(self) -> str:
        raise NotImplementedError

    async def write(self, profile: SimProfile, adm: str) -> str:
        """Verify ADM (once, only with tries to spare), write, read back; returns the ICCID."""
        raise NotImplementedError


__all__ = ["SimProfile", "SimWriteFailed", "SimWriter"]

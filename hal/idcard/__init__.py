"""What the flows see of an ID card reader: one validated card, or a named reason why not.

The card's text and photos are personal data: they live in memory only until the flow seals
them (transactions/pii.py); ``IdCard.__repr__`` masks them so a stray log line cannot leak them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..device import Device
from ..protocols.idcard import IdText, mask_id_number, mask_name


@dataclass(frozen=True)
class IdCard:
    text: IdText
    photo_wlt: bytes = field(repr=False)  # 1024 bytes, opaque (vendor wavelet format)
    photo_bmp: bytes | None = field(default=None, repr=False)  # decoded where a decoder is installed

    def __repr__(self) -> str:
        return f"IdCard({mask_name(self.text.name)}, {mask_id_number(self.text.id_number)})"

    __str__ = __repr__


class IdReadFailed(Exception):
    """No usable card: ``code`` is one of no_card, read_failed (card moved or removed mid-read),
    bad_frame, silent, sam_fault, bad_id_number, bad_check_digit, bad_dates, expired,
    not_yet_valid."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class IdReader(Device):
    kind: ClassVar[str] = "id_reader"

    async def read_card(self, timeout: float, today=None) -> IdCard:
        """Wait up to ``timeout`` s for a card, read and validate it against ``today`` (a date)."""
        raise NotImplementedError

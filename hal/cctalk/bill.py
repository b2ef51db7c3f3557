"""ccTalk bill validator with escrow (address 40): poll 159, report escrow, route on command.

Money moves only on the validator's word (notes §1.8): ``(n, 1)`` is a bill in escrow
(``Escrow``, no credit), ``(n, 0)`` a bill in the cash box (``Stacked``, the credit). The
controller decides: ``stack()`` sends route 1, ``return_bill()`` route 0, ``extend_escrow()``
route 255. A reset while a bill sat in escrow, or a bill found in escrow at power-up, is a
CashFault for review: that bill may have gone back, into the box, or still be waiting.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from hal.cash import CashFault, Escrow, Rejected, Returned, Stacked
from hal.device import DeviceError, Health
from hal.protocols.cctalk import Header
from hal.protocols.cctalk_events import bill_event

from .acceptor import CcTalkAcceptor
from .bus import NoReply
from .peripheral import CcTalkOptions

TYPES = range(1, 17)
ROUTE_RETURN, ROUTE_STACK, ROUTE_EXTEND = 0, 1, 255  # §1.8 step 3
ROUTE_ERRORS = {254: "escrow_empty", 255: "route_failed"}  # §1.8: 1-byte error replies
COUPON = 255  # §1.7: credit code 255 is a coupon/ticket
MODIFY_BILL_OPERATING_MODE = 153  # [mask] b0 stacker, b1 escrow


def bill_value_fen(bill_id: str, factor: int, decimals: int) -> int:
    """Value of a §1.6 ``CCVVVVI`` bill id: VVVV x hdr 156 scaling, in fen (0 if unknown)."""
    if len(bill_id) != 7 or not bill_id[2:6].isdigit():
        return 0
    minor = int(bill_id[2:6]) * factor  # in units of 10**-decimals
    if decimals <= 2:
        return minor * 10 ** (2 - decimals)
    fen, rest = divmod(minor, 10 ** (decimals - 2))
    return 0 if rest else fen


@dataclass(frozen=True)
class BillOptions(CcTalkOptions):
    address: int = 40  # §1.4 Table 1: Bill Validator
    # bill type ("1".."16") -> fen; overrides (or replaces) the table read with hdr 157/156
    bill_values: dict[str, int] = field(default_factory=dict)
    route_timeout_ms: int = 3000  # §1.5: actuator commands answer after the action
    escrow_extend_ms: int = 0  # >0: send route 255 this often while the controller decides


class CcTalkBillValidator(CcTalkAcceptor):
    Options = BillOptions
    poll_header = Header.READ_BUFFERED_BILL_EVENTS  # 159
    category_words = ("bill", "note")  # §1.4: some answer "Bill Acceptor"

    def __init__(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.escrow: tuple[int, int] | None = None  # (bill type, fen) the validator holds
        self._escrow_touched = 0.0
        self._after_reset = False

    async def _read_values(self) -> None:
        """§1.6 hdr 157 per type, scaled by hdr 156 for the country in the ids."""
        ids: dict[int, str] = {}
        for bill_type in TYPES:
            try:
                reply = await self.ask(Header.REQUEST_BILL_ID, bytes([bill_type]), retries=1)
            except NoReply:
                break
            ids[bill_type] = reply.data.decode("ascii", "replace")
        self.failures = 0
        factor, decimals = 100, 2  # no scaling answer: the four digits are whole yuan
        country = next((i[:2] for i in ids.values() if i[:2].isalpha()), "")
        if country:
            try:
                scaling = (await self.ask(Header.REQUEST_COUNTRY_SCALING, country.encode(), retries=1)).data
                if len(scaling) == 3 and (scaling[0] or scaling[1]):
                    factor, decimals = scaling[0] | scaling[1] << 8, scaling[2]
            except NoReply:
                self.failures = 0
        values = {t: fen for t, i in ids.items() if (fen := bill_value_fen(i, factor, decimals))}
        for key, fen in self.options.bill_values.items():
            values[int(key)] = int(fen)
        self.identity["bills"] = ids
        self.values = values
        # §1.8 step 1: stacker + escrow
        await self.ask_ack(MODIFY_BILL_OPERATING_MODE, bytes([0b11]))

    # -- the controller's decisions ----------------------------------------------------------
    async def stack(self) -> None:
        await self._route(ROUTE_STACK)

    async def return_bill(self) -> None:
        await self._route(ROUTE_RETURN)

    async def extend_escrow(self) -> None:
        await self._route(ROUTE_EXTEND)

    async def _route(self, code: int) -> None:
        if self.escrow is None:
            raise DeviceError(f"{self.name}: no bill in escrow")
        reply = await self.ask(Header.ROUTE_BILL, bytes([code]), timeout=self.options.route_timeout_ms / 1000)
        self._escrow_touched = time.monotonic()
        if reply.is_ack:
            return
        error = ROUTE_ERRORS.get(reply.data[0], f"route_error_{reply.data[0]}") if reply.data else "route_nak"
        if error == "escrow_empty":
            # The bill already moved: our first try went through and its ACK was lost, or the
            # escrow timed out. Either way the next events (Stacked / Returned) tell the outcome.
            self.report("status", "escrow_empty", f"route {code}: escrow already empty")
            return
        if error == "route_failed":
            self.emit(CashFault(self.name, "route_failed", f"route {code} failed with a bill of {self.escrow[1]} fen"))
        raise DeviceError(f"{self.name}: route {code}: {error}")

    async def escrow_fate(self, counter: int | None) -> str | None:
        """After a restart: what became of the bill in escrow when the event counter was ``counter``?

        Why it can be known: the validator's five-deep event buffer (§1.7) outlives the host. The
        events after ``counter`` say ``"stacked"`` ((type, 0)) or ``"returned"`` ((0, 1)); with
        none (or only self-inhibit (0, 0)) the bill still waits: ``"in_escrow"`` (``return_bill``
        works then). None when nobody can tell: a reset, more than five events since, a fault.
        """
        if not counter:
            return None
        data = (await self.ask(self.poll_header)).data
        if len(data) != 11 or data[0] == 0:
            return None
        since = (data[0] - counter) % 255  # §1.7: 1..255 then 1 again, never 0 but after a reset
        if since > 4:  # the escrow event itself must still be in the buffer
            return None
        pairs = [(data[1 + 2 * i], data[2 + 2 * i]) for i in range(5)]  # newest first
        for a, b in reversed(pairs[:since]):  # oldest first
            if a and b == 0:
                return "stacked"
            if a == 0 and b == 1:
                return "returned"
            if (a, b) != (0, 0):
                return None
        a, b = pairs[since]
        if a and b == 1:
            self.escrow = (a, self.values.get(a, 0))
            return "in_escrow"
        return None

    # -- events ------------------------------------------------------------------------------
    async def _poll_once(self) -> None:
        await super()._poll_once()
        every = self.options.escrow_extend_ms / 1000
        if self.escrow and every and time.monotonic() - self._escrow_touched >= every:
            await self._route(ROUTE_EXTEND)

    async def _on_first_poll(self, data: bytes) -> None:
        a, b = data[1], data[2]  # result 1, the newest
        if a and b == 1:  # still pending from before we started (kioskd restart, power-up)
            if not self._after_reset:
                self.emit(CashFault(self.name, "bill_in_escrow_at_start", f"bill type {a} waits in escrow"))
            await self._on_event(a, b)
        self._after_reset = False

    async def _on_reset(self) -> None:
        if self.escrow is not None:
            self.emit(CashFault(self.name, "escrow_interrupted",
                                f"validator reset with {self.escrow[1]} fen in escrow: returned, stacked or held? check the cash count"))
            self.escrow = None
        self._after_reset = True

    async def _on_event(self, a: int, b: int) -> None:
        after_reset, self._after_reset = self._after_reset, False
        if a:
            await self._on_bill(a, b, after_reset)
            return
        name, kind = bill_event(b)
        if b == 1:  # bill returned from escrow
            fen = self.escrow[1] if self.escrow else 0
            self.escrow = None
            self.emit(Returned(self.name, fen))
        elif b == 0:  # master inhibit active: self-inhibited (unpolled 5 s, stacker full)
            self.report("status", name)
            if self.accepting:
                self._reapply = True
        elif kind == "reject" or b in (4, 5):
            self.emit(Rejected(self.name, name))
        elif b in (10, 12, 22):  # stacker ok / inserted, jam cleared
            self.report("status", name)
            if not self.suspended:
                self.set_health(Health.OK)
            self._reapply = self.accepting
        elif b == 20:  # barcode: the coupon follows as (255, 1) and is returned there
            self.report("status", name)
        else:  # fatal, fraud, stacker removed/full, unknown bill stacked, codes beyond Table 7
            detail = f"Table 7 code {b} ({kind})"
            if self.escrow and kind in ("fatal", "fraud"):
                detail += f"; {self.escrow[1]} fen was in escrow, not credited"
                self.escrow = None
            if kind in ("fatal", "fraud") or b == 11:
                self.set_health(Health.FAULT, name)
            self.emit(CashFault(self.name, name, detail))

    async def _on_bill(self, bill_type: int, b: int, after_reset: bool) -> None:
        fen = self.values.get(bill_type, 0)
        if b == 0:  # §1.7: accepted to the cash box -> the credit
            self.escrow = None
            if fen:
                self.emit(Stacked(self.name, fen))
            else:
                self.emit(CashFault(self.name, "unknown_bill_stacked", f"bill type {bill_type} has no value"))
            return
        if b != 1:
            self.emit(CashFault(self.name, "bad_bill_event", f"bill type {bill_type} with B = {b}"))
            return
        if after_reset:
            self.emit(CashFault(self.name, "bill_in_escrow_at_power_up", f"bill type {bill_type} ({fen} fen)"))
        if bill_type == COUPON or not fen:
            self.escrow = (bill_type, 0)
            self.emit(Rejected(self.name, "coupon" if bill_type == COUPON else "unknown_bill"))
            await self._route(ROUTE_RETURN)  # we take no coupons or unvalued bills
            return
        self.escrow = (bill_type, fen)
        self._escrow_touched = time.monotonic()
        self.emit(Escrow(self.name, fen))

"""In-memory test doubles of the HAL interfaces (hal/cash.py, hal/peripherals.py) for flow unit tests.

They behave like the interfaces promise, with scripted money and faults; the end-to-end and crash
tests use the real drivers against the emulators instead.
"""
from __future__ import annotations

import asyncio

from hal.cash import (CashAcceptor, CashFault, CoinAccepted, Escrow, PayoutDevice, PayoutResult, Returned,
                      Stacked)
from hal.device import DeviceContext
from hal.peripherals import (CardDispenser, DispenseFailed, DispenserStatus, Modem, PrintFailed, Printer,
                             PrinterStatus, SmsFailed)


async def hang(device):
    """Stop here for good (a power cut at this instant): the test cancels the flow once ``reached``."""
    device.reached.set()
    await asyncio.Event().wait()


class BillValidator(CashAcceptor):
    """Bills go to escrow one at a time once enabled; ``on_stack``: stack | silent | fault | hang."""

    def __init__(self, name="bv", inserts=(), on_stack="stack"):
        super().__init__(name, None, DeviceContext())
        self.reached = asyncio.Event()
        self.inserts = list(inserts)
        self.on_stack = on_stack
        self.queue: asyncio.Queue = asyncio.Queue()
        self.inhibited = True
        self.escrow: int | None = None
        self.stacked: list[int] = []
        self.returned: list[int] = []
        self.accepting: list[int] = []

    async def events(self):
        while True:
            yield await self.queue.get()

    def _next(self):
        if not self.inhibited and self.escrow is None and self.inserts:
            item = self.inserts.pop(0)
            if isinstance(item, str):  # a scripted fault
                self.queue.put_nowait(CashFault(self.name, item))
                return
            self.escrow = item
            self.queue.put_nowait(Escrow(self.name, item))

    def insert(self, fen):
        self.inserts.append(fen)
        self._next()

    async def set_inhibit(self, inhibited):
        self.inhibited = inhibited
        self._next()

    async def accept_only(self, fen_values):
        self.accepting = list(fen_values)

    async def stack(self):
        if self.on_stack == "hang":
            await hang(self)
        fen, self.escrow = self.escrow, None
        if self.on_stack == "silent":
            return
        if self.on_stack == "fault":
            self.queue.put_nowait(CashFault(self.name, "bill_jammed"))
            return
        self.stacked.append(fen)
        self.queue.put_nowait(Stacked(self.name, fen))
        self._next()

    async def return_bill(self):
        fen, self.escrow = self.escrow, None
        self.returned.append(fen)
        self.queue.put_nowait(Returned(self.name, fen))
        self._next()


class CoinAcceptor(CashAcceptor):
    def __init__(self, name="coin", inserts=()):
        super().__init__(name, None, DeviceContext())
        self.inserts = list(inserts)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.inhibited = True

    async def events(self):
        while True:
            yield await self.queue.get()

    def insert(self, fen):
        self.inserts.append(fen)
        if not self.inhibited:
            self._flush()

    def _flush(self):
        while self.inserts:
            self.queue.put_nowait(CoinAccepted(self.name, self.inserts.pop(0)))

    async def set_inhibit(self, inhibited):
        self.inhibited = inhibited
        if not inhibited:
            self._flush()

    async def accept_only(self, fen_values):
        pass


class Hopper(PayoutDevice):
    """Pays from ``coins``; ``jam_after`` coins it stops (a jam); ``raise_on_dispense`` loses the answer."""

    def __init__(self, name="hopper", coins=100, coin_fen=100, jam_after=None, raise_on_dispense=False, hang=None):
        super().__init__(name, None, DeviceContext())
        self.hang, self.reached, self.silent = hang, asyncio.Event(), False  # hang: "before" | "after"
        self.coins, self.coin_fen, self.jam_after = coins, coin_fen, jam_after
        self.raise_on_dispense = raise_on_dispense
        self.paid_total = 0
        self.last = PayoutResult(0, 0)
        self.counter = 0  # one event per payout accepted (as ccTalk's hdr 166 counter)

    async def payout_counter(self):
        if self.silent:
            raise TimeoutError("hopper does not answer")
        return self.counter

    async def payout_since(self, counter, count):
        if self.silent:
            raise TimeoutError("hopper does not answer")
        if self.counter == counter:
            return PayoutResult(0, count)
        return self.last if self.counter == counter + 1 else None

    async def dispense(self, count):
        if self.hang == "before":
            await hang(self)
        self.counter += 1
        can = min(count, self.coins)
        if self.jam_after is not None:
            can = min(can, self.jam_after)
        self.coins -= can
        self.paid_total += can
        self.last = PayoutResult(can, count - can, can * self.coin_fen)
        if self.raise_on_dispense:
            raise RuntimeError("hopper went silent")
        if self.hang == "after":
            await hang(self)
        return self.last

    async def last_payout(self):
        if self.silent:
            raise TimeoutError("hopper does not answer")
        return self.last


class FakePrinter(Printer):
    def __init__(self, name="printer", paper=True, fail=False):
        super().__init__(name, None, DeviceContext())
        self.paper, self.fail = paper, fail
        self.printed = []

    async def status(self):
        return PrinterStatus(known=True, online=True, paper_out=not self.paper)

    async def print_receipt(self, receipt):
        if self.fail:
            raise PrintFailed("cutter jammed")
        self.printed.append(receipt)


class Dispenser(CardDispenser):
    """``cards`` in stock; ``jam`` fails the dispense; ``customer_takes`` decides wait_taken."""

    def __init__(self, name="cards30", cards=10, jam=False, customer_takes=True, hang=None):
        super().__init__(name, None, DeviceContext())
        self.hang, self.reached = hang, asyncio.Event()  # hang: "dispense" (card at gate) | "wait_taken"
        self.cards, self.jam, self.customer_takes = cards, jam, customer_takes
        self.at_gate = False
        self.captured = 0
        self.given = 0

    async def status(self):
        return DispenserStatus(known=True, empty=self.cards == 0, jammed=False, card_at_gate=self.at_gate)

    async def dispense_to_gate(self):
        if self.cards == 0:
            raise DispenseFailed("empty")
        if self.jam:
            raise DispenseFailed("jammed", "card stuck in the throat")
        self.cards -= 1
        self.at_gate = True
        if self.hang == "dispense":
            await hang(self)

    async def wait_taken(self, timeout):
        if self.hang == "wait_taken":
            await hang(self)
        await asyncio.sleep(0)
        if self.customer_takes:
            self.at_gate = False
            self.given += 1
            return True
        return False

    async def capture(self):
        if self.at_gate:
            self.at_gate = False
            self.captured += 1


class FakeModem(Modem):
    def __init__(self, name="modem", fail=False):
        super().__init__(name, None, DeviceContext())
        self.fail = fail
        self.sent = []

    async def send_sms(self, number, text):
        if self.fail:
            raise SmsFailed("+CMS ERROR: 38")
        self.sent.append((number, text))
        return [len(self.sent)]

"""Soak: 10,000 coins and bills with random faults; what the drivers credit is what the box holds.

Faults: rejects, jams, bills pulled back, corrupt replies (checksum errors), a mute line.
Money is inserted in batches of at most 5 between polls (§1.7: the buffer holds five), so no
event is lost legitimately; every fen the emulator put in its cash box must be credited once,
and nothing else.
"""
import asyncio
import os
import random

import pytest

from hal.cash import CashFault, CoinAccepted, Escrow, Rejected, Returned, Stacked
from hal.cctalk.bill import CcTalkBillValidator
from hal.cctalk.coin import CcTalkCoinAcceptor
from hal.device import DeviceError

from .conftest import condition

COINS = 8000
BILLS = 2000
SOAK = {"poll_interval_ms": 2, "reply_timeout_ms": 30, "silent_after": 2}


class Ledger:
    """The one consumer of a device's events, as a transaction flow would be."""

    def __init__(self, device):
        self.device = device
        self.credited = 0
        self.seen: list = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._consume())

    async def _consume(self):
        async for event in self.device.events():
            if isinstance(event, (CoinAccepted, Stacked)):
                self.credited += event.fen
            self.seen.append(event)
            self.arrived.set()

    async def next(self, kinds, timeout=5.0):
        """The next event of one of ``kinds`` after position ``start``."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(self._read, len(self.seen)):
                    if isinstance(self.seen[i], kinds):
                        self._read = i + 1
                        return self.seen[i]
                self._read = len(self.seen)
                self.arrived.clear()
                await self.arrived.wait()

    _read = 0


@pytest.mark.slow
async def test_soak_credited_equals_accepted_exactly(emu):
    rng = random.Random(int(os.environ.get("SOAK_SEED", "20261124")))
    control = emu.runner.control  # the same entry point as the control socket, minus the socket
    model = emu.model
    coin = emu.driver(CcTalkCoinAcceptor, **SOAK)
    bill = emu.driver(CcTalkBillValidator, route_timeout_ms=200, **SOAK)  # a route holds the bus
    await coin.start()
    await bill.start()
    coins, bills = Ledger(coin), Ledger(bill)
    await coin.set_inhibit(False)
    await bill.set_inhibit(False)

    async def line_fault():
        if rng.random() < 0.5:
            control("corrupt", {"count": rng.randint(1, 2)})
        else:  # mute until a transaction has timed out at least once, then speak again
            before = coin.bus.stats["timeouts"]
            control("mute", {})
            await condition(lambda: coin.bus.stats["timeouts"] > before)
            control("unmute", {})

    async def feed_coins():
        done = 0
        while done < COINS:
            batch = min(rng.randint(1, 5), COINS - done)
            for _ in range(batch):
                if rng.random() < 0.03:
                    control("insert_coin", {"value": 20})  # no such coin: rejected
                else:
                    control("insert_coin", {"value": rng.choice([10, 50, 100])})
            done += batch
            if rng.random() < 0.02:
                await line_fault()
            await condition(lambda: coin.event_counter == model.coin.events.counter, timeout=5, step=0.001)

    async def route(action):
        while True:
            try:
                await action()
                return
            except DeviceError:  # a mute outlasted the retries: the bill is still in escrow
                await asyncio.sleep(0.005)

    escrowed = 0

    async def feed_bills():
        nonlocal escrowed
        for _ in range(BILLS):
            if rng.random() < 0.03:
                control("insert_bill", {"value": 300})  # not a bill this validator knows
                await condition(lambda: bill.event_counter == model.bill.events.counter, timeout=5, step=0.001)
                continue
            assert control("insert_bill", {"value": rng.choice([100, 500, 1000, 2000, 5000, 10000])}) == "escrow"
            await bills.next(Escrow)
            escrowed += 1
            r = rng.random()
            if r < 0.03:
                control("jam_bill", {})
                await bills.next(CashFault)
                control("clear_jam", {})
            elif r < 0.05:
                control("fraud", {"device": "bill"})
                await bills.next(CashFault)
            elif r < 0.12:
                await route(bill.return_bill)
                await bills.next(Returned)
            else:
                await route(bill.stack)
                await bills.next(Stacked)

    try:
        await asyncio.gather(feed_coins(), feed_bills())
        await condition(lambda: coin.event_counter == model.coin.events.counter, timeout=5, step=0.001)
        state = control("state", {})
        lost = [e for e in coins.seen + bills.seen if isinstance(e, CashFault) and e.code in ("lost_events", "device_reset")]
        assert lost == []
        assert coins.credited == coin.credited_fen == state["coins_accepted_fen"]
        assert bills.credited == bill.credited_fen == state["bills_stacked_fen"]
        assert len([e for e in coins.seen if isinstance(e, (CoinAccepted, Rejected))]) == COINS  # one each
        assert len([e for e in bills.seen if isinstance(e, Escrow)]) == escrowed
        assert coin.bus.stats["checksum_errors"] > 0 and coin.bus.stats["timeouts"] > 0  # the faults happened
    finally:
        coins.task.cancel()
        bills.task.cancel()
        await coin.stop()
        await bill.stop()

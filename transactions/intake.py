"""Taking cash for one transaction: bills through escrow, coins as they come, until the due amount.

Why escrow matters: a bill is only credited when it is *stacked*. Before stacking, the flow decides
whether the bill keeps the payment within the due amount (plus the change the kiosk may pay); if
not it is returned. Each stack is a journalled side effect (intent ``stack_bill``) because a power
cut between stack() and Stacked leaves the bill's fate unknown — recovery then holds its value
for review instead of guessing.

Before a note that fits is stacked, the customer is asked whether to keep it (收下这张纸币?): the
question is journalled (state ``deciding``, nothing credited), its answer too; no answer within
``note_question_s`` (well before the validator times the escrow out itself), a cancel, or the
validator letting the note go meanwhile: it goes back. A power cut while asking leaves an
uncredited note in escrow, which the validator returns (§1.8). ``note_question_s = 0`` keeps
every note that fits without asking.

The caller's spec must have: collecting -escrow-> stacking [stack_bill]; collecting -note->
deciding -keep-> stacking [stack_bill] | -give_back-> collecting; stacking -stacked/returned/
stack_failed-> collecting.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

from hal.cash import CashFault, CoinAccepted, Escrow, Rejected, Returned, Stacked

from . import records
from .cashlock import CashLock
from .customer import CustomerCancelled, CustomerIdle
from .flow import Run, Settled
from .messages import yuan

# Bills whose stack result never came, per acceptor: [(txn, fen), ...], oldest first. The held
# transaction owns that bill; a Stacked/Returned the device reports later is its late answer,
# never the next customer's cash (nor a second credit in the drain). A restart forgets them with
# the driver, which treats its event buffer as history then (§1.7).
_UNKNOWN_STACKS: "weakref.WeakKeyDictionary[Any, list[tuple[str, int]]]" = weakref.WeakKeyDictionary()


class CashStopped(Exception):
    """Cash intake ended by a device (fault, no acceptor, bill fate unknown); ``code`` names it."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class CashLocked(CashStopped):
    """The kiosk locked down (panel door open, mains lost) while cash was to go in: the flow pays
    back what is in (transactions/cashlock.py says why the intake, not only kioskd, must look)."""


class _StackUnknown(Exception):
    pass


class _Events:
    """All acceptors' events merged in arrival order, with a side list for events put back."""

    def __init__(self, acceptors: list[Any]) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.put_back: list[tuple[Any, Any]] = []
        self.tasks = [asyncio.create_task(self._pump(a)) for a in acceptors]

    async def _pump(self, acceptor: Any) -> None:
        async for event in acceptor.events():
            self.queue.put_nowait((acceptor, event))

    async def next(self, timeout: float, cancelled: asyncio.Event | None = None,
                   lock: CashLock | None = None) -> tuple[Any, Any]:
        if self.put_back:
            return self.put_back.pop(0)
        getter = asyncio.ensure_future(self.queue.get())
        waiters = {getter}
        if cancelled is not None:
            waiters.add(asyncio.ensure_future(cancelled.wait()))
        if lock is not None:
            waiters.add(asyncio.ensure_future(lock.engaged.wait()))
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                if not w.done():
                    w.cancel()
        if getter in done:  # an event wins over a cancel pressed at the same instant
            return getter.result()
        if not done:
            raise TimeoutError
        if lock is not None and lock.reasons:
            raise CashLocked(lock.reason or "locked")
        raise CustomerCancelled("cancel pressed while inserting cash")

    async def stale(self) -> list[tuple[Any, Any]]:
        """What the acceptors reported before this intake began (a restart, the last visit's tail).

        Why: a validator found holding a bill at start reports a fault and an Escrow; those belong
        to nobody now and must not stop or steer this customer's payment.
        """
        for _ in range(2):  # let each pump move what its acceptor already queued
            await asyncio.sleep(0)
        out = list(self.put_back)
        self.put_back.clear()
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _enable(acceptors: list[Any], denominations: list[int]) -> None:
    for a in acceptors:
        await a.accept_only(denominations)
        await a.set_inhibit(False)


async def _inhibit(acceptors: list[Any]) -> None:
    for a in acceptors:
        try:
            await a.set_inhibit(True)
        except Exception:  # the safe state is best effort; the device reports its own fault
            pass


async def _customer_keeps(run: Run, acceptor: Any, fen: int, events: _Events) -> tuple[bool, int]:
    """Ask about the note ``acceptor`` holds; returns (keep it, fen of coins credited meanwhile).

    Coins keep being credited while the question is up (they are in the box already). Anything
    else the holding acceptor says (returned on its own, a fault, pulled back) ends the question:
    the note is not ours to route any more, and the event is put back for the intake to handle.
    """
    note = {"device": acceptor.name, "fen": fen}
    await run.go("note", data={"note": note})
    question = asyncio.ensure_future(run.customer.decide(
        "accept_note", ["accept", "return"], "return", run.config.note_question_s, amount=yuan(fen)))
    later: list[tuple[Any, Any]] = []
    credited = 0
    gone = False
    try:
        while not question.done() and not gone:
            if events.put_back:
                src, event = events.put_back.pop(0)
            else:
                getter = asyncio.ensure_future(events.queue.get())
                await asyncio.wait({getter, question}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                src, event = getter.result()
            if src is acceptor or not isinstance(event, (CoinAccepted, Stacked)):
                later.append((src, event))
                gone = src is acceptor
            else:
                await _credit(run, src, event)
                credited += event.fen
    finally:
        events.put_back[:0] = later
        if not question.done():
            question.cancel()
    answer = "gone" if gone else question.result()
    if answer == "accept" and run.services.cash_lock.reasons:
        answer = "locked"  # the kiosk locked down while the customer decided: no stacking now
    if answer != "accept":
        await run.go("give_back", data={"note": {**note, "answer": answer}})
        if not gone:
            await acceptor.return_bill()
        run.say("note_returned", amount=yuan(fen))
    return answer == "accept", credited


async def _stack(run: Run, acceptor: Any, fen: int, events: _Events, event: str = "escrow") -> int:
    """Stack the escrowed bill as a journalled effect; returns the fen credited (0 if returned)."""
    timeout = run.config.stack_timeout
    others: list[tuple[Any, Any]] = []

    async def action() -> bool:
        await acceptor.stack()
        try:
            while True:
                src, event = await events.next(timeout)
                if src is acceptor and isinstance(event, (Stacked, Returned)):
                    return isinstance(event, Stacked)
                if src is acceptor and isinstance(event, CashFault):
                    raise _StackUnknown(event.code)
                others.append((src, event))  # a coin meanwhile: handled after the stack
        except TimeoutError:
            raise _StackUnknown("no Stacked/Returned in time") from None

    def settle(result: Any) -> Settled:
        if result is True:
            return Settled({"stacked": True, "fen": fen}, [("cash_in", fen, f"bill:{acceptor.name}")],
                           [("cashbox", f"bill:{fen}", 1)])
        if result is False:
            return Settled({"stacked": False, "fen": fen})
        # Unknown: the customer may have lost the bill, or the box may hold it. Hold, do not guess.
        return Settled({"unknown": True, "fen": fen, "error": str(result)},
                       [("cash_in", fen, f"bill?:{acceptor.name}"), ("held", fen, "stack unknown")])

    try:
        # the validator's event counter now: recovery reads its buffer from here (escrow_fate)
        args = {"device": acceptor.name, "fen": fen, "counter": getattr(acceptor, "event_counter", None)}
        stacked = await run.effect(event, args, action, settle)
    except Exception as exc:  # no Stacked/Returned in time, a fault, or stack() itself failed: held
        _UNKNOWN_STACKS.setdefault(acceptor, []).append((run.txn, fen))
        await run.go("stack_failed")
        raise CashStopped("stack_unknown", str(exc)) from None
    finally:
        events.put_back.extend(others)
    await run.go("stacked" if stacked else "returned")
    return fen if stacked else 0


async def _late_result(run: Run, acceptor: Any, event: Any) -> bool:
    """A Stacked/Returned from a device with a stack-unknown outstanding: a device event for the
    person reviewing that bill's transaction (a stacked bill is counted in the cash box), no credit."""
    waiting = _UNKNOWN_STACKS.get(acceptor)
    if not waiting or not isinstance(event, (Stacked, Returned)):
        return False
    if event.fen and waiting[0][1] and event.fen != waiting[0][1]:
        return False  # another bill's (a bill too large going back): not that answer
    txn, fen = waiting.pop(0)
    stacked = isinstance(event, Stacked)
    now = run.services.clock()
    detail = (f"{'stacked' if stacked else 'returned'} {event.fen} fen after the stack of {fen} fen in {txn} "
              f"went unanswered: review {txn}")

    def write(conn: Any) -> None:
        records.record_device_event(conn, acceptor.name, "fault", "bill_result_after_unknown", detail,
                                    {"txn": txn, "fen": fen, "result": "stacked" if stacked else "returned",
                                     "event_fen": event.fen, "during": run.txn}, now)
        if stacked:
            records.adjust_counter(conn, "cashbox", f"bill:{event.fen}", 1, now)
    await run.journal.write(write)
    run.boundary("late_bill", "event")
    return True


async def _credit(run: Run, acceptor: Any, event: Any) -> None:
    """A coin (or a bill stacked without escrow) in the box: cash in, cash box count, and the
    device's event counter of it (``acceptor_seq``), so recovery can find what came after."""
    kind = "coin" if isinstance(event, CoinAccepted) else "bill"
    counts = [("cashbox", f"{kind}:{event.fen}", 1)]
    if getattr(event, "seq", None):
        counts.append(("acceptor_seq", acceptor.name, event.seq))
    await run.money([("cash_in", event.fen, f"{kind}:{acceptor.name}")], counts)


async def take_cash(run: Run, due_fen: int, allow_over_fen: int = 0) -> int:
    """Collect until ``due_fen`` is in; returns the transaction's cash in (may exceed due by coins).

    Raises CustomerCancelled / CustomerIdle (walked away) / CashStopped; the money already in is in
    the journal either way, and the caller refunds it.
    """
    acceptors = run.services.hw.acceptors
    if not acceptors:
        raise CashStopped("no_acceptor")
    lock = run.services.cash_lock
    paid = (await run.ledger()).cash_in
    events = _Events(acceptors)
    try:
        for acceptor, event in await events.stale():
            if await _late_result(run, acceptor, event):
                continue
            if isinstance(event, (CoinAccepted, Stacked)):  # money is money: it is in the box now
                await _credit(run, acceptor, event)
                paid += event.fen
            elif isinstance(event, Escrow):  # a bill nobody decided on: back to the bezel
                try:
                    await acceptor.return_bill()
                except Exception:
                    pass
        if lock.reasons:  # locked down after this customer was admitted: never enable
            raise CashLocked(lock.reason or "locked")
        await _enable(acceptors, [d for d in run.config.denominations if d <= due_fen - paid + allow_over_fen])
        if lock.reasons:  # locked down while enabling: its inhibit may have gone out before ours
            raise CashLocked(lock.reason or "locked")
        run.say("insert_cash", due=yuan(due_fen), paid=yuan(paid))
        while paid < due_fen:
            try:
                acceptor, event = await events.next(run.config.idle_timeout, run.customer.cancelled, lock)
            except TimeoutError:
                raise CustomerIdle("no cash for the idle timeout") from None
            if await _late_result(run, acceptor, event):
                continue
            if isinstance(event, Escrow) and lock.reasons:  # a note in escrow as the door opened: back
                await acceptor.return_bill()
                raise CashLocked(lock.reason or "locked")
            if isinstance(event, Escrow):
                if paid + event.fen <= due_fen + allow_over_fen and run.config.note_question_s > 0:
                    keep, coins = await _customer_keeps(run, acceptor, event.fen, events)
                    paid += coins
                    if not keep:
                        if coins:
                            run.say("paid_so_far", paid=yuan(paid), due=yuan(due_fen))
                        continue
                    if paid + event.fen <= due_fen + allow_over_fen:
                        paid += await _stack(run, acceptor, event.fen, events, "keep")
                    else:  # coins meanwhile made the note too large: back it goes after all
                        await run.go("give_back", data={"note": {"device": acceptor.name, "fen": event.fen,
                                                                 "answer": "too_large"}})
                        await acceptor.return_bill()
                        run.say("bill_too_large", due=yuan(due_fen - paid))
                        continue
                elif paid + event.fen <= due_fen + allow_over_fen:
                    paid += await _stack(run, acceptor, event.fen, events)
                else:
                    await acceptor.return_bill()
                    run.say("bill_too_large", due=yuan(due_fen - paid))
                    continue
            elif isinstance(event, (CoinAccepted, Stacked)):  # Stacked without escrow: credit it all the same
                await _credit(run, acceptor, event)
                paid += event.fen
            elif isinstance(event, Rejected):
                run.say("cash_rejected")
                continue
            elif isinstance(event, CashFault):
                raise CashStopped(event.code, event.detail)
            else:
                continue
            run.say("paid_so_far", paid=yuan(paid), due=yuan(due_fen))
    except (CustomerCancelled, CashStopped):
        raise
    except Exception as exc:  # a device error (no reply, route failed): stop, and the flow pays back now
        raise CashStopped("device_error", f"{type(exc).__name__}: {exc}") from exc
    finally:
        await _inhibit(acceptors)
        try:
            paid += await _drain(run, events)
        finally:
            await events.close()
    return paid


async def _drain(run: Run, events: _Events) -> int:
    """Money already in flight when the acceptors were inhibited still counts (a coin in the chute)."""
    extra = 0
    while True:
        try:
            acceptor, event = await events.next(run.config.drain_time)
        except TimeoutError:
            return extra
        if await _late_result(run, acceptor, event):
            continue
        if isinstance(event, (CoinAccepted, Stacked)):
            await _credit(run, acceptor, event)
            extra += event.fen
        elif isinstance(event, Escrow):
            try:
                await acceptor.return_bill()
            except Exception:  # it stays in escrow, uncredited; the validator times it out (§1.8)
                pass

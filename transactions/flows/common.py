"""Pieces of table and code that several flows share: the cash states, the refund path, the phone.

Every cash-taking flow has the same intake states (collecting/stacking) and the same refund state
(refunding: pay back through the hopper, voucher the rest), so they are written once here and
spliced into each flow's table.
"""
from __future__ import annotations

from ..boss import BossError, BossRefused, BossTimeout, BossUnavailable
from ..customer import CustomerCancelled, CustomerIdle
from ..effects import settle_and_finish
from ..flow import Run, Settled, State, T, Transition
from ..intake import CashLocked, CashStopped

FINALS = (
    State("done", "finished: service delivered, ledger balanced", recover="final"),
    State("refunded", "finished: nothing delivered, every fen paid back or on a voucher", recover="final"),
    State("declined", "finished before any cash was taken (offline, bad number, nothing to pay)", recover="final"),
    State("cancelled", "finished: the customer left before any cash or side effect", recover="final"),
    State("failed", "finished: a no-cash service could not be done", recover="final"),
    State("review", "finished: money or outcome unknown, held for a person to decide", recover="final"),
)

CASH_STATES = (
    State("collecting", "acceptors enabled, taking cash up to the due amount"),
    State("deciding", "a note waits in escrow, not credited, while the customer is asked to keep or return it"),
    State("stacking", "stack_bill intent open: bill moving from escrow to the box"),
    State("refunding", "paying back what is outstanding (hopper, then voucher)"),
)


def cash_transitions() -> tuple[Transition, ...]:
    return (
        T("collecting", "escrow", "stacking", "stack_bill"),
        T("collecting", "note", "deciding"),
        T("deciding", "keep", "stacking", "stack_bill"),
        T("deciding", "give_back", "collecting"),
        T("stacking", "stacked", "collecting"),
        T("stacking", "returned", "collecting"),
        T("stacking", "stack_failed", "collecting"),
        T("collecting", "refund", "refunding"),
        *selfs("refunding", "payout", "print"),
        T("refunding", "finish", "refunded"),
        T("refunding", "nothing", "cancelled"),
    )


def selfs(state: str, *effects: str) -> tuple[Transition, ...]:
    """Self-transitions for shared effects: payout [payout], print [print], notify [sms]."""
    kinds = {"payout": "payout", "print": "print", "notify": "sms"}
    return tuple(T(state, e, state, kinds[e]) for e in effects)


def valid_phone(phone: str) -> bool:
    """Mainland mobile numbers: 11 digits starting with 1 (the BOSS has the final word)."""
    return len(phone) == 11 and phone.isdigit() and phone[0] == "1"


async def ask_phone(run: Run, attempts: int = 3) -> str:
    for _ in range(attempts):
        phone = await run.customer.enter("enter_phone", "phone")
        if valid_phone(phone):
            return phone
        run.say("phone_invalid")
    raise CustomerCancelled("no valid phone number")


def boss_problem_key(exc: BossError) -> str:
    """The message for a BOSS failure before any cash: offline, busy, or refused."""
    if isinstance(exc, (BossUnavailable, BossTimeout)):
        return "boss_offline"
    if isinstance(exc, BossRefused) and exc.code in ("no_such_number", "bad_number"):
        return "number_unknown"
    if isinstance(exc, BossRefused) and exc.code == "number_closed":
        return "number_closed"
    return "boss_refused"


async def refund_after(run: Run, exc: BaseException) -> str:
    """The one exit for anything that stops a cash flow once cash may be in."""
    if isinstance(exc, CustomerIdle):
        run.say("idle_refund")
        reason = "customer idle"
    elif isinstance(exc, CustomerCancelled):
        run.say("cancel_refund")
        reason = "customer cancelled"
    elif isinstance(exc, CashLocked):
        run.say("locked_refund")
        reason = f"kiosk locked down: {exc.code}"
    elif isinstance(exc, CashStopped):
        run.say("cash_fault_refund")
        reason = f"cash device: {exc.code}"
    else:
        run.say("service_failed_refund")
        reason = str(exc) or type(exc).__name__
    if run.state != "refunding":
        await run.go("refund")
    led = await run.ledger()
    if led.cash_in == 0:
        return await run.finish("nothing", reason)
    return await settle_and_finish(run, reason)


async def keyed_boss_write(run: Run, event: str, args: dict, call, applied_fen: int = 0) -> object:
    """A BOSS write as a journalled effect, repeated with the SAME key on timeout/unreachable.

    Outcome: applied (with ``applied_fen`` recorded as applied money in the same commit),
    refused (raises BossRefused), or unknown after ``boss_attempts`` (raises BossTimeout):
    the caller sends an unknown to review, never refunds it (the BOSS may still apply it).
    """
    attempts = run.config.boss_attempts

    async def action():
        last: Exception | None = None
        for _ in range(attempts):
            try:
                return await call()
            except (BossTimeout, BossUnavailable) as exc:
                last = exc
        raise last  # type: ignore[misc]

    def settle(result):
        if isinstance(result, BossRefused):
            return Settled({"applied": False, "refused": result.code})
        if isinstance(result, Exception):  # unknown: its hold commits with it (a cut next must not refund it)
            return Settled({"applied": None, "error": str(result)},
                           [("held", applied_fen, "boss unknown")] if applied_fen else [])
        ref = getattr(result, "boss_ref", "")
        return Settled({"applied": True, "boss_ref": ref}, [("applied", applied_fen, f"boss:{ref}")] if applied_fen else [])

    return await run.effect(event, args, action, settle)


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) == 11 else phone

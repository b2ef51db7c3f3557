"""Side effects most flows share: paying coins back, refund vouchers, receipts, SMS.

Paying back follows one rule everywhere (live flows and recovery alike): what the hopper can pay
in whole coins it pays (a journalled ``payout`` effect); whatever it did not or could not pay
goes on a refund voucher with a claim code (a journal record, printed if the printer works,
shown on screen in any case). So every fen taken is applied, paid back, owed on a voucher,
or held for review.
"""
from __future__ import annotations

from typing import Any

from hal.cash import PayoutResult
from hal.peripherals import Receipt

from . import records
from .flow import Run, Settled
from .ledger import split_payout
from .messages import both, money, text, yuan


async def _hopper_level(run: Run, hopper: Any) -> int | None:
    level = (await run.journal.read(records.counters, "hopper")).get("hopper", {}).get(hopper.name)
    return level  # None: never counted (no refill recorded): let the hopper itself say "empty"


async def _payout_counter(hopper: Any) -> int | None:
    """The hopper's event counter before a payout; None: no payout (it cannot be told apart later).

    A hopper that does not answer now, or cannot say which payout is which (no counter), is not
    asked to pay: what it would pay could never be told from the payout before (recovery would
    have to trust ``last_payout``). The amount goes on a voucher instead.
    """
    if not hasattr(hopper, "payout_counter") or not hasattr(hopper, "payout_since"):
        return None
    try:
        return await hopper.payout_counter()
    except Exception:
        return None


async def pay_back(run: Run, fen: int, kind: str, reason: str) -> tuple[int, str | None]:
    """Pay ``fen`` back as ``kind`` ("change" or "refunded"); returns (paid by hopper, voucher code).

    The spec needs a self-transition ``payout`` [payout] on the current state.
    """
    if fen <= 0:
        return 0, None
    hopper = run.services.hw.hopper
    paid_fen = held_fen = 0
    if hopper is not None and getattr(hopper, "coin_fen", 0) > 0:
        count, _ = split_payout(fen, hopper.coin_fen, await _hopper_level(run, hopper))
        counter = await _payout_counter(hopper) if count else None
        if count and counter is not None:
            coin = hopper.coin_fen

            async def action() -> PayoutResult:
                try:
                    return await hopper.dispense(count)
                except Exception:
                    # A payout is final only when the hopper says it is: remaining 0, paid + unpaid =
                    # asked, one event since the counter of the intent (payout_since waits for it).
                    # A figure read at once would be a payout still running, or the previous one.
                    result = await hopper.payout_since(counter, count)
                    if result is None:
                        raise
                    return result

            def settle(result: Any) -> Settled:
                if isinstance(result, PayoutResult):
                    paid = min(result.paid, count)
                    return Settled({"paid": paid, "unpaid": count - paid}, [(kind, paid * coin, f"hopper:{hopper.name}")],
                                   [("hopper", hopper.name, -paid)])
                # Unknown: the hold commits with the outcome, so a cut between them cannot voucher it.
                return Settled({"error": str(result), "paid": None}, [("held", count * coin, "payout unknown")])

            # the counter lets recovery tell this payout from the last one (payout_since)
            args = {"count": count, "coin_fen": coin, "purpose": kind, "device": hopper.name, "counter": counter}
            try:
                result = await run.effect("payout", args, action, settle)
                paid_fen = min(result.paid, count) * coin
            except Exception:  # the coins' fate is unknown: held for review with the outcome
                held_fen = count * coin
    rest = fen - paid_fen - held_fen
    code = await issue_voucher(run, rest, reason) if rest > 0 else None
    if paid_fen:
        run.say("take_coins", amount=yuan(paid_fen))
    return paid_fen, code


async def issue_voucher(run: Run, fen: int, reason: str) -> str:
    code = await run.journal.write(records.issue_voucher, run.txn, fen, reason, run.services.clock())
    run.boundary("voucher", "commit")
    run.say("voucher_issued", amount=yuan(fen), code=code)
    receipt = Receipt(title=both("receipt_voucher_title"),
                      lines=[(both("label_txn"), run.txn), (both("label_amount"), money(fen)),
                             (both("label_claim_code"), code), (both("label_reason"), reason)],
                      qr=code, footer=both("receipt_voucher_footer", hotline=run.config.hotline))
    await print_receipt(run, receipt)
    return code


async def settle_and_finish(run: Run, reason: str, kind: str = "refunded", event: str = "finish") -> str:
    """Pay back whatever is outstanding (hopper, then voucher) and take the final transition."""
    led = await run.ledger()
    if led.outstanding > 0:
        await pay_back(run, led.outstanding, kind, reason)
    return await run.finish(event, reason)


async def print_receipt(run: Run, receipt: Receipt) -> bool:
    """Print as a journalled effect (needs self-transition ``print`` [print]); never raises."""
    printer = run.services.hw.printer
    if printer is None:
        run.say("no_receipt")
        return False
    try:
        status = await printer.status()
    except Exception:
        status = None
    if status is None or not status.can_print:
        run.say("no_receipt")
        return False

    def settle(result: Any) -> Settled:
        if isinstance(result, Exception):
            return Settled({"printed": False, "error": str(result)})
        return Settled({"printed": True})

    try:
        await run.effect("print", {"title": receipt.title}, lambda: printer.print_receipt(receipt), settle)
        return True
    except Exception:
        run.say("no_receipt")
        return False


async def send_sms(run: Run, phone: str, key: str, **fmt: Any) -> bool:
    """An SMS in Chinese through the kiosk's modem (needs self-transition ``notify`` [sms]); never raises."""
    modem = run.services.hw.modem
    if modem is None:
        return False
    body = text(key, "zh", **fmt)

    def settle(result: Any) -> Settled:
        if isinstance(result, Exception):
            return Settled({"sent": False, "error": str(result)})
        return Settled({"sent": True, "refs": list(result)})

    try:
        await run.effect("notify", {"phone": phone, "key": key}, lambda: modem.send_sms(phone, body), settle)
        return True
    except Exception:
        return False

"""新号入网 / New number: ID card and photo -> pick a number (held at the BOSS) -> cash -> blank SIM
written over PC/SC -> number opened at the BOSS -> SIM to the gate -> receipt.

The price counts as applied when the BOSS opens the number on the written card (the service is
the number; a card the customer leaves at the gate is kept for the counter, not refunded). Any
stop before that captures the SIM, releases the number and pays the cash back. A number held for
a customer who walked away is released at once, or by recovery after a power cut, or by the
BOSS when its hold lapses.
"""
from __future__ import annotations

import logging

from hal.peripherals import Receipt

from .. import records
from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import pay_back, print_receipt
from ..flow import FlowSpec, Run, Settled, State, T
from ..intake import CashStopped, take_cash
from ..messages import both, money, yuan
from .common import CASH_STATES, FINALS, boss_problem_key, cash_transitions, refund_after, selfs
from .identity import (IdentityFailed, boss_step, identify, sim_capture, sim_hand_out, sim_left, sim_move,
                       sim_states, sim_transitions, sim_write)

log = logging.getLogger("kioskd.flows")

SUFFIXES = ["any", "8", "6", "9", "168", "520", "888"]  # last digits the customer may ask for

SPEC = FlowSpec(
    name="new_number", title_zh="新号入网", title_en="New number", needs_boss=True, takes_cash=True,
    needs=("id_reader", "camera", "sim_writer", "sim_dispenser"),
    states=(
        State("start", "checks (SIM stock, reader), then the customer's ID card and photo"),
        State("identified", "ID card read and valid, photo taken: both sealed in the record"),
        State("reserving", "boss_reserve intent open: the chosen number held for this transaction"),
        State("reserved", "the number is held: the customer confirms the price"),
        State("releasing", "boss_release intent open: the customer left, the number goes back to the pool"),
        *CASH_STATES,
        *sim_states("opening", "boss_open_number intent open: the number opened on the written card (key {txn}:open)"),
        State("delivered", "number opened: change, receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "identified", "identified"),
        T("start", "decline", "declined"),
        T("start", "cancel", "cancelled"),
        T("identified", "reserve", "reserving", "boss_reserve"),
        T("identified", "decline", "declined"),
        T("identified", "cancel", "cancelled"),
        T("reserving", "reserved", "reserved"),
        T("reserving", "taken", "identified"),  # someone else got it first: choose again
        T("reserving", "release", "releasing", "boss_release"),
        T("reserved", "amount", "collecting"),
        T("reserved", "release", "releasing", "boss_release"),
        T("releasing", "cancel", "cancelled"),
        T("releasing", "refund", "refunding"),
        *cash_transitions(),
        T("collecting", "release", "releasing", "boss_release"),
        T("collecting", "paid", "moving", "sim_to_reader"),
        *sim_transitions("opening", "boss_open_number", "release", "releasing", "boss_release"),
        T("opening", "unknown", "capturing", "capture_sim"),
        *selfs("delivered", "payout", "print"),
        T("delivered", "finish", "done"),
    ),
)


async def _release(r: Run, phone: str) -> None:
    """Give the number back (journalled, keyed); a BOSS that does not answer lets the hold lapse."""
    boss = r.services.boss

    def settle(result) -> Settled:
        if isinstance(result, Exception):
            return Settled({"released": None, "error": str(result)})
        return Settled({"released": result.ok, "boss_ref": result.boss_ref})
    try:
        await r.effect("release", {"phone": phone, "key": f"{r.txn}:release"},
                       lambda: boss.release_number(phone, r.txn, f"{r.txn}:release"), settle)
    except BossError as exc:
        log.warning("%s: number release not confirmed (%s): the BOSS's hold lapses", r.txn, exc.code)


async def _choose_number(r: Run) -> str | None:
    """Search by last digits, pick, hold it at the BOSS. None: nothing suitable (declined)."""
    boss = r.services.boss
    for _ in range(5):
        suffix = await r.customer.choose("choose_number_suffix", SUFFIXES)
        try:
            numbers = await boss.list_numbers("" if suffix == "any" else suffix, r.config.numbers_shown)
        except BossError as exc:
            r.say(boss_problem_key(exc))
            return None
        if not numbers:
            r.say("no_numbers", suffix=suffix)
            continue
        phone = await r.customer.choose("choose_number", numbers)
        key = f"{r.txn}:reserve"

        def settle(result) -> Settled:
            if isinstance(result, Exception):
                return Settled({"reserved": False, "error": getattr(result, "code", str(result))})
            return Settled({"reserved": True, "boss_ref": result.boss_ref})
        try:
            await r.effect("reserve", {"phone": phone, "key": key},
                           lambda: boss.reserve_number(phone, r.txn, key), settle)
        except BossError as exc:
            if not (isinstance(exc, BossRefused) and exc.code == "number_taken"):
                await _release(r, phone)  # a hold nobody confirmed may stand: let it go
                raise
            await r.go("taken")
            r.say("number_taken", phone=phone)
            continue
        await r.go("reserved", phone=phone, data={"number": phone})
        return phone
    return None


async def run(r: Run) -> str:
    cfg, boss, hw = r.config, r.services.boss, r.services.hw
    r.say("welcome_new_number")
    try:
        st = await hw.sim_dispenser.status()
        if not st.known or st.empty or st.jammed:
            raise IdentityFailed("sims_sold_out", "no blank SIM")
        card = await identify(r, "identified")
    except IdentityFailed as exc:
        r.say(exc.key)
        return await r.finish("decline", exc.code or exc.key)
    except CustomerCancelled:
        return await r.finish("cancel")

    try:
        phone = await _choose_number(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    except BossError as exc:  # the hold could not be made (and was let go): nothing held, nothing paid
        r.say(boss_problem_key(exc))
        return await r.finish("cancel" if r.state == "releasing" else "decline", f"numbers: {exc}")
    if phone is None:
        return await r.finish("decline", "no number chosen")

    price = cfg.new_number_fen
    try:
        await r.customer.choose("confirm_new_number", ["confirm"], phone=phone, price=yuan(price))
    except CustomerCancelled:
        await _release(r, phone)
        r.say("number_released", phone=phone)
        return await r.finish("cancel")
    await r.go("amount", amount_fen=price)
    allow_over = cfg.max_change_fen if hw.hopper is not None else 0
    try:
        paid = await take_cash(r, price, allow_over)
    except (CustomerCancelled, CashStopped) as exc:
        await _release(r, phone)
        return await refund_after(r, exc)

    async def give_up(key: str, exc: BaseException) -> str:
        """Before the BOSS opened the number: card into the bin, number back, money back."""
        r.say(key)
        if not await sim_capture(r, "fail"):
            log.error("%s: the failed SIM could not be captured", r.txn)
        await _release(r, phone)
        return await refund_after(r, exc)

    r.say("writing_sim")
    try:
        await sim_move(r, "paid")
    except Exception as exc:  # noqa: BLE001 - jam, empty: no card to write
        return await give_up("sim_dispenser_fault", exc)
    try:
        iccid = await sim_write(r, "moved", phone)
    except Exception as exc:  # noqa: BLE001 - SimWriteFailed, the BOSS's card data, pcscd gone
        code = getattr(exc, "code", "")
        log.warning("%s: SIM write failed: %s", r.txn, code or exc)
        return await give_up({"no_card": "sim_no_card", "pcsc_gone": "sim_reader_fault"}.get(code, "sim_write_failed"), exc)

    key = f"{r.txn}:open"
    try:
        await boss_step(r, "written", {"phone": phone, "iccid": iccid, "fen": price, "key": key},
                        lambda: boss.open_number(phone, r.txn, iccid, card.text.id_number, card.text.name,
                                                 cfg.new_number_plan, key), applied_fen=price)
    except BossRefused as exc:
        return await give_up("boss_refused", exc)
    except BossError as exc:  # applied or not, nobody knows: the card is kept, a person decides
        await sim_capture(r, "unknown")
        r.say("boss_unknown_review", hotline=cfg.hotline)
        return await r.review("unknown", f"open_number {key}: {exc}")

    handed = await sim_hand_out(r, "applied")
    if not handed:
        r.say("sim_kept", txn=r.txn, hotline=cfg.hotline)
    change = paid - price
    if change > 0:
        await pay_back(r, change, "change", "overpayment")
    shown = (await r.journal.read(records.get_txn, r.txn))["data"]
    await print_receipt(r, Receipt(
        title=both("receipt_new_number_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), phone), (both("label_holder"), shown["name_masked"]),
               (both("label_id_number"), shown["id_masked"]), (both("label_iccid"), iccid),
               (both("label_plan"), cfg.new_number_plan), (both("label_paid"), money(paid)),
               (both("label_change"), money(change))],
        footer=both("receipt_new_number_footer", hotline=cfg.hotline)))
    r.say("new_number_done", phone=phone)
    if handed is None:
        return await sim_left(r)
    return await r.finish("finish")

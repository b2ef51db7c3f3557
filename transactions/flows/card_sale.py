"""充值卡销售 / Recharge-card sale: face value -> cash -> card to the gate -> taken -> receipt.

Needs no BOSS. The price counts as applied only when the customer takes the card; a card left at
the gate is captured into the reject bin and the money paid back. The serial printed on the
receipt is the running number of the loaded batch (counter ``card_serial``/face, set when staff
load a batch), since the dispenser cannot read the card.
"""
from __future__ import annotations

from typing import Any

from hal.peripherals import Receipt

from .. import records
from ..customer import CustomerCancelled
from ..effects import pay_back, print_receipt
from ..flow import FlowSpec, Run, Services, Settled, State, T
from ..intake import CashStopped, take_cash
from ..messages import both, money
from .common import CASH_STATES, FINALS, cash_transitions, refund_after, selfs

SPEC = FlowSpec(
    name="card_sale", title_zh="充值卡销售", title_en="Recharge card sale", needs_boss=False, takes_cash=True,
    states=(
        State("start", "the customer picks a face value (stock and dispenser checked)"),
        *CASH_STATES,
        # after the dispense outcome (at_gate) and before the state change the card waits at the gate
        State("dispensing", "dispense_card intent open: one card moving to the gate", recover="card_at_gate"),
        State("at_gate", "card at the gate, waiting for the customer to take it", recover="card_at_gate"),
        State("capturing", "capture_card intent open: card not taken, pulled into the reject bin"),
        State("delivered", "card taken, price applied: change, receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "face", "collecting"),
        T("start", "cancel", "cancelled"),
        T("start", "decline", "declined"),
        *cash_transitions(),
        T("collecting", "paid", "dispensing", "dispense_card"),
        T("dispensing", "at_gate", "at_gate"),
        T("dispensing", "refund", "refunding"),
        T("at_gate", "taken", "delivered"),
        T("at_gate", "not_taken", "capturing", "capture_card"),
        T("capturing", "refund", "refunding"),
        *selfs("delivered", "payout", "print"),
        T("delivered", "finish", "done"),
    ),
)


class _GateUnknown(Exception):
    """A dispense failed and the dispenser cannot say where the card is."""


async def _gate(dispenser: Any) -> bool | None:
    """The gate sensor: True card at the gate, False gate clear, None the dispenser cannot say."""
    try:
        st = await dispenser.status()
    except Exception:
        return None
    return bool(st.card_at_gate) if st.known else None


async def ready(services: Services) -> bool:
    """For the menu: a card of some face value can be sold now (else the tile is greyed)."""
    return any([await _in_stock(services, face) for face in services.config.card_prices])


async def _in_stock(services: Services, face: int) -> bool:
    dispenser = services.hw.dispensers.get(face)
    if dispenser is None:
        return False
    stock = (await services.journal.read(records.counters, "card_stock")).get("card_stock", {}).get(str(face))
    if stock is not None and stock <= 0:
        return False
    try:
        status = await dispenser.status()
    except Exception:
        return False
    # a full reject bin could not take back a card left at the gate: no sale until it is emptied
    return status.known and not status.empty and not status.jammed and not getattr(dispenser, "bin_full", False)


async def run(r: Run) -> str:
    cfg = r.config
    r.say("welcome_card_sale")
    faces = [f for f in sorted(cfg.card_prices) if await _in_stock(r.services, f)]
    if not faces:
        r.say("cards_sold_out")
        return await r.finish("decline", "no card in stock")
    try:
        face = int(await r.customer.choose("choose_card", [str(f) for f in faces]))
    except CustomerCancelled:
        return await r.finish("cancel")
    price = cfg.card_prices[face]
    await r.go("face", amount_fen=price, data={"face_fen": face})
    allow_over = cfg.max_change_fen if r.services.hw.hopper is not None else 0
    try:
        paid = await take_cash(r, price, allow_over)
    except (CustomerCancelled, CashStopped) as exc:
        return await refund_after(r, exc)

    dispenser = r.services.hw.dispensers[face]
    serial_no = (await r.journal.read(records.counters, "card_serial")).get("card_serial", {}).get(str(face), 0)
    serial = f"{face // 100:04d}{serial_no:08d}"

    async def dispense() -> None:
        try:
            await dispenser.dispense_to_gate()
        except Exception as exc:  # the gate sensor decides what the failure means, not the error
            if getattr(exc, "code", "") == "card_at_gate":
                raise  # an earlier card blocks the gate: this one never moved
            gate = await _gate(dispenser)
            if gate is True:
                return  # the card reached the gate all the same (a reply lost on the link)
            if gate is None:
                raise _GateUnknown(str(exc)) from exc
            raise

    def settle_dispense(result: Any) -> Settled:
        if isinstance(result, _GateUnknown):  # nobody knows where the card is: the price waits for a person
            return Settled({"at_gate": None, "error": str(result)}, [("held", price, "card fate unknown")])
        if isinstance(result, Exception):
            return Settled({"at_gate": False, "error": getattr(result, "code", str(result))})
        return Settled({"at_gate": True, "serial": serial},
                       counts=[("card_stock", str(face), -1), ("card_serial", str(face), 1)])

    r.say("dispensing_card")
    try:
        await r.effect("paid", {"face_fen": face, "device": dispenser.name, "serial": serial},
                       dispense, settle_dispense)
    except Exception as exc:
        return await refund_after(r, exc)
    await r.go("at_gate", data={"serial": serial})
    r.say("take_card")
    try:
        taken = await dispenser.wait_taken(cfg.take_timeout)
        if not taken:  # one last look: a card pulled as the time ran out is the customer's, not the bin's
            last = await dispenser.status()
            taken = last.known and not last.card_at_gate
    except Exception:
        taken = False
    if not taken:
        def settle_capture(result: Any) -> Settled:
            if isinstance(result, Exception):
                # The card may still be at the gate (or in a hand): refunding its price too would let
                # card and money both go to whoever stands there. The price is held for a person.
                return Settled({"captured": False, "error": str(result)}, [("held", price, "capture failed")])
            return Settled({"captured": True}, counts=[("card_reject", str(face), 1)])
        try:
            await r.effect("not_taken", {"face_fen": face, "device": dispenser.name}, dispenser.capture, settle_capture)
        except Exception as exc:  # the hold is journalled with the failure; the rest is paid back
            return await refund_after(r, RuntimeError(f"card not taken, capture failed: {exc}"))
        r.say("card_captured")
        return await refund_after(r, RuntimeError("card not taken"))

    await r.go("taken", money=[("applied", price, f"card:{serial}")])
    change = paid - price
    if change > 0:
        await pay_back(r, change, "change", "overpayment")
    await print_receipt(r, Receipt(
        title=both("receipt_card_title"),
        lines=[(both("label_txn"), r.txn), (both("label_face"), money(face)), (both("label_paid"), money(paid)),
               (both("label_change"), money(change)), (both("label_card_serial"), serial)],
        footer=both("receipt_card_footer", hotline=cfg.hotline)))
    r.say("thank_you")
    return await r.finish("finish")

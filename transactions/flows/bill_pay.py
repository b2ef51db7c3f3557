"""缴费 / Bill payment: the BOSS says what is due; every fen put in is paid (excess stays as balance)."""
from __future__ import annotations

from hal.peripherals import Receipt

from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import print_receipt, send_sms
from ..flow import FlowSpec, Run, State, T
from ..intake import CashStopped, take_cash
from ..messages import both, money, yuan
from .common import (CASH_STATES, FINALS, ask_phone, boss_problem_key, cash_transitions, keyed_boss_write,
                     mask_phone, refund_after, selfs)

SPEC = FlowSpec(
    name="bill_pay", title_zh="话费缴纳", title_en="Bill payment", needs_boss=True, takes_cash=True,
    states=(
        State("start", "asking for the phone number"),
        State("checking", "the BOSS looks up what is due (a read)"),
        State("confirming", "the customer sees the amount due and confirms"),
        *CASH_STATES,
        State("paying", "boss_pay_bill intent open: payment with key {txn}:pay"),
        State("paid", "payment applied: SMS, receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "checking"),
        T("start", "cancel", "cancelled"),
        T("checking", "due", "confirming"),
        T("checking", "decline", "declined"),
        T("confirming", "confirm", "collecting"),
        T("confirming", "cancel", "cancelled"),
        *cash_transitions(),
        T("collecting", "paid", "paying", "boss_pay_bill"),
        T("paying", "applied", "paid"),
        T("paying", "refund", "refunding"),
        T("paying", "unknown", "review"),
        *selfs("paid", "notify", "print"),
        T("paid", "finish", "done"),
    ),
)


async def run(r: Run) -> str:
    cfg, boss = r.config, r.services.boss
    r.say("welcome_bill_pay")
    try:
        phone = await ask_phone(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    await r.go("phone", phone=phone)
    try:
        bill = await boss.query_bill(phone)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", f"query_bill: {exc}")
    if bill.due_fen <= 0:
        r.say("nothing_due", phone=mask_phone(phone))
        return await r.finish("decline", "nothing due")
    due = -(-bill.due_fen // 10) * 10  # the smallest coin is 1 jiao: round up, the excess stays as balance
    await r.go("due", amount_fen=due, data={"due_fen": bill.due_fen})
    try:
        await r.customer.choose("confirm_bill", ["pay"], due=yuan(bill.due_fen), phone=mask_phone(phone))
    except CustomerCancelled:
        return await r.finish("cancel")
    await r.go("confirm")
    try:
        paid = await take_cash(r, due, cfg.max_change_fen)
    except (CustomerCancelled, CashStopped) as exc:
        return await refund_after(r, exc)
    key = f"{r.txn}:pay"
    try:
        result = await keyed_boss_write(r, "paid", {"phone": phone, "fen": paid, "key": key},
                                        lambda: boss.pay_bill(phone, paid, key), applied_fen=paid)
    except BossRefused as exc:
        return await refund_after(r, exc)
    except BossError as exc:
        r.say("boss_unknown_review", hotline=cfg.hotline)
        return await r.review("unknown", f"pay_bill {key}: {exc}")
    await r.go("applied", data={"boss_ref": result.boss_ref})
    r.say("bill_paid", amount=yuan(paid), phone=mask_phone(phone))
    await send_sms(r, phone, "sms_bill_paid", amount=yuan(paid), txn=r.txn)
    await print_receipt(r, Receipt(
        title=both("receipt_bill_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone)),
               (both("label_due"), money(bill.due_fen)), (both("label_paid"), money(paid)),
               (both("label_balance"), money(result.balance_fen)), (both("label_boss_ref"), result.boss_ref)],
        footer=both("receipt_footer", hotline=cfg.hotline)))
    r.say("thank_you")
    return await r.finish("finish")

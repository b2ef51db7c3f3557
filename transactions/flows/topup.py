"""空中充值 / Top-up with cash: number checked at the BOSS before any cash, credit by idempotency key.

Overpayment (coins cannot be refused) is paid back as change by the hopper, or credited to the
phone, as ``FlowConfig.overpay`` says. Anything after cash is in that stops the top-up pays back.
"""
from __future__ import annotations

from hal.peripherals import Receipt

from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import pay_back, print_receipt, send_sms
from ..flow import FlowSpec, Run, State, T
from ..intake import CashStopped, take_cash
from ..messages import both, money, yuan
from .common import (CASH_STATES, FINALS, ask_phone, boss_problem_key, cash_transitions, keyed_boss_write,
                     mask_phone, refund_after, selfs)

SPEC = FlowSpec(
    name="topup", title_zh="空中充值", title_en="Top-up", needs_boss=True, takes_cash=True,
    states=(
        State("start", "asking for the phone number"),
        State("checking", "the BOSS checks the number (a read: no intent)"),
        State("choosing", "the customer picks the amount"),
        *CASH_STATES,
        State("crediting", "boss_credit intent open: credit with key {txn}:credit"),
        State("credited", "credit applied: change, SMS, receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "checking"),
        T("start", "cancel", "cancelled"),
        T("checking", "number_ok", "choosing"),
        T("checking", "decline", "declined"),
        T("choosing", "amount", "collecting"),
        T("choosing", "cancel", "cancelled"),
        *cash_transitions(),
        T("collecting", "paid", "crediting", "boss_credit"),
        T("crediting", "credited", "credited"),
        T("crediting", "refund", "refunding"),
        T("crediting", "unknown", "review"),
        *selfs("credited", "payout", "notify", "print"),
        T("credited", "finish", "done"),
    ),
)


async def run(r: Run) -> str:
    cfg, boss = r.config, r.services.boss
    r.say("welcome_topup")
    try:
        phone = await ask_phone(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    await r.go("phone", phone=phone)
    try:
        info = await boss.check_number(phone)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", f"check_number: {exc}")
    if info.status == "closed":
        r.say("number_closed")
        return await r.finish("decline", "number closed")
    await r.go("number_ok", data={"holder": info.holder_masked})
    r.say("confirm_number", phone=mask_phone(phone), holder=info.holder_masked)
    try:
        amount = int(await r.customer.choose("choose_amount", [str(a) for a in cfg.topup_amounts]))
    except CustomerCancelled:
        return await r.finish("cancel")
    await r.go("amount", amount_fen=amount)

    hopper = r.services.hw.hopper
    allow_over = cfg.max_change_fen if (cfg.overpay == "change" and hopper is not None) else 0
    try:
        paid = await take_cash(r, amount, allow_over)
    except (CustomerCancelled, CashStopped) as exc:
        return await refund_after(r, exc)

    credit_fen = paid if cfg.overpay == "credit" else amount
    key = f"{r.txn}:credit"
    r.say("crediting", amount=yuan(credit_fen))
    try:
        result = await keyed_boss_write(r, "paid", {"phone": phone, "fen": credit_fen, "key": key},
                                        lambda: boss.credit(phone, credit_fen, key), applied_fen=credit_fen)
    except BossRefused as exc:
        return await refund_after(r, exc)
    except BossError as exc:  # timeout/unreachable after every attempt: applied or not, nobody knows
        r.say("boss_unknown_review", hotline=cfg.hotline)
        return await r.review("unknown", f"credit {key}: {exc}")

    await r.go("credited", data={"boss_ref": result.boss_ref, "balance_fen": result.balance_fen})
    r.say("topup_done", amount=yuan(credit_fen), phone=mask_phone(phone), balance=yuan(result.balance_fen))
    change = paid - credit_fen
    if change > 0:
        await pay_back(r, change, "change", "overpayment")
    await send_sms(r, phone, "sms_topup", amount=yuan(credit_fen), balance=yuan(result.balance_fen), txn=r.txn)
    await print_receipt(r, Receipt(
        title=both("receipt_topup_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone)),
               (both("label_paid"), money(paid)), (both("label_credited"), money(credit_fen)),
               (both("label_change"), money(change)), (both("label_balance"), money(result.balance_fen)),
               (both("label_boss_ref"), result.boss_ref)],
        footer=both("receipt_footer", hotline=cfg.hotline)))
    r.say("thank_you")
    return await r.finish("finish")

"""套餐变更 / Plan change: confirmed by an SMS code or the service password, applied by key. No cash."""
from __future__ import annotations

from hal.peripherals import Receipt

from ..boss import BossError, BossRefused, Plan
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, State, T
from ..messages import both, money, yuan
from .common import FINALS, ask_phone, boss_problem_key, keyed_boss_write, mask_phone, selfs
from .identify import NotVerified, verify

SPEC = FlowSpec(
    name="plan_change", title_zh="套餐变更", title_en="Plan change", needs_boss=True, takes_cash=False,
    states=(
        State("start", "asking for the phone number"),
        State("choosing", "plans listed; the customer picks one"),
        State("confirming", "confirmation by SMS code or service password"),
        State("changing", "boss_change_plan intent open: key {txn}:plan"),
        State("changed", "plan changed: receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "choosing"),
        T("start", "cancel", "cancelled"),
        T("start", "decline", "declined"),
        T("choosing", "plan", "confirming"),
        T("choosing", "cancel", "cancelled"),
        T("choosing", "decline", "declined"),
        T("confirming", "confirmed", "changing", "boss_change_plan"),
        T("confirming", "decline", "declined"),
        T("confirming", "cancel", "cancelled"),
        T("changing", "changed", "changed"),
        T("changing", "refused", "failed"),
        T("changing", "unknown", "review"),
        *selfs("changed", "print"),
        T("changed", "finish", "done"),
    ),
)


def plan_name(plan: Plan) -> dict[str, str]:
    """A plan as the customer reads it: the BOSS's names, per language (the code is for machines)."""
    return {"zh": plan.name_zh, "en": plan.name_en}


async def run(r: Run) -> str:
    boss = r.services.boss
    r.say("welcome_plan_change")
    try:
        phone = await ask_phone(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    try:
        plans = await boss.query_plans(phone)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", str(exc))
    await r.go("phone", phone=phone, data={"current": plans.current})
    options = [p.code for p in plans.available if p.code != plans.current]
    names = {p.code: plan_name(p) for p in plans.available}
    try:
        code = await r.customer.choose("choose_plan", options, current=names.get(plans.current, plans.current),
                                       labels=names)
        plan = next(p for p in plans.available if p.code == code)
        await r.go("plan", data={"plan": code})
        method = await r.customer.choose("choose_confirm_method", ["sms", "password"])
        await verify(r, phone, method)
    except CustomerCancelled:
        return await r.finish("cancel")
    except NotVerified as exc:
        r.say(exc.key)
        return await r.finish("decline", str(exc))
    key = f"{r.txn}:plan"
    try:
        await keyed_boss_write(r, "confirmed", {"phone": phone, "plan": code, "key": key},
                               lambda: boss.change_plan(phone, code, key))
    except BossRefused as exc:
        r.say("plan_change_refused")
        return await r.finish("refused", f"refused: {exc.code}")
    except BossError as exc:
        r.say("boss_unknown_review", hotline=r.config.hotline)
        return await r.review("unknown", f"change_plan {key}: {exc}")
    await r.go("changed")
    r.say("plan_changed", plan=plan_name(plan), fee=yuan(plan.monthly_fen))
    await print_receipt(r, Receipt(
        title=both("receipt_plan_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone)),
               (both("label_plan"), f"{plan.name_zh} / {plan.name_en}"), (both("label_fee"), money(plan.monthly_fen)),
               (both("label_effective"), both("next_month"))],
        footer=both("receipt_footer", hotline=r.config.hotline)))
    return await r.finish("finish")

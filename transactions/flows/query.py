"""查询 / Balance and plan query: no cash; shown on screen, printed on request."""
from __future__ import annotations

from hal.peripherals import Receipt

from ..boss import BossError
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, State, T
from ..messages import both, money, yuan
from .common import FINALS, boss_problem_key, mask_phone, selfs
from .identify import NotVerified, phone_and_password

SPEC = FlowSpec(
    name="balance_query", title_zh="余额及套餐查询", title_en="Balance and plan query", needs_boss=True,
    takes_cash=False,
    states=(
        State("start", "asking for the phone number"),
        State("verifying", "service password checked by the BOSS"),
        State("showing", "balance, arrears and plan on screen; receipt on request", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "verifying"),
        T("start", "cancel", "cancelled"),
        T("verifying", "ok", "showing"),
        T("verifying", "decline", "declined"),
        T("verifying", "cancel", "cancelled"),
        *selfs("showing", "print"),
        T("showing", "finish", "done"),
        T("showing", "fail", "failed"),
    ),
)


async def run(r: Run) -> str:
    boss = r.services.boss
    r.say("welcome_query")
    try:
        phone = await phone_and_password(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    except NotVerified as exc:
        r.say(exc.key)
        return await r.finish("decline", str(exc))
    try:
        balance = await boss.query_balance(phone)
        plans = await boss.query_plans(phone)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", str(exc))
    await r.go("ok")
    current = next((p for p in plans.available if p.code == plans.current), None)
    plan_name = current.name_zh if current else plans.current
    r.say("balance_info", phone=mask_phone(phone), balance=yuan(balance.balance_fen),
          arrears=yuan(balance.arrears_fen), plan={"zh": plan_name, "en": current.name_en if current else plans.current})
    try:
        choice = await r.customer.choose("print_or_done", ["print", "done"])
    except CustomerCancelled:
        choice = "done"
    if choice == "print":
        await print_receipt(r, Receipt(
            title=both("receipt_balance_title"),
            lines=[(both("label_phone"), mask_phone(phone)), (both("label_balance"), money(balance.balance_fen)),
                   (both("label_arrears"), money(balance.arrears_fen)), (both("label_plan"), plan_name)],
            footer=both("receipt_footer", hotline=r.config.hotline)))
    r.say("thank_you")
    return await r.finish("finish")

"""挂失 / Loss report: service password, then the BOSS suspends the number (by key). No cash."""
from __future__ import annotations

from hal.peripherals import Receipt

from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, State, T
from ..messages import both
from .common import FINALS, keyed_boss_write, mask_phone, selfs
from .identify import NotVerified, phone_and_password

SPEC = FlowSpec(
    name="loss_report", title_zh="挂失", title_en="Loss report", needs_boss=True, takes_cash=False,
    states=(
        State("start", "asking for the phone number"),
        State("verifying", "service password checked by the BOSS"),
        State("confirming", "the customer confirms the suspension"),
        State("suspending", "boss_suspend intent open: key {txn}:suspend"),
        State("suspended", "number suspended: receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "verifying"),
        T("start", "cancel", "cancelled"),
        T("verifying", "ok", "confirming"),
        T("verifying", "decline", "declined"),
        T("verifying", "cancel", "cancelled"),
        T("confirming", "confirm", "suspending", "boss_suspend"),
        T("confirming", "cancel", "cancelled"),
        T("suspending", "suspended", "suspended"),
        T("suspending", "refused", "failed"),
        T("suspending", "unknown", "review"),
        *selfs("suspended", "print"),
        T("suspended", "finish", "done"),
    ),
)


async def run(r: Run) -> str:
    boss = r.services.boss
    r.say("welcome_loss_report")
    try:
        phone = await phone_and_password(r)
        await r.go("ok")
        await r.customer.choose("confirm_suspend", ["confirm"], phone=mask_phone(phone))
    except CustomerCancelled:
        return await r.finish("cancel")
    except NotVerified as exc:
        r.say(exc.key)
        return await r.finish("decline", str(exc))
    key = f"{r.txn}:suspend"
    try:
        await keyed_boss_write(r, "confirm", {"phone": phone, "key": key}, lambda: boss.suspend_number(phone, key))
    except BossRefused as exc:
        r.say("suspend_refused")
        return await r.finish("refused", f"refused: {exc.code}")
    except BossError as exc:
        r.say("boss_unknown_review", hotline=r.config.hotline)
        return await r.review("unknown", f"suspend {key}: {exc}")
    await r.go("suspended")
    r.say("number_suspended", phone=mask_phone(phone))
    await print_receipt(r, Receipt(
        title=both("receipt_loss_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone)),
               (both("label_status"), both("status_suspended"))],
        footer=both("receipt_loss_footer", hotline=r.config.hotline)))
    return await r.finish("finish")

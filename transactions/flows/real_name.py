"""实名登记 / Real-name registration of an existing number: phone -> ID card and photo -> the BOSS
registers the card's holder on the number (key ``{txn}:register``; the name must be the account
holder's) -> receipt. No cash, no SIM."""
from __future__ import annotations

from hal.peripherals import Receipt

from .. import records
from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, State, T
from ..messages import both
from .common import FINALS, ask_phone, boss_problem_key, keyed_boss_write, mask_phone, selfs
from .identity import IdentityFailed, identify

SPEC = FlowSpec(
    name="real_name", title_zh="实名登记", title_en="Real-name registration", needs_boss=True, takes_cash=False,
    needs=("id_reader", "camera"),
    states=(
        State("start", "asking for the phone number"),
        State("checking", "the BOSS checks the number (a read)"),
        State("identified", "ID card read and valid, photo taken: both sealed in the record"),
        State("registering", "boss_register intent open: key {txn}:register"),
        State("registered", "registered: receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "checking"),
        T("start", "cancel", "cancelled"),
        T("checking", "identified", "identified"),
        T("checking", "decline", "declined"),
        T("checking", "cancel", "cancelled"),
        T("identified", "confirm", "registering", "boss_register"),
        T("identified", "cancel", "cancelled"),
        T("registering", "registered", "registered"),
        T("registering", "refused", "failed"),
        T("registering", "unknown", "review"),
        *selfs("registered", "print"),
        T("registered", "finish", "done"),
    ),
)


async def run(r: Run) -> str:
    boss = r.services.boss
    r.say("welcome_real_name")
    try:
        phone = await ask_phone(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    await r.go("phone", phone=phone)
    try:
        info = await boss.check_number(phone)
        if info.status == "closed":
            raise IdentityFailed("number_closed")
        card = await identify(r, "identified")
        await r.customer.choose("confirm_real_name", ["confirm"], phone=mask_phone(phone))
    except IdentityFailed as exc:
        r.say(exc.key)
        return await r.finish("decline", exc.code or exc.key)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", f"boss: {exc}")
    except CustomerCancelled:
        return await r.finish("cancel")
    key = f"{r.txn}:register"
    try:
        await keyed_boss_write(r, "confirm", {"phone": phone, "key": key},
                               lambda: boss.register_real_name(phone, card.text.id_number, card.text.name, key))
    except BossRefused as exc:
        r.say("name_mismatch" if exc.code == "name_mismatch" else "boss_refused")
        return await r.finish("refused", f"refused: {exc.code}")
    except BossError as exc:
        r.say("boss_unknown_review", hotline=r.config.hotline)
        return await r.review("unknown", f"register {key}: {exc}")
    await r.go("registered")
    shown = (await r.journal.read(records.get_txn, r.txn))["data"]
    r.say("real_name_done", phone=mask_phone(phone), name=shown["name_masked"])
    await print_receipt(r, Receipt(
        title=both("receipt_real_name_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone)),
               (both("label_holder"), shown["name_masked"]), (both("label_id_number"), shown["id_masked"]),
               (both("label_status"), both("status_registered"))],
        footer=both("receipt_footer", hotline=r.config.hotline)))
    return await r.finish("finish")

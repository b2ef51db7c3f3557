"""挂失 / Loss report: the phone number, then who is asking — the holder's ID card (read, photographed,
sealed; the BOSS says it is the number's registered owner) or the service password — then the BOSS
suspends the number (by key). No cash.

Why the ID card first where the kiosk has a reader: a customer whose phone was stolen often does not
remember the service password, and the ID card is what the counter would ask for. The password
stays for kiosks without an ID reader, a camera or the hall's key. The ID number goes to the BOSS's owner check
from memory; the suspension itself needs only the phone number and the key, so recovery may repeat
it with the same key (its intent holds no personal data).
"""
from __future__ import annotations

from hal.peripherals import Receipt

from .. import records
from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, State, T
from ..messages import both
from .common import FINALS, ask_phone, boss_problem_key, keyed_boss_write, mask_phone, selfs
from .identify import NotVerified, verify
from .identity import IdentityFailed, identify

SPEC = FlowSpec(
    name="loss_report", title_zh="挂失", title_en="Loss report", needs_boss=True, takes_cash=False,
    states=(
        State("start", "asking for the phone number"),
        State("choosing", "the number is known to the BOSS: ID card or service password"),
        State("verifying", "service password checked by the BOSS"),
        State("identified", "ID card read and valid, photo taken: both sealed; the BOSS checks the owner"),
        State("confirming", "the customer confirms the suspension"),
        State("suspending", "boss_suspend intent open: key {txn}:suspend"),
        State("suspended", "number suspended: receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "choosing"),
        T("start", "cancel", "cancelled"),
        T("start", "decline", "declined"),
        T("choosing", "password", "verifying"),
        T("choosing", "identified", "identified"),
        T("choosing", "decline", "declined"),
        T("choosing", "cancel", "cancelled"),
        T("verifying", "ok", "confirming"),
        T("verifying", "decline", "declined"),
        T("verifying", "cancel", "cancelled"),
        T("identified", "owner", "confirming"),
        T("identified", "decline", "declined"),
        T("identified", "cancel", "cancelled"),
        T("confirming", "confirm", "suspending", "boss_suspend"),
        T("confirming", "cancel", "cancelled"),
        T("suspending", "suspended", "suspended"),
        T("suspending", "refused", "failed"),
        T("suspending", "unknown", "review"),
        *selfs("suspended", "print"),
        T("suspended", "finish", "done"),
    ),
)


async def _by_id_card(r: Run, phone: str) -> None:
    """The holder's ID card and photo, sealed in the 'identified' commit; the BOSS checks the owner."""
    card = await identify(r, "identified")
    if not await r.services.boss.owner_check(phone, card.text.id_number):
        raise IdentityFailed("not_owner")
    await r.go("owner")


async def run(r: Run) -> str:
    boss, hw = r.services.boss, r.services.hw
    r.say("welcome_loss_report")
    try:
        phone = await ask_phone(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    try:
        info = await boss.check_number(phone)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", f"boss: {exc}")
    if info.status == "closed":
        r.say("number_closed")
        return await r.finish("decline", "number closed")
    await r.go("phone", phone=phone)
    by_card = hw.id_reader is not None and hw.camera is not None and bool(r.config.hall_public_key)
    try:
        method = "password"
        if by_card:
            method = await r.customer.choose("choose_identify_method", ["id_card", "password"])
        if method == "id_card":
            await _by_id_card(r, phone)
        else:
            await r.go("password")
            await verify(r, phone, "password")
            await r.go("ok")
        await r.customer.choose("confirm_suspend", ["confirm"], phone=mask_phone(phone))
    except CustomerCancelled:
        return await r.finish("cancel")
    except NotVerified as exc:
        r.say(exc.key)
        return await r.finish("decline", str(exc))
    except IdentityFailed as exc:
        r.say(exc.key)
        return await r.finish("decline", exc.code or exc.key)
    except BossError as exc:  # the owner check could not be made
        r.say(boss_problem_key(exc))
        return await r.finish("decline", f"boss: {exc}")
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
    lines = [(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone))]
    shown = (await r.journal.read(records.get_txn, r.txn))["data"]
    if "id_masked" in shown:  # by ID card: who asked, masked as on the other real-name receipts
        lines += [(both("label_holder"), shown["name_masked"]), (both("label_id_number"), shown["id_masked"])]
    await print_receipt(r, Receipt(
        title=both("receipt_loss_title"),
        lines=[*lines, (both("label_status"), both("status_suspended"))],
        footer=both("receipt_loss_footer", hotline=r.config.hotline)))
    return await r.finish("finish")

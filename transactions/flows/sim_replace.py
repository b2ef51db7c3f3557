"""补换SIM卡 / SIM replacement: phone -> the holder's ID card and photo (must be the owner at the BOSS)
-> a blank SIM written for the number -> the BOSS moves the number to it (the old card stops
working) -> SIM to the gate -> receipt. No cash: the operator charges replacements at the counter.

The BOSS's ``replace_sim`` (key ``{txn}:replace``) is the point of no return: before it, any
failure captures the new card and the old one keeps working; after it the number lives on the
new card, handed out, or kept for the counter when the customer does not take it.
"""
from __future__ import annotations

import logging

from hal.peripherals import Receipt

from .. import records
from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, State, T
from ..messages import both
from .common import FINALS, ask_phone, boss_problem_key, mask_phone, selfs
from .identity import (IdentityFailed, boss_step, identify, sim_capture, sim_hand_out, sim_left, sim_move, sim_states,
                       sim_transitions, sim_write)

log = logging.getLogger("kioskd.flows")

SPEC = FlowSpec(
    name="sim_replace", title_zh="补换SIM卡", title_en="SIM replacement", needs_boss=True, takes_cash=False,
    needs=("id_reader", "camera", "sim_writer", "sim_dispenser"),
    states=(
        State("start", "asking for the phone number"),
        State("checking", "the BOSS checks the number (a read)"),
        State("identified", "ID card read and valid, photo taken, both sealed; the BOSS says it is the owner"),
        *sim_states("replacing", "boss_replace_sim intent open: the number moves to the new card (key {txn}:replace)"),
        State("delivered", "the number is on the new card: receipt", recover="delivered"),
        *FINALS,
    ),
    transitions=(
        T("start", "phone", "checking"),
        T("start", "cancel", "cancelled"),
        T("checking", "identified", "identified"),
        T("checking", "decline", "declined"),
        T("checking", "cancel", "cancelled"),
        T("identified", "confirm", "moving", "sim_to_reader"),
        T("identified", "decline", "declined"),
        T("identified", "cancel", "cancelled"),
        *sim_transitions("replacing", "boss_replace_sim", "fail", "failed", None),
        T("replacing", "unknown", "capturing", "capture_sim"),
        *selfs("delivered", "print"),
        T("delivered", "finish", "done"),
    ),
)


async def run(r: Run) -> str:
    cfg, boss, hw = r.config, r.services.boss, r.services.hw
    r.say("welcome_sim_replace")
    try:
        phone = await ask_phone(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    await r.go("phone", phone=phone)
    try:
        info = await boss.check_number(phone)
        if info.status == "closed":
            raise IdentityFailed("number_closed")
        st = await hw.sim_dispenser.status()
        if not st.known or st.empty or st.jammed:
            raise IdentityFailed("sims_sold_out", "no blank SIM")
        card = await identify(r, "identified")
        if not await boss.owner_check(phone, card.text.id_number):
            raise IdentityFailed("not_owner")
        await r.customer.choose("confirm_sim_replace", ["confirm"], phone=mask_phone(phone))
    except IdentityFailed as exc:
        r.say(exc.key)
        return await r.finish("decline", exc.code or exc.key)
    except BossError as exc:
        r.say(boss_problem_key(exc))
        return await r.finish("decline", f"boss: {exc}")
    except CustomerCancelled:
        return await r.finish("cancel")

    async def give_up(key: str, why: str) -> str:
        r.say(key)
        await sim_capture(r, "fail")
        return await r.finish("fail", why)

    r.say("writing_sim")
    try:
        await sim_move(r, "confirm")
    except Exception as exc:  # noqa: BLE001
        return await give_up("sim_dispenser_fault", f"move: {exc}")
    try:
        iccid = await sim_write(r, "moved", phone)
    except Exception as exc:  # noqa: BLE001
        code = getattr(exc, "code", "")
        log.warning("%s: SIM write failed: %s", r.txn, code or exc)
        return await give_up({"no_card": "sim_no_card", "pcsc_gone": "sim_reader_fault"}.get(code, "sim_write_failed"),
                             f"write: {code or exc}")
    key = f"{r.txn}:replace"
    try:
        result = await boss_step(r, "written", {"phone": phone, "iccid": iccid, "key": key},
                                 lambda: boss.replace_sim(phone, iccid, card.text.id_number, key))
    except BossRefused as exc:
        return await give_up("boss_refused", f"replace_sim: {exc.code}")
    except BossError as exc:
        await sim_capture(r, "unknown")
        r.say("boss_unknown_review", hotline=cfg.hotline)
        return await r.review("unknown", f"replace_sim {key}: {exc}")
    handed = await sim_hand_out(r, "applied")
    if not handed:
        r.say("sim_kept", txn=r.txn, hotline=cfg.hotline)
    shown = (await r.journal.read(records.get_txn, r.txn))["data"]
    r.say("sim_replaced", phone=mask_phone(phone))
    await print_receipt(r, Receipt(
        title=both("receipt_sim_replace_title"),
        lines=[(both("label_txn"), r.txn), (both("label_phone"), mask_phone(phone)),
               (both("label_holder"), shown["name_masked"]), (both("label_id_number"), shown["id_masked"]),
               (both("label_iccid"), iccid), (both("label_old_sim"), both("status_invalidated")),
               (both("label_boss_ref"), result.boss_ref)],
        footer=both("receipt_footer", hotline=cfg.hotline)))
    if handed is None:
        return await sim_left(r)
    return await r.finish("finish")

"""What the real-name flows share: the ID card and the customer's photo, sealed; a blank SIM's way
from the stack through the PC/SC reader to the gate; and what recovery does with both.

Why sealed at once: the card's text and both photos are sealed to the hall's key (transactions/
pii.py) in the commit that records the identification, and only masks (张*, 110105********002X)
go to the screen, receipts and logs. The ID number and name travel to the BOSS from memory, never
from the journal, so recovery never repeats a BOSS write that needs them: "not found" by key means
"not done", and the customer (gone after a power cut) is refunded.

Why a SIM in the machine is always captured at recovery: a written card sitting at the reader or
the gate after a reboot belongs to nobody standing there. Whether the customer got the service is
the BOSS's word (the open/replace step applied), not where the plastic is: a number opened on a
captured card is collected at the counter with the receipt or the transaction id.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Awaitable, TypeVar

from .. import pii, records
from ..boss import BossError, BossRefused
from ..customer import CustomerCancelled
from ..flow import Run, Services, Settled, State, T, Transition
from ..journal import boundary

log = logging.getLogger("kioskd.flows")
R = TypeVar("R")

DELIVERED, NOT_DELIVERED, UNKNOWN = "delivered", "not_delivered", "unknown"

# what the customer reads for each reason the reader gives (IdReadFailed.code)
ID_PROBLEM = {
    "bad_check_digit": "id_invalid", "bad_id_number": "id_invalid", "bad_dates": "id_invalid",
    "not_yet_valid": "id_invalid", "expired": "id_expired", "no_card": "id_no_card",
    "read_failed": "id_read_failed",
}
SIM_PROBLEM = {"no_card": "sim_no_card", "pcsc_gone": "sim_reader_fault"}  # else: sim_write_failed

# A SIM between the stack and the customer's hand; every state's recovery rule captures it.
SIM_RULE = "sim_in_machine"


class IdentityFailed(Exception):
    """The flow cannot go on: ``key`` is the customer's message, ``code`` the device's reason."""

    def __init__(self, key: str, code: str = "") -> None:
        super().__init__(f"{key}: {code}" if code else key)
        self.key, self.code = key, code


def sim_states(boss_state: str, boss_doc: str) -> tuple[State, ...]:
    return (
        State("moving", "sim_to_reader intent open: a blank SIM moving to the IC contacts", recover=SIM_RULE),
        State("writing", "write_sim intent open: IMSI, keys and files written, read back", recover=SIM_RULE),
        State(boss_state, boss_doc, recover=SIM_RULE),
        State("handing_out", "dispense_sim intent open: the written SIM moving to the gate", recover=SIM_RULE),
        State("at_gate", "the SIM at the gate, waiting for the customer to take it", recover=SIM_RULE),
        State("keeping", "capture_sim intent open: delivered, but the card is kept for the counter",
              recover=SIM_RULE),
        State("capturing", "capture_sim intent open: the SIM failed or was not wanted, pulled into the bin",
              recover=SIM_RULE),
    )


def sim_transitions(boss_state: str, boss_effect: str, after_capture: str, after_capture_dst: str,
                    after_capture_effect: str | None) -> tuple[Transition, ...]:
    """From ``moving`` to ``delivered``; any failure before the BOSS applied goes to ``capturing``."""
    return (
        T("moving", "moved", "writing", "write_sim"),
        T("moving", "fail", "capturing", "capture_sim"),
        T("writing", "written", boss_state, boss_effect),
        T("writing", "fail", "capturing", "capture_sim"),
        T(boss_state, "applied", "handing_out", "dispense_sim"),
        T(boss_state, "fail", "capturing", "capture_sim"),
        T("handing_out", "at_gate", "at_gate"),
        T("handing_out", "not_out", "keeping", "capture_sim"),
        T("at_gate", "taken", "delivered"),
        T("at_gate", "not_taken", "keeping", "capture_sim"),
        T("keeping", "kept", "delivered"),
        T("delivered", "left", "review"),  # the SIM could not be captured: a person must find it
        T("capturing", "unknown", "review"),
        T("capturing", after_capture, after_capture_dst, after_capture_effect),
    )


# -- the customer's identity ---------------------------------------------------------------------

async def until_cancel(r: Run, aw: Awaitable[R]) -> R:
    """``aw``, unless the customer presses cancel first (no question is on the screen meanwhile)."""
    task = asyncio.ensure_future(aw)
    cancel = asyncio.ensure_future(r.customer.cancelled.wait())
    try:
        await asyncio.wait({task, cancel}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancel.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise CustomerCancelled("while waiting for a device")
    return task.result()


async def read_id(r: Run, attempts: int = 3) -> Any:
    """The customer's valid ID card (hal.idcard.IdCard), or IdentityFailed / CustomerCancelled."""
    from hal.idcard import IdReadFailed

    reader = r.services.hw.id_reader
    today = dt.date.fromtimestamp(r.services.clock())
    for attempt in range(attempts):
        r.say("place_id_card" if attempt == 0 else "id_read_again")
        try:
            return await until_cancel(r, reader.read_card(r.config.id_timeout, today))
        except IdReadFailed as exc:  # the detail names the card only masked (hal/idcard/sam.py)
            log.info("%s: ID card not accepted: %s", r.txn, exc.code)
            if exc.code == "read_failed" and attempt + 1 < attempts:
                continue
            raise IdentityFailed(ID_PROBLEM.get(exc.code, "id_reader_fault"), exc.code) from None
    raise IdentityFailed("id_read_failed", "read_failed")


async def take_photo(r: Run, attempts: int = 3) -> bytes:
    """A JPEG of the customer with a face in it (or unchecked where no detector is installed)."""
    from hal.camera import CameraFailed

    camera = r.services.hw.camera
    for attempt in range(attempts):
        r.say("look_at_camera")
        try:
            photo = await until_cancel(r, camera.capture())
        except CameraFailed as exc:
            raise IdentityFailed("camera_fault", exc.code) from None
        if photo.face is not False:
            return photo.jpeg
        r.say("no_face")
    raise IdentityFailed("no_face_final", "no face")


async def identify(r: Run, event: str) -> Any:
    """Read the card, take the photo, and journal them sealed with the transition ``event``."""
    card = await read_id(r)
    jpeg = await take_photo(r)
    shown = pii.masked(card)
    blob = pii.seal(r.config.hall_public_key, pii.id_record(card, jpeg))
    await r.go(event, data={"pii": blob, "id_masked": shown["id_number"], "name_masked": shown["name"]})
    r.say("id_accepted", name=shown["name"], id=shown["id_number"])
    return card


# -- the SIM's way out ---------------------------------------------------------------------------

def _code(exc: BaseException) -> str:
    return getattr(exc, "code", "") or type(exc).__name__


async def sim_move(r: Run, event: str) -> None:
    d = r.services.hw.sim_dispenser

    def settle(result: Any) -> Settled:
        if isinstance(result, Exception):
            return Settled({"moved": False, "error": _code(result)})
        return Settled({"moved": True}, counts=[("sim_stock", d.name, -1)])
    await r.effect(event, {"device": d.name}, d.move_to_read_position, settle)


async def sim_write(r: Run, event: str, phone: str) -> str:
    """Read the blank card's ICCID, ask the BOSS for its data, write it; returns the ICCID."""
    from hal.simcard import SimProfile

    writer, boss = r.services.hw.sim_writer, r.services.boss

    async def write() -> str:
        iccid = await writer.read_iccid()
        data = await boss.sim_card_data(phone, iccid)
        profile = SimProfile(imsi=data["imsi"], ki=data["ki"], opc=data["opc"], spn=data.get("spn", "KIOSK"))
        return await writer.write(profile, data["adm"])

    def settle(result: Any) -> Settled:
        if isinstance(result, Exception):
            return Settled({"written": False, "error": _code(result), "partly": bool(getattr(result, "written", False))})
        return Settled({"written": True, "iccid": result})
    return await r.effect(event, {"phone": phone, "device": writer.name}, write, settle)


async def sim_capture(r: Run, event: str) -> bool:
    """Pull the SIM in the channel into the bin; False if the dispenser could not."""
    d = r.services.hw.sim_dispenser

    def settle(result: Any) -> Settled:
        if isinstance(result, Exception):
            return Settled({"captured": False, "error": _code(result)})
        return Settled({"captured": True}, counts=[("sim_reject", d.name, 1)])
    try:
        await r.effect(event, {"device": d.name}, d.capture, settle)
        return True
    except Exception:  # noqa: BLE001 - journalled; the card stays for the technician
        return False


async def sim_hand_out(r: Run, event: str) -> bool | None:
    """The written SIM to the gate and into the customer's hand; False if it had to be kept, None
    if it could not even be captured: the card (the number live on it) may sit at the gate for
    whoever comes next, so the flow ends in review (sim_left) once change and receipt are done."""
    d = r.services.hw.sim_dispenser

    def settle(result: Any) -> Settled:
        if isinstance(result, Exception):
            return Settled({"at_gate": False, "error": _code(result)})
        return Settled({"at_gate": True})
    r.say("dispensing_sim")
    try:
        await r.effect(event, {"device": d.name}, d.dispense_to_gate, settle)
    except Exception:  # noqa: BLE001 - a jam: the card stays inside, kept for the counter
        captured = await sim_capture(r, "not_out")
        await r.go("kept")
        return False if captured else None
    await r.go("at_gate")
    r.say("take_sim")
    try:
        taken = await d.wait_taken(r.config.take_timeout)
    except Exception:  # noqa: BLE001
        taken = False
    if taken:
        await r.go("taken")
        return True
    captured = await sim_capture(r, "not_taken")
    await r.go("kept")
    return False if captured else None


async def sim_left(r: Run) -> str:
    """Finish for review: the SIM was not taken and not captured (sim_hand_out gave None)."""
    log.error("%s: the SIM could not be captured: it may be at the gate", r.txn)
    return await r.review("left", "SIM not taken and not captured: it may be at the gate or in the channel")


async def boss_step(r: Run, event: str, args: dict, call: Any, applied_fen: int = 0) -> Any:
    """A keyed BOSS write whose parameters include personal data: only ``args`` (no ID number,
    no name) is journalled. Repeated with the same key on timeout, like common.keyed_boss_write."""
    from .common import keyed_boss_write

    return await keyed_boss_write(r, event, args, call, applied_fen)


# -- recovery ------------------------------------------------------------------------------------

async def _keyed_status(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    """A BOSS write needing the ID card: asked by key, never repeated (the card is not on disk)."""
    a = step["args"]
    fen = a.get("fen", 0)
    if s.boss is None:
        return Settled({"applied": None, "resolution": "no BOSS"}, [("held", fen, "boss unknown")] if fen else []), UNKNOWN
    try:
        status = await s.boss.credit_status(a["key"])
    except BossError as exc:
        return Settled({"applied": None, "error": str(exc)}, [("held", fen, "boss unknown")] if fen else []), UNKNOWN
    if status.found:
        ref = status.result.get("boss_ref", "")
        return (Settled({"applied": True, "boss_ref": ref, "from": "op_status"},
                        [("applied", fen, f"boss:{ref}")] if fen else []), DELIVERED)
    return Settled({"applied": False, "resolution": "not found at the BOSS: not repeated"}), NOT_DELIVERED


async def _left_to_rule(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    return Settled({"resolution": "the state rule decides (card captured, number released)"}), None


RESOLVERS = {
    "boss_reserve": _left_to_rule, "boss_release": _left_to_rule, "sim_to_reader": _left_to_rule,
    "write_sim": _left_to_rule, "dispense_sim": _left_to_rule, "capture_sim": _left_to_rule,
    "boss_open_number": _keyed_status, "boss_replace_sim": _keyed_status, "boss_register": _keyed_status,
}
BOSS_KINDS = ("boss_open_number", "boss_replace_sim", "boss_register")


async def _journalled(s: Services, txn: str, kind: str, args: dict, state: str, action: Any,
                      settle: Any) -> Any:
    step = await s.journal.write(records.open_intent, txn, kind, {**args, "by": "recovery"}, s.clock(), state)
    boundary(f"recovery:{kind}:intent")
    try:
        result: Any = await action()
    except Exception as exc:  # noqa: BLE001
        result = exc
    settled = settle(result)
    await s.journal.write(lambda c: records.close_intent(c, step, settled.outcome, s.clock(), money=settled.money,
                                                         counts=settled.counts, resolved_by="recovery"))
    boundary(f"recovery:{kind}:resolved")
    return result


async def recover_identity(s: Services, txn_id: str, rule: str) -> list[str]:
    """After the open steps are resolved: capture a SIM left in the machine, release a number held
    for a customer who is gone, and say whether the BOSS delivered the service."""
    txn = await s.journal.read(records.get_txn, txn_id)
    steps = txn["steps"]
    boss = [st for st in steps if st["kind"] in BOSS_KINDS and st["closed_at"] is not None]
    delivered = any((st["outcome"] or {}).get("applied") is True for st in boss)
    unknown = any((st["outcome"] or {}).get("applied") is None for st in boss)
    verdicts = [DELIVERED if delivered else UNKNOWN if unknown else NOT_DELIVERED]
    d = s.hw.sim_dispenser
    if rule == SIM_RULE and d is not None:
        try:
            st = await d.status()
        except Exception:  # noqa: BLE001
            st = None
        if st is None or not st.known:
            verdicts.append(UNKNOWN)  # a card may be inside: a person looks
        elif st.card_in_read_position or st.card_at_gate:
            def settle(result: Any) -> Settled:
                if isinstance(result, Exception):
                    return Settled({"captured": False, "error": _code(result)})
                return Settled({"captured": True}, counts=[("sim_reject", d.name, 1)])
            if isinstance(await _journalled(s, txn_id, "capture_sim", {"device": d.name}, "capturing",
                                            d.capture, settle), Exception):
                verdicts.append(UNKNOWN)
    reserved = [st for st in steps if st["kind"] == "boss_reserve"]
    released = any(st["kind"] == "boss_release" and (st["outcome"] or {}).get("released") is not None
                   for st in steps)
    if reserved and not delivered and not unknown and not released and s.boss is not None:
        phone = reserved[-1]["args"]["phone"]

        async def release() -> Any:
            return await s.boss.release_number(phone, txn_id, f"{txn_id}:release")

        def settled(result: Any) -> Settled:
            if isinstance(result, Exception):  # the hold lapses by itself (10 min)
                return Settled({"released": None, "error": str(result)})
            return Settled({"released": result.ok, "boss_ref": result.boss_ref})
        await _journalled(s, txn_id, "boss_release", {"phone": phone, "key": f"{txn_id}:release"},
                          txn["flow_state"], release, settled)
    return verdicts


__all__ = ["IdentityFailed", "identify", "read_id", "take_photo", "sim_move", "sim_write", "sim_capture",
           "sim_hand_out", "sim_left", "boss_step", "recover_identity", "RESOLVERS", "BOSS_KINDS", "SIM_RULE",
           "sim_states", "sim_transitions", "until_cancel", "BossRefused"]


async def sim_ready(services: Services) -> bool:
    """For the menu: a blank SIM can be moved to the writer now (new number, replacement)."""
    d = services.hw.sim_dispenser
    if d is None:
        return False
    try:
        st = await d.status()
    except Exception:  # noqa: BLE001 - a dispenser that cannot say is one that cannot give
        return False
    return st.known and not st.empty and not st.jammed

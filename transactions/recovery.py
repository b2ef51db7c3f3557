"""Recovery at boot: every transaction left open by a crash or power cut is resolved and finished.

Run it once after the journal opens and the devices started, before the first customer. For each
open transaction (oldest first):

1. each open intent is resolved by its effect kind (``flow.EFFECTS`` says how): ask the device,
   ask the BOSS by idempotency key, or — when nobody can know — hold the money for review;
2. the flow state's own rule (``State.recover`` in the flow's table) runs: "delivered" states
   count the service as given, "card_at_gate" asks the dispenser whether the card was taken;
3. whatever cash is still outstanding goes on a refund voucher (the customer may be long gone:
   no coins are thrown into an empty tray);
4. the transaction finishes: review if anything is held or unknown, else done if the service
   was delivered, refunded if cash came in, cancelled/failed otherwise.
Nothing is guessed silently: each resolution is journalled with ``resolved_by = "recovery"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import records
from .boss import BossError, BossRefused
from .flow import Services, Settled
from .flows import SPECS, identity
from .journal import boundary

DELIVERED, NOT_DELIVERED, UNKNOWN = "delivered", "not_delivered", "unknown"


@dataclass
class Recovered:
    txn: str
    service: str
    flow_state: str
    steps: list[dict] = field(default_factory=list)  # {"step", "kind", "outcome", "verdict"}
    final: str = ""
    vouchers: list[str] = field(default_factory=list)


async def _stack_bill(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    a = step["args"]
    fen, device = a["fen"], a.get("device", "")
    acceptor = next((x for x in s.hw.acceptors if x.name == device), None)
    fate = None
    try:  # the validator's event buffer outlives kioskd: ask it what became of the bill
        if acceptor is not None and hasattr(acceptor, "escrow_fate"):
            fate = await acceptor.escrow_fate(a.get("counter"))
        if fate == "in_escrow":  # still waiting: it goes back to the bezel, as at an escrow timeout
            await acceptor.return_bill()
            fate = "returned"
    except Exception:
        fate = None
    if fate == "stacked":
        return Settled({"stacked": True, "fen": fen, "from": "event buffer"}, [("cash_in", fen, f"bill:{device}")],
                       [("cashbox", f"bill:{fen}", 1)]), None
    if fate == "returned":
        return Settled({"stacked": False, "fen": fen, "from": "event buffer"}), None
    return Settled({"unknown": True, "resolution": "held for review"},
                   [("cash_in", fen, f"bill?:{step['args'].get('device', '')}"), ("held", fen, "stack cut")]), UNKNOWN


async def _payout(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    a = step["args"]
    hopper = s.hw.hopper
    last = None
    try:
        if hopper is not None and a.get("counter") is not None and hasattr(hopper, "payout_since"):
            # the intent carries the hopper's event counter: its answer is about THIS payout or none
            last = await hopper.payout_since(a["counter"], a["count"])
        # Without the counter nothing tells this payout from the previous one of the same count
        # (last_payout would hand a payout cut before it started the last customer's coins): held.
    except Exception:
        last = None
    if last is not None and last.paid + last.unpaid == a["count"]:
        paid = min(last.paid, a["count"])
        return Settled({"paid": paid, "unpaid": a["count"] - paid, "from": "payout_since"},
                       [(a["purpose"], paid * a["coin_fen"], f"hopper:{a.get('device', '')}")],
                       [("hopper", a.get("device", ""), -paid)]), None
    return Settled({"paid": None, "resolution": "hopper cannot say"},
                   [("held", a["count"] * a["coin_fen"], "payout unknown")]), UNKNOWN


async def _boss_keyed(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    a, kind = step["args"], step["kind"]
    fen = a.get("fen", 0)
    if s.boss is None:
        return Settled({"applied": None, "resolution": "no BOSS configured"}, [("held", fen, "boss unknown")] if fen else []), UNKNOWN
    try:
        status = await s.boss.credit_status(a["key"])
        if status.found:
            return _applied(status.result.get("boss_ref", ""), fen, "op_status"), DELIVERED
        if kind == "boss_change_plan":  # not repeated: a plan change nobody saw confirmed is not forced on
            return Settled({"applied": False, "resolution": "not found at the BOSS"}), NOT_DELIVERED
        # Not applied (yet): repeating with the SAME key is safe — if the first is still in
        # flight, the BOSS applies one of them, once.
        if kind == "boss_credit":
            r: Any = await s.boss.credit(a["phone"], fen, a["key"])
        elif kind == "boss_pay_bill":
            r = await s.boss.pay_bill(a["phone"], fen, a["key"])
        else:
            r = await s.boss.suspend_number(a["phone"], a["key"])
        return _applied(r.boss_ref, fen, "repeated"), DELIVERED
    except BossRefused as exc:
        return Settled({"applied": False, "refused": exc.code}), NOT_DELIVERED
    except BossError as exc:
        return Settled({"applied": None, "error": str(exc)}, [("held", fen, "boss unknown")] if fen else []), UNKNOWN


def _applied(ref: str, fen: int, how: str) -> Settled:
    return Settled({"applied": True, "boss_ref": ref, "from": how}, [("applied", fen, f"boss:{ref}")] if fen else [])


async def _dispense_card(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    """A card at the gate was dispensed: closed as such (the state rule then captures it, as its
    own journalled step, so a second cut during recovery cannot mistake the captured card for one
    the customer took). Not at the gate: never dispensed, or already taken: nobody can tell."""
    face = step["args"]["face_fen"]
    dispenser = s.hw.dispensers.get(face)
    try:
        status = await dispenser.status()
    except Exception as exc:
        return Settled({"at_gate": None, "error": str(exc)}), UNKNOWN
    if status.known and status.card_at_gate:
        return Settled({"at_gate": True, "serial": step["args"].get("serial", ""), "from": "status"},
                       counts=[("card_stock", str(face), -1), ("card_serial", str(face), 1)]), None
    if not status.known:
        return Settled({"at_gate": None, "error": "dispenser status unknown"}), UNKNOWN
    return Settled({"at_gate": False, "resolution": "card not at gate: held for review"}), UNKNOWN


async def _capture_card(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    face = step["args"]["face_fen"]
    dispenser = s.hw.dispensers.get(face)
    try:
        status = await dispenser.status()
        if not status.known:  # a silent dispenser is no proof that the card went into the bin
            return Settled({"captured": None, "error": "dispenser status unknown"}), UNKNOWN
        if status.card_at_gate:
            await dispenser.capture()
    except Exception as exc:
        return Settled({"captured": None, "error": str(exc)}), UNKNOWN
    return Settled({"captured": True}, counts=[("card_reject", str(face), 1)]), NOT_DELIVERED


async def _no_money(s: Services, txn: dict, step: dict) -> tuple[Settled, str | None]:
    return Settled({"unknown": True, "resolution": "not repeated"}), None


RESOLVERS = {
    "stack_bill": _stack_bill, "payout": _payout, "boss_credit": _boss_keyed, "boss_pay_bill": _boss_keyed,
    "boss_change_plan": _boss_keyed, "boss_suspend": _boss_keyed, "dispense_card": _dispense_card,
    "capture_card": _capture_card, "print": _no_money, "sms": _no_money,
    **identity.RESOLVERS,  # the real-name flows' steps (issue 11)
}


async def _card_at_gate(s: Services, txn: dict) -> tuple[list, list, str]:
    """Money, counts, verdict for a sale found at ``at_gate``/``dispensing``: was the card taken?

    A card still at the gate is captured as a journalled ``capture_card`` step (flow state
    ``capturing``): if power fails again before the finish, the next recovery finds the capture
    in the journal and refunds, instead of finding the gate empty and counting the card as sold.
    """
    face = txn["data"].get("face_fen")
    dispenser = s.hw.dispensers.get(face)
    dispensed = [st for st in txn["steps"] if st["kind"] == "dispense_card" and st["closed_at"] is not None]
    if not dispensed or not (dispensed[-1]["outcome"] or {}).get("at_gate"):
        return [], [], NOT_DELIVERED  # no card ever reached the gate: nothing was delivered
    try:
        status = await dispenser.status()
    except Exception:
        return [], [], UNKNOWN
    if not status.known:
        return [], [], UNKNOWN
    if not status.card_at_gate:
        return [("applied", txn["amount_fen"], f"card:{txn['data'].get('serial', '')}")], [], DELIVERED
    j, now = s.journal, s.clock
    args = {"face_fen": face, "device": getattr(dispenser, "name", ""), "by": "recovery"}
    step = await j.write(records.open_intent, txn["id"], "capture_card", args, now(), "capturing")
    boundary("recovery:capture_card:intent")
    try:
        await dispenser.capture()
        settled, verdict = Settled({"captured": True}, counts=[("card_reject", str(face), 1)]), NOT_DELIVERED
    except Exception as exc:
        settled, verdict = Settled({"captured": False, "error": str(exc)}), UNKNOWN
    await j.write(lambda c: records.close_intent(c, step, settled.outcome, now(), money=settled.money,
                                                 counts=settled.counts, resolved_by="recovery"))
    boundary("recovery:capture_card:resolved")
    return [], [], verdict


BOSS_KINDS = ("boss_credit", "boss_pay_bill", "boss_change_plan", "boss_suspend", *identity.BOSS_KINDS)


def unknown_outcome(step: dict) -> bool:
    """A closed step whose outcome says "nobody knows": it is no more settled than an open one."""
    o, kind = step["outcome"] or {}, step["kind"]
    if kind in BOSS_KINDS:
        return "applied" in o and o["applied"] is None
    if kind == "payout":
        return "paid" in o and o["paid"] is None
    if kind == "stack_bill":
        return bool(o.get("unknown"))
    if kind == "dispense_card":
        return "at_gate" in o and o["at_gate"] is None
    if kind == "capture_card":
        return o.get("captured") is not True
    return False


async def _ask_again(s: Services, txn: dict, step: dict) -> tuple[Settled | None, str]:
    """A closed step with an unknown outcome: ask the BOSS by key / the hopper by counter again.

    Known now: the new outcome replaces the step's hold (``records.reresolve``). Still unknown, or
    a kind nobody can be asked again about (a bill, a card): its hold stands and it goes to review.
    """
    if step["kind"] in BOSS_KINDS or step["kind"] == "payout":
        settled, verdict = await RESOLVERS[step["kind"]](s, txn, step)
        if verdict != UNKNOWN:
            return settled, verdict or ""
    return None, UNKNOWN


async def recover_txn(s: Services, txn_id: str) -> Recovered:
    j, now = s.journal, s.clock
    txn = await j.read(records.get_txn, txn_id)
    out = Recovered(txn_id, txn["service"], txn["flow_state"])
    verdicts: list[str] = []
    for step in txn["steps"]:
        if step["closed_at"] is not None:
            if not unknown_outcome(step):
                continue
            settled, verdict = await _ask_again(s, txn, step)
            if settled is not None:
                await j.write(lambda c, st=step, se=settled: records.reresolve(
                    c, st["id"], se.outcome, now(), money=se.money, counts=se.counts))
                boundary(f"recovery:{step['kind']}:reresolved")
                out.steps.append({"step": step["id"], "kind": step["kind"], "outcome": settled.outcome,
                                  "verdict": verdict, "again": True})
            if verdict:
                verdicts.append(verdict)
            continue
        settled, verdict = await RESOLVERS[step["kind"]](s, txn, step)
        await j.write(lambda c, st=step, se=settled: records.close_intent(
            c, st["id"], se.outcome, now(), money=se.money, counts=se.counts, resolved_by="recovery"))
        boundary(f"recovery:{step['kind']}:resolved")
        out.steps.append({"step": step["id"], "kind": step["kind"], "outcome": settled.outcome, "verdict": verdict})
        if verdict:
            verdicts.append(verdict)

    spec = SPECS.get(txn["service"])
    try:
        rule = spec.state(txn["flow_state"]).recover if spec else "unknown"
    except KeyError:
        rule = "unknown"
    if rule == identity.SIM_RULE or any(st["kind"] == "boss_reserve" for st in txn["steps"]):
        # a SIM in the machine is captured, a number held for a customer who is gone released
        verdicts += await identity.recover_identity(s, txn_id, rule)
    if rule == "delivered":
        verdicts.append(DELIVERED)
    elif rule == "card_at_gate" and UNKNOWN not in verdicts and NOT_DELIVERED not in verdicts:
        txn = await j.read(records.get_txn, txn_id)  # with the outcomes just resolved
        money, counts, verdict = await _card_at_gate(s, txn)
        if verdict == DELIVERED:
            # the sale and its new state in one commit: a second cut before the finish must find
            # "delivered", not look at the empty gate again and count the card a second time
            def write(c: Any) -> None:
                records.add_money(c, txn_id, money, now(), None, counts)
                records.set_flow_state(c, txn_id, "delivered", now())
            await j.write(write)
            boundary("recovery:card_taken:state")
        verdicts.append(verdict)
    elif rule == "unknown":
        verdicts.append(UNKNOWN)
    elif rule == identity.SIM_RULE:
        pass  # recover_identity has spoken

    led = await j.read(records.ledger, txn_id)
    if UNKNOWN in verdicts or led.held_for_review > 0:  # money held: a person decides, as in Run.finish
        out.final = "review"
        await j.write(records.finish_for_review, txn_id, f"recovery: unknown outcome in {txn['flow_state']}", now())
    else:
        if led.outstanding > 0:
            code = await j.write(records.issue_voucher, txn_id, led.outstanding, "recovered after restart", now())
            out.vouchers.append(code)
            boundary("recovery:voucher:commit")
        if DELIVERED in verdicts or led.applied > 0:
            out.final = "done"
        elif led.cash_in > 0:
            out.final = "refunded"
        else:
            out.final = "cancelled" if spec is not None and spec.takes_cash else "failed"
        try:
            await j.write(records.finish_txn, txn_id, out.final, now(), f"recovered from {txn['flow_state']}")
        except records.LedgerUnbalanced:
            out.final = "review"
            await j.write(records.finish_for_review, txn_id, "recovery: unbalanced", now())
    await j.write(records.enqueue, "event", {"kind": "txn_recovered", "txn": txn_id, "flow_state": txn["flow_state"],
                                             "final": out.final, "steps": out.steps, "vouchers": out.vouchers}, now())
    return out


async def _unjournalled_coins(s: Services, txn: str | None) -> None:
    """Coins the acceptor credited after the last one journalled (dropped in as kioskd died).

    The acceptor's buffer outlives kioskd (``credits_since``); they belong to the transaction that
    was open (taking cash) at the crash. With none open they are recorded as a device event.
    """
    seqs = (await s.journal.read(records.counters, "acceptor_seq")).get("acceptor_seq", {})
    for acceptor in s.hw.acceptors:
        last = seqs.get(acceptor.name)
        if last is None or not hasattr(acceptor, "credits_since"):
            continue
        try:
            found = await acceptor.credits_since(last)
        except Exception:
            found = None
        now = s.clock()
        if found is None:
            await s.journal.write(records.record_device_event, acceptor.name, "fault", "credits_unknown",
                                  f"cannot read the credits after event {last}: count the cash box", {}, now)
            continue
        fens, counter = found
        if fens and txn is not None:
            money = [("cash_in", fen, f"coin:{acceptor.name}") for fen in fens]
            counts = [("cashbox", f"coin:{fen}", 1) for fen in fens] + [("acceptor_seq", acceptor.name, counter)]
            await s.journal.write(records.add_money, txn, money, now, None, counts)
        elif fens:
            await s.journal.write(records.record_device_event, acceptor.name, "fault", "credit_without_customer",
                                  f"{sum(fens)} fen credited while no transaction was open", {"fens": fens}, now)
            await s.journal.write(records.set_counter, "acceptor_seq", acceptor.name, counter, now)


async def recover(s: Services, this_boot: bool = False) -> list[Recovered]:
    """Resolve every transaction left open by an earlier boot; returns what was done, oldest first.

    ``this_boot``: also those of the current boot (the desk, after a visit ended in an error it did
    not expect: nobody else will finish them before the next reboot, and the customer is waiting).
    """
    boot = s.journal.boot + (1 if this_boot else 0)
    stale = await s.journal.read(
        lambda c: [r[0] for r in c.execute("SELECT id FROM transactions WHERE state = 'open' AND boot < ?"
                                           " ORDER BY opened_at, id", (boot,))])
    if not this_boot:  # this boot's coins are journalled as they come, by the flow that took them
        await _unjournalled_coins(s, stale[-1] if stale else None)
    return [await recover_txn(s, txn) for txn in stale]

"""The one entry point kioskd calls to serve a customer: ``await run_flow(services, name, customer)``.

Gates before any transaction starts taking cash: a flow that needs the BOSS is refused while the
BOSS is unreachable (before any cash), and a cash flow is refused while the outbox is over its
limit (records are never dropped, so new cash must wait).
"""
from __future__ import annotations

import logging

from . import records
from .customer import Customer
from .flow import FlowResult, Run, Services
from .flows import FLOWS, READY
from .messages import yuan
from .recovery import recover_txn

log = logging.getLogger("kioskd.flows")


class UnknownService(KeyError):
    pass


async def available(services: Services) -> dict[str, bool]:
    """Which services can start now (for the menu); cheap: asks the BOSS once, the printer and each
    dispenser for their status once."""
    boss_ok = services.boss is not None and await services.boss.ping()
    depth = await services.journal.read(records.outbox_depth)
    out, asked = {}, {}
    for name, (spec, _) in FLOWS.items():
        ok = (boss_ok or not spec.needs_boss) and not (spec.takes_cash and depth > services.config.max_outbox)
        if spec.takes_cash and not services.hw.acceptors:
            ok = False
        if any(getattr(services.hw, role, None) is None for role in spec.needs):
            ok = False  # an identity flow on a kiosk without a reader, camera or SIM writer
        if spec.needs and not services.config.hall_public_key:
            ok = False  # nowhere to seal the real-name data to: never stored in the clear
        if ok and name in READY:
            if READY[name] not in asked:  # statement and invoice share the printer's answer
                asked[READY[name]] = await READY[name](services)
            ok = asked[READY[name]]
        out[name] = ok
    return out


async def run_flow(services: Services, name: str, customer: Customer) -> FlowResult:
    """Serve one customer through flow ``name``; always returns a finished, balanced transaction.

    Cancelling this coroutine (shutdown, power-fail) leaves the transaction open for recovery.
    """
    try:
        spec, walk = FLOWS[name]
    except KeyError:
        raise UnknownService(name) from None
    run = await Run.begin(services, spec, customer)
    reason = None
    if spec.needs_boss and (services.boss is None or not await services.boss.ping()):
        reason, key = "boss offline", "boss_offline"
    elif spec.takes_cash and await services.journal.read(records.outbox_depth) > services.config.max_outbox:
        reason, key = "outbox full", "kiosk_busy"
    if reason is not None:
        customer.show(key)
        await services.journal.write(records.finish_txn, run.txn, "declined", services.clock(), reason)
        state = "declined"
    else:
        try:
            state = await walk(run)
        except Exception:  # a fault no flow path caught: settle it now, with the customer still here
            log.exception("%s: flow %s failed; settling it now", run.txn, name)
            state = await _settle_now(services, run)
    txn = await services.journal.read(records.get_txn, run.txn)
    return FlowResult(run.txn, state, txn["ledger"], [v["claim_code"] for v in txn["vouchers"]])


async def _settle_now(services: Services, run: Run) -> str:
    """Recovery's rules on this boot's transaction: what is outstanding goes on a voucher that the
    customer sees now, instead of waiting open (and the customer's cash with it) for the next reboot."""
    rec = await recover_txn(services, run.txn)
    txn = await services.journal.read(records.get_txn, run.txn)
    try:  # the screen may be what failed: the books are settled either way
        run.customer.show("service_failed_refund")
        for v in txn["vouchers"]:
            if v["claim_code"] in rec.vouchers:
                run.customer.show("voucher_issued", amount=yuan(v["fen"]), code=v["claim_code"])
    except Exception:
        log.exception("%s: could not show the settlement", run.txn)
    return rec.final

"""The kiosk's services, each a spec (its table) and a coroutine walking a ``Run`` through it."""
from __future__ import annotations

from typing import Awaitable, Callable

from ..flow import FlowSpec, Run, Services
from . import bill_pay, card_sale, documents, loss_report, new_number, plan_change, query, real_name, sim_replace, topup
from .identity import sim_ready

FLOWS: dict[str, tuple[FlowSpec, Callable[[Run], Awaitable[str]]]] = {
    "topup": (topup.SPEC, topup.run),
    "card_sale": (card_sale.SPEC, card_sale.run),
    "bill_pay": (bill_pay.SPEC, bill_pay.run),
    "balance_query": (query.SPEC, query.run),
    "statement": (documents.STATEMENT, documents.run_statement),
    "invoice": (documents.INVOICE, documents.run_invoice),
    "plan_change": (plan_change.SPEC, plan_change.run),
    "loss_report": (loss_report.SPEC, loss_report.run),
    "new_number": (new_number.SPEC, new_number.run),
    "sim_replace": (sim_replace.SPEC, sim_replace.run),
    "real_name": (real_name.SPEC, real_name.run),
}

SPECS: dict[str, FlowSpec] = {name: spec for name, (spec, _) in FLOWS.items()}

# What each service needs in stock now beyond its devices, asked for the menu: a service that would
# stop halfway (no card, no paper, no blank SIM) is greyed before the customer starts, not after.
READY: dict[str, Callable[[Services], Awaitable[bool]]] = {
    "card_sale": card_sale.ready,
    "statement": documents.ready,
    "invoice": documents.ready,
    "new_number": sim_ready,
    "sim_replace": sim_ready,
}

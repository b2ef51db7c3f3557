"""What the screen shows, as one JSON-able snapshot built from the kiosk's own state.

The page renders from nothing but this (and the message catalogue), so a page that reconnects —
after a kioskd restart, a Chromium restart, a dropped socket — is back where the kiosk is.
"""
from __future__ import annotations

import asyncio
from typing import Any

from transactions import SPECS


def mode(kiosk: Any, menu: dict[str, bool]) -> str:
    """ready | maintenance (panel door or tamper switch open) | out_of_service (starting, stopping, power, nothing offered)."""
    closed = kiosk.admission.closed_because
    if closed in ("door_open", "tamper_open"):
        return "maintenance"
    if closed or kiosk.desk is None:
        return "out_of_service"
    if menu and not any(services(kiosk, menu).values()):
        return "out_of_service"
    return "ready"


def services(kiosk: Any, menu: dict[str, bool]) -> dict[str, bool]:
    """Each service and whether a tile may start it now (the flows' gates plus the hall's and alarms)."""
    return {name: bool(menu.get(name)) and kiosk.offered(name) is None for name in SPECS}


def visit(kiosk: Any) -> dict[str, Any] | None:
    desk = kiosk.desk
    customer = desk.customer if desk is not None else None
    if customer is None:
        return None
    busy = desk.task is not None and not desk.task.done()
    question = customer.question
    if question is not None:
        left = customer.deadline - asyncio.get_running_loop().time()
        question = {**question, "idle_left_s": round(max(0.0, left), 1)}
    return {"n": desk.visits, "service": desk.service, "busy": busy, "question": question,
            "shown": [{"n": s["n"], "key": s["key"], "fmt": s["fmt"]} for s in customer.shown],
            "cancelled": customer.cancelled.is_set(), "last": None if busy else desk.last}


def snapshot(kiosk: Any, menu: dict[str, bool], seq: int) -> dict[str, Any]:
    flows = kiosk.config.flows
    enrolment = getattr(kiosk, "enrolment", None)  # first boot: connecting to the hall (controller/enrolment.py)
    return {
        "type": "screen",
        "seq": seq,
        "kiosk": enrolment["kiosk"] if enrolment else kiosk.config.kiosk.id,
        "session": kiosk.session,
        "mode": mode(kiosk, menu),
        "services": services(kiosk, menu),
        "notices": list(kiosk.config.ui.notices),
        "large_text": kiosk.config.ui.large_text,
        "visit": visit(kiosk),
        "enrolment": enrolment,
        "cash": {"denominations": list(flows.denominations), "idle_timeout_s": flows.idle_timeout,
                 "hotline": flows.hotline},
    }


def fingerprint(kiosk: Any) -> tuple:
    """What may change the screen without the flow saying so (door, hall commands, alarms, state)."""
    return (kiosk.admission.closed_because, kiosk.state, tuple(sorted(kiosk.disabled_services)),
            kiosk.cash_inhibited, tuple(kiosk.alarms()), kiosk.desk is not None)

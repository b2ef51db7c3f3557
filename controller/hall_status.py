"""What the hall sees of this kiosk: the retained birth status and the telemetry gauges.

docs/mqtt.md "Status" (schema StatusPayload in docs/mqtt-api.yaml). The link adds ``online``,
``session`` and ``ts``; the cash-box and card-stock levels are the journal's counters, so they
survive restarts and match what the collection record will say.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .kiosk import Kiosk


async def birth(k: "Kiosk") -> dict[str, Any]:
    from transactions import books

    counters = await books.counters(k.journal) if k.journal is not None else {}
    by_denomination: dict[str, int] = {}
    for key, count in counters.get("cashbox", {}).items():  # "bill:2000", "coin:100": by face value
        denomination = key.split(":")[-1]
        by_denomination[denomination] = by_denomination.get(denomination, 0) + count
    hoppers = {d.name: d for d in k.devices.of_kind("payout")} if k.devices else {}
    hopper = counters.get("hopper", {})  # coins per hopper device
    return {
        "kiosk": k.config.kiosk.id, "hall": k.config.kiosk.hall, "version": __version__,
        "config_hash": k.config.raw_hash, "state": k.state, "outbox_depth": k.outbox_depth,
        "alarms": k.alarms(),
        "devices": {n: d["health"] for n, d in (k.devices.status() if k.devices else {}).items()},
        "cashbox": {"fen": max(0, counters.get("cashbox_fen", 0)), "by_denomination": by_denomination},
        "card_stock": counters.get("card_stock", {}),
        "hopper": hopper,
        "hopper_fen": max(0, sum(coins * getattr(hoppers.get(name), "coin_fen", 0) for name, coins in hopper.items())),
        "disabled_services": sorted(k.disabled_services), "cash_inhibited": k.cash_inhibited,
    }


async def telemetry(k: "Kiosk") -> dict[str, Any]:
    return {**await birth(k), "uptime_s": round(time.time() - k.started_at, 1),
            "hall_online": k.link.hall_online if k.link else None}

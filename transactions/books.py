"""The journal calls kioskd makes outside a flow: outbox drain and ack, counters, collection, events.

Thin async wrappers over ``records`` so the daemon never builds SQL or touches the writer thread.
"""
from __future__ import annotations

import time
from typing import Any

from . import pii, records
from .journal import Journal


async def outbox(j: Journal, after_seq: int = 0, limit: int = 100) -> list[dict]:
    """Undelivered rows in seq order: ``{"seq", "topic": "txn"|"event", "payload", "created_at"}``."""
    return await j.read(records.outbox_pending, after_seq, limit)


async def ack(j: Journal, upto_seq: int, keep: int | None = None) -> int:
    """The hall's ack (high-water seq committed by halld): rows up to it are delivered, the sealed
    real-name data in them is purged from the kiosk (the hall has it now), and with ``keep`` the
    delivered rows but the newest ``keep`` are deleted (``records.prune_delivered`` says what is
    kept and why). One commit: the purge always sees a row before the prune deletes it."""

    def deliver(conn: Any) -> int:
        n = records.mark_delivered(conn, upto_seq, time.time())
        if n:
            pii.purge_delivered(conn)
            if keep is not None:
                records.prune_delivered(conn, upto_seq, keep)
        return n

    return await j.write(deliver)


async def outbox_depth(j: Journal) -> int:
    return await j.read(records.outbox_depth)


async def counters(j: Journal) -> dict[str, Any]:
    """``{"cashbox": {"bill:2000": n, "coin:100": n}, "cashbox_fen": total, "hopper": {...},
    "card_stock": {"3000": n}, "card_reject": {...}, "card_serial": {...}}``."""
    out: dict[str, Any] = await j.read(records.counters)
    out["cashbox_fen"] = await j.read(records.cashbox_fen)
    return out


async def set_counter(j: Journal, kind: str, key: str, value: int) -> None:
    """Staff refill: hopper coins (``"hopper", device``), card stock and next serial (``face fen``)."""
    await j.write(records.set_counter, kind, key, value, time.time())


async def collect(j: Journal, by: str) -> dict:
    """Cash collection: a collection record (what the box should hold), counts reset, hall told."""
    return await j.write(records.collect, by, time.time())


async def device_event(j: Journal, event: Any, cap: int | None = None) -> int:
    """Journal a ``hal.device.DeviceEvent`` and queue it for the hall; returns its outbox seq, or 0
    when ``cap`` rows or more wait for the hall and it was counted instead (``records.drop_event``)."""
    return await j.write(records.record_device_event, event.device, event.kind, event.code, event.detail,
                         dict(event.data), time.time(), cap)


async def claim_voucher(j: Journal, claim_code: str) -> dict:
    """Staff paid a refund voucher out at the counter (or the hall did): mark it claimed."""
    return await j.write(records.claim_voucher, claim_code, time.time())


async def transaction(j: Journal, txn: str) -> dict | None:
    """One transaction with its ledger, steps and vouchers (for kioskctl and the local API)."""
    return await j.read(records.get_txn, txn)

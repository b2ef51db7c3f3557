"""What the hall staff ask: the read side shared by the HTTP API (hall/api.py) and the CLI.

Plain functions of a Database returning JSON-ready dicts; JSON columns come back decoded.
"""
from __future__ import annotations

import json
from typing import Any

from .db import Database

_JSON = ("alarms", "devices", "cashbox", "card_stock", "status", "payload", "args", "reply")


def _decode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key in _JSON:
            if isinstance(row.get(key), str):
                try:
                    row[key] = json.loads(row[key])
                except ValueError:
                    pass
        if "online" in row and row["online"] is not None:
            row["online"] = bool(row["online"])
        if "ok" in row and row["ok"] is not None:
            row["ok"] = bool(row["ok"])
    return rows


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())


def fleet(db: Database, hall: str | None = None) -> list[dict[str, Any]]:
    """Every kiosk: online/offline (birth/will), last seen, outbox depth, health, cash and cards."""
    where, params = _where({"hall": hall})
    rows = _decode(db.dicts(
        "SELECT hall, kiosk, online, session, last_seen, state, version, config_hash, outbox_depth, alarms,"
        f" devices, cashbox_fen, cashbox, card_stock, hopper_fen, status FROM fleet{where} ORDER BY hall, kiosk", params))
    for row in rows:  # what the hall told it: from the kiosk's latest status (republished on every change)
        status = row.pop("status")
        status = status if isinstance(status, dict) else {}
        row["cash_inhibited"] = bool(status.get("cash_inhibited"))
        row["disabled_services"] = list(status.get("disabled_services") or [])
    return rows


def kiosk(db: Database, kiosk_id: str) -> dict[str, Any] | None:
    rows = _decode(db.dicts("SELECT * FROM fleet WHERE kiosk = ?", (kiosk_id,)))
    if not rows:
        return None
    row = rows[0]
    high = db.one("SELECT msg_seq FROM highwater WHERE kiosk = ?", (kiosk_id,))
    row["acked_msg_seq"] = high[0] if high else 0
    row["recent_txns"] = txns(db, kiosk_id, limit=10)
    row["recent_events"] = events(db, kiosk_id, limit=10)
    row["open_reviews"] = reviews(db, "open", kiosk_id)
    row["open_refunds"] = refunds(db, "issued", kiosk_id)
    return row


def hall_of(db: Database, kiosk_id: str) -> str | None:
    """The hall a kiosk last said hello from (a kiosk moved between halls keeps an old row)."""
    row = db.one("SELECT hall FROM fleet WHERE kiosk = ? ORDER BY last_seen DESC LIMIT 1", (kiosk_id,))
    return row[0] if row else None


def halls(db: Database) -> list[str]:
    return [r[0] for r in db.query("SELECT DISTINCT hall FROM fleet ORDER BY hall")]


def txns(db: Database, kiosk_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    where, params = _where({"kiosk": kiosk_id})
    rows = _decode(db.dicts("SELECT hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at,"
                            f" received_at, payload FROM txns{where} ORDER BY received_at DESC, msg_seq DESC LIMIT ?",
                            (*params, limit)))
    return rows


def events(db: Database, kiosk_id: str | None = None, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
    where, params = _where({"kiosk": kiosk_id, "kind": kind})
    return _decode(db.dicts("SELECT hall, kiosk, msg_seq, kind, device, code, detail, txn, at, received_at, payload"
                            f" FROM events{where} ORDER BY received_at DESC, msg_seq DESC LIMIT ?", (*params, limit)))


def refunds(db: Database, state: str | None = None, kiosk_id: str | None = None) -> list[dict[str, Any]]:
    where, params = _where({"state": state, "kiosk": kiosk_id})
    return db.dicts(f"SELECT * FROM refunds{where} ORDER BY created_at DESC", params)


def reviews(db: Database, state: str | None = None, kiosk_id: str | None = None) -> list[dict[str, Any]]:
    where, params = _where({"state": state, "kiosk": kiosk_id})
    return db.dicts(f"SELECT * FROM reviews{where} ORDER BY opened_at DESC", params)


def commands(db: Database, kiosk_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    where, params = _where({"kiosk": kiosk_id})
    return _decode(db.dicts(f"SELECT * FROM commands{where} ORDER BY sent_at DESC LIMIT ?", (*params, limit)))


def recent(db: Database, n: int = 20) -> list[dict[str, Any]]:
    """The latest status messages as received (the first halld's `recent`)."""
    return _decode(db.dicts("SELECT hall, kiosk, kind, received_at, payload FROM messages ORDER BY id DESC LIMIT ?", (n,)))


def quarantine(db: Database, kiosk_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Messages halld refused to store (hall/store.py), newest first, with the reason; the payload
    is the text as received (bad bytes escaped), never decoded: it is what was wrong."""
    where, params = _where({"kiosk": kiosk_id})
    return db.dicts("SELECT id, hall, kiosk, leaf, msg_seq, reason, size, received_at, payload FROM quarantine"
                    f"{where} ORDER BY id DESC LIMIT ?", [*params, limit])

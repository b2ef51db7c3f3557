"""充值冲正 / Reversal of a top-up through the BOSS, inside the BOSS's window.

A customer topped up the wrong number, or the kiosk credited and the customer wants the cash back:
staff ask the BOSS to take the credit back (`reverse_credit` of the kiosk's key `{txn}:credit`)
and pay the amount out at the desk. The BOSS decides whether the window is still open (bosssim:
24 h; a real BOSS: its own rule) and whether the balance still covers it.

Remote side effect, so journalled before and after: the intent row (`asked`) and its audit entry
are committed before the call, the outcome (`done` | `refused` | `unknown` | `failed`) after it.
The key is `rev:{txn}` and the reason is kept with the intent, so asking again after an unknown
outcome (a timeout) sends the very same request and the BOSS applies it at most once.
"""
from __future__ import annotations

import json
import time
from typing import Any

from . import auth

SCHEMA = """
CREATE TABLE IF NOT EXISTS reversals (
    id {serial}, hall TEXT, kiosk TEXT NOT NULL, txn TEXT NOT NULL, of_key TEXT NOT NULL, phone TEXT, fen BIGINT,
    reason TEXT, state TEXT NOT NULL, code TEXT, message TEXT, boss_ref TEXT, balance_fen BIGINT, who TEXT,
    asked_at DOUBLE PRECISION, answered_at DOUBLE PRECISION, UNIQUE (kiosk, txn));
"""
WINDOW_S = 24 * 3600  # what the console offers (bosssim's window); the BOSS's own answer decides
REASON_MAX = 200
RETRY = ("unknown", "failed", "refused")  # states in which staff may ask again


class NotReversible(ValueError):
    pass


def create_schema(db: Any) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    db.execute(SCHEMA.format(serial=serial))


def _applied(payload: Any) -> int:
    try:
        body = json.loads(payload) if isinstance(payload, str) else {}
    except ValueError:
        body = {}
    applied = body.get("applied") if isinstance(body, dict) else None
    return applied if type(applied) is int else 0


def candidates(db: Any, now: float, page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], bool]:
    """Top-ups done inside the window, newest first, with any reversal already asked."""
    rows = db.dicts("SELECT t.hall, t.kiosk, t.txn, t.phone, t.amount_fen, t.finished_at, t.payload, r.state AS reversal"
                    " FROM txns t LEFT JOIN reversals r ON r.kiosk = t.kiosk AND r.txn = t.txn"
                    " WHERE t.service = 'topup' AND t.state = 'done' AND t.finished_at >= ?"
                    " ORDER BY t.finished_at DESC, t.kiosk, t.txn LIMIT ? OFFSET ?",
                    (now - WINDOW_S, size + 1, (page - 1) * size))
    for row in rows:
        row["fen"] = _applied(row.pop("payload")) or row["amount_fen"]
    return rows[:size], len(rows) > size


def recent(db: Any, limit: int = 50) -> list[dict[str, Any]]:
    return db.dicts("SELECT * FROM reversals ORDER BY asked_at DESC, id DESC LIMIT ?", (limit,))


def ask(db: Any, kiosk: str, txn: str, reason: str, who: str) -> dict[str, Any]:
    """The intent, committed (with its audit entry) before the BOSS is called; NotReversible if not."""
    rows = db.dicts("SELECT hall, kiosk, txn, service, state, phone, amount_fen, payload FROM txns"
                    " WHERE kiosk = ? AND txn = ?", (kiosk, txn))
    if not rows or rows[0]["service"] != "topup" or rows[0]["state"] != "done":
        raise NotReversible("not_a_done_topup")
    t = rows[0]
    fen = _applied(t["payload"]) or t["amount_fen"]
    old = db.dicts(f"SELECT * FROM reversals WHERE kiosk = ? AND txn = ?{db.for_update}", (kiosk, txn))
    now = time.time()
    if old and old[0]["state"] not in RETRY:
        raise NotReversible(f"already_{old[0]['state']}")
    if old:  # asked again: the same request (key and reason) as the first time
        rec = old[0]
        db.execute("UPDATE reversals SET state = 'asked', who = ?, asked_at = ? WHERE id = ?", (who, now, rec["id"]))
    else:
        rec = {"hall": t["hall"], "kiosk": kiosk, "txn": txn, "of_key": f"{txn}:credit", "phone": t["phone"],
               "fen": fen, "reason": reason[:REASON_MAX]}
        db.execute("INSERT INTO reversals (hall, kiosk, txn, of_key, phone, fen, reason, state, who, asked_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, 'asked', ?, ?)",
                   (rec["hall"], kiosk, txn, rec["of_key"], rec["phone"], fen, rec["reason"], who, now))
    request = {"of": rec["of_key"], "reason": rec["reason"] or "", "key": f"rev:{txn}"}
    auth.audit(db, who, "reversal.ask", f"{rec['hall']}/{kiosk}/{txn}", {"txn_state": t["state"], "fen": fen,
               "earlier": old[0]["state"] if old else None}, {"request": request}, now)
    return {**rec, "request": request}


def answered(db: Any, kiosk: str, txn: str, state: str, code: str, message: str, result: dict[str, Any],
             who: str) -> None:
    """The outcome, after the call: done | refused (the BOSS said no) | unknown (no answer) | failed (unreached).
    Done, the amount is the BOSS's (a kiosk that recorded another amount is reconciliation's business)."""
    now = time.time()
    fen = result.get("fen") if type(result.get("fen")) is int else None  # what the BOSS took back is what the desk pays
    db.execute("UPDATE reversals SET state = ?, code = ?, message = ?, boss_ref = ?, balance_fen = ?, answered_at = ?,"
               " fen = COALESCE(?, fen) WHERE kiosk = ? AND txn = ?",
               (state, code, message[:300], result.get("boss_ref"), result.get("balance_fen"), now, fen, kiosk, txn))
    auth.audit(db, who, f"reversal.{state}", f"{kiosk}/{txn}", {"state": "asked"},
               {"state": state, "code": code, "message": message[:300], "result": result}, now)


def reversed_fen(db: Any, keys: list[str]) -> dict[str, int]:
    """What the hall reversed of these credit keys (done only), for reconciliation."""
    out: dict[str, int] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        marks = ", ".join("?" * len(chunk))
        for key, fen in db.query(f"SELECT of_key, fen FROM reversals WHERE state = 'done' AND of_key IN ({marks})",
                                 chunk):
            out[key] = fen
    return out

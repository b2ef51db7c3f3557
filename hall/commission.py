"""佣金转钱包 / The hall's commission at the BOSS and its transfer to the hall's wallet.

The BOSS pays the hall (its agent) a commission on the money the kiosks took for it; the statement
(per month: operations, amounts, rates, commission; earned to date, transferred, available) is the
BOSS's, read live. Moving commission to the hall's wallet is a remote side effect with money in it,
so the transfer is journalled before and after like a reversal: the intent row (`asked`, with the
BOSS's available amount before) and its audit entry committed first, the outcome after. The
idempotency key is made when the form is shown and travels in it, so the same form sent twice (a
double click, a reload) moves the money once, and asking again after a lost answer is safe.
"""
from __future__ import annotations

import re
import time
from typing import Any

from . import auth

SCHEMA = """
CREATE TABLE IF NOT EXISTS commission_transfers (
    key TEXT PRIMARY KEY, fen BIGINT NOT NULL, state TEXT NOT NULL, code TEXT, message TEXT, boss_ref TEXT,
    wallet_fen BIGINT, who TEXT, asked_at DOUBLE PRECISION, answered_at DOUBLE PRECISION);
"""
KEY_RE = re.compile(r"cm-[0-9a-f]{16}")
RETRY = ("unknown", "failed")


class NotAgain(ValueError):
    pass


def create_schema(db: Any) -> None:
    db.execute(SCHEMA)


def transfers(db: Any, limit: int = 50) -> list[dict[str, Any]]:
    return db.dicts("SELECT * FROM commission_transfers ORDER BY asked_at DESC LIMIT ?", (limit,))


def ask(db: Any, key: str, fen: int, before: dict[str, Any], who: str) -> None:
    """The intent, committed with its audit entry before the BOSS is asked; NotAgain when this form
    was sent already (done, refused, or in flight) or its key comes back with another amount."""
    rows = db.dicts(f"SELECT * FROM commission_transfers WHERE key = ?{db.for_update}", (key,))
    now = time.time()
    if rows and (rows[0]["state"] not in RETRY or rows[0]["fen"] != fen):
        raise NotAgain(f"already_{rows[0]['state']}" if rows[0]["fen"] == fen else "key_reused")
    if rows:
        db.execute("UPDATE commission_transfers SET state = 'asked', who = ?, asked_at = ? WHERE key = ?", (who, now, key))
    else:
        db.execute("INSERT INTO commission_transfers (key, fen, state, who, asked_at) VALUES (?, ?, 'asked', ?, ?)",
                   (key, fen, who, now))
    auth.audit(db, who, "commission.transfer.ask", key, before, {"fen": fen}, now)


def answered(db: Any, key: str, state: str, code: str, message: str, result: dict[str, Any], who: str) -> None:
    now = time.time()
    db.execute("UPDATE commission_transfers SET state = ?, code = ?, message = ?, boss_ref = ?, wallet_fen = ?,"
               " answered_at = ? WHERE key = ?",
               (state, code, message[:300], result.get("boss_ref"), result.get("wallet_fen"), now, key))
    auth.audit(db, who, f"commission.transfer.{state}", key, {"state": "asked"},
               {"state": state, "code": code, "message": message[:300], "result": result}, now)

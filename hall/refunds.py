"""退卡退款 / The review queue: money the kiosks could not settle, for a person to decide.

Two kinds of item wait here: a transaction held for review (the kiosk could not tell whether the
BOSS applied it, or its books would not balance: `reviews` open) and a refund voucher the kiosk
printed because its hopper could not pay (`refunds` issued). An operator decides each one:

- pay at the desk: the customer gets the held amount (or the voucher's) in cash at the counter;
  the kiosk is told first (`resolve_review` refunded / `resolve_refund` paid) so it can never be
  paid twice, and only a kiosk that agreed makes the hall record the payout;
- reject (reviews only), with a reason: the BOSS did credit it (`credited`), or it is written off.

The kiosk's own journal is the arbiter (it refuses a second decision), the hall's `desk_payouts`
row and the audit entry (the item before, the decision and the kiosk's reply after) are written in
one transaction once it answered.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

from . import auth

SCHEMA = """
CREATE TABLE IF NOT EXISTS desk_payouts (
    id {serial}, hall TEXT, kiosk TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, txn TEXT, fen BIGINT,
    decision TEXT NOT NULL, resolution TEXT, reason TEXT, voucher TEXT, who TEXT, at DOUBLE PRECISION);
"""
PAGE = 50
REJECTIONS = ("credited", "written_off")  # controller/commands.py resolve_review's other resolutions
REASON_MAX = 200

_QUEUE = """
SELECT r.hall, r.kiosk, 'review' AS kind, r.txn AS ref, r.txn, r.held_fen AS fen, r.reason, r.opened_at AS at,
       t.phone, t.service, t.amount_fen, t.state
  FROM reviews r LEFT JOIN txns t ON t.kiosk = r.kiosk AND t.txn = r.txn WHERE r.state = 'open'{and_review}
UNION ALL
SELECT f.hall, f.kiosk, 'voucher' AS kind, f.claim_code AS ref, f.txn, f.fen, f.reason, f.created_at AS at,
       t.phone, t.service, t.amount_fen, t.state
  FROM refunds f LEFT JOIN txns t ON t.kiosk = f.kiosk AND t.txn = f.txn WHERE f.state = 'issued'{and_voucher}
"""


def create_schema(db: Any) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    db.execute(SCHEMA.format(serial=serial))


def queue(db: Any, page: int = 1, size: int = PAGE) -> tuple[list[dict[str, Any]], bool, int, int]:
    """One page of open items, oldest first; whether there are more; how many and how much in all."""
    sql = _QUEUE.format(and_review="", and_voucher="")
    rows = db.dicts(f"SELECT * FROM ({sql}) q ORDER BY at, kiosk, ref LIMIT ? OFFSET ?", (size + 1, (page - 1) * size))
    count, fen = db.one(f"SELECT COUNT(*), COALESCE(SUM(fen), 0) FROM ({sql}) q")
    return rows[:size], len(rows) > size, int(count), int(fen)


def item(db: Any, kind: str, kiosk: str, ref: str) -> dict[str, Any] | None:
    """One open item, or None (decided already, or never there)."""
    if kind not in ("review", "voucher"):
        return None
    sql = _QUEUE.format(and_review=" AND r.kiosk = ? AND r.txn = ?", and_voucher=" AND f.kiosk = ? AND f.claim_code = ?")
    rows = [r for r in db.dicts(sql, (kiosk, ref, kiosk, ref)) if r["kind"] == kind]
    return rows[0] if rows else None


def decided(db: Any, limit: int = 20) -> list[dict[str, Any]]:
    return db.dicts("SELECT * FROM desk_payouts ORDER BY at DESC, id DESC LIMIT ?", (limit,))


def record(db: Any, before: dict[str, Any], decision: str, resolution: str, reason: str, who: str,
           reply: dict[str, Any]) -> dict[str, Any]:
    """The kiosk agreed: the desk's record and the audit entry, together."""
    now = time.time()
    voucher = ("D" + secrets.token_hex(4).upper()) if before["kind"] == "review" and decision == "paid" else \
        (before["ref"] if decision == "paid" else None)
    rec = {"kind": before["kind"], "ref": before["ref"], "txn": before["txn"], "fen": before["fen"],
           "decision": decision, "resolution": resolution, "reason": reason[:REASON_MAX], "voucher": voucher}
    db.execute("INSERT INTO desk_payouts (hall, kiosk, kind, ref, txn, fen, decision, resolution, reason, voucher, who,"
               " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (before["hall"], before["kiosk"], rec["kind"], rec["ref"], rec["txn"], rec["fen"], decision, resolution,
                rec["reason"], voucher, who, now))
    auth.audit(db, who, f"refund.{decision}", f"{before['hall']}/{before['kiosk']}/{before['ref']}", before,
               {**rec, "reply": reply}, now)
    return rec

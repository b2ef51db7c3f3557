"""Cash collection at the hall: what the kiosk said its cash box held against what staff counted.

Staff empty a kiosk's cash box and count it at the desk; the record keeps both amounts and the
difference (counted - kiosk, integer fen) with who counted and a note, so a shortfall is on file
the moment it is found. The kiosk's figure is its last reported `cashbox_fen` (fleet row), read in
the same write transaction as the record and its audit entry.
"""
from __future__ import annotations

import re
import time
from typing import Any

from . import auth

SCHEMA = """
CREATE TABLE IF NOT EXISTS cash_counts (
    id {serial}, hall TEXT, kiosk TEXT NOT NULL, at DOUBLE PRECISION, who TEXT, kiosk_fen BIGINT,
    counted_fen BIGINT NOT NULL, diff_fen BIGINT, note TEXT);
"""
YUAN_RE = re.compile(r"(\d{1,9})(?:\.(\d{1,2}))?")
NOTE_MAX = 500


def create_schema(db: Any) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    for statement in SCHEMA.format(serial=serial).split(";"):
        if statement.strip():
            db.execute(statement)


def parse_yuan(text: str) -> int:
    """'123', '123.4', '123.45' -> fen; anything else (negative, 3 decimals, 1e3) is ValueError."""
    m = YUAN_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text[:40]!r} is not an amount in yuan like 123.45")
    return int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))


def record(db: Any, hall: str, kiosk: str, counted_fen: int, note: str, who: str) -> dict[str, Any]:
    """Store one count with its audit entry; returns the record."""
    row = db.one("SELECT cashbox_fen FROM fleet WHERE hall = ? AND kiosk = ?", (hall, kiosk))
    kiosk_fen = row[0] if row and row[0] is not None else None
    now = time.time()
    rec = {"hall": hall, "kiosk": kiosk, "kiosk_fen": kiosk_fen, "counted_fen": counted_fen,
           "diff_fen": None if kiosk_fen is None else counted_fen - kiosk_fen, "note": note[:NOTE_MAX]}
    db.execute("INSERT INTO cash_counts (hall, kiosk, at, who, kiosk_fen, counted_fen, diff_fen, note)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (hall, kiosk, now, who, kiosk_fen, counted_fen, rec["diff_fen"], rec["note"]))
    auth.audit(db, who, "kiosk.cash_count", f"{hall}/{kiosk}", {"kiosk_fen": kiosk_fen}, rec, now)
    return rec


def counts(db: Any, kiosk: str, limit: int = 20) -> list[dict[str, Any]]:
    return db.dicts("SELECT id, hall, kiosk, at, who, kiosk_fen, counted_fen, diff_fen, note FROM cash_counts"
                    " WHERE kiosk = ? ORDER BY at DESC LIMIT ?", (kiosk, limit))

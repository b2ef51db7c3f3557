"""Transaction search for the console: by phone, hall, kiosk, local date range, state and amount.

Every filter is a bound parameter (the SQL text is fixed but for which conditions are present);
results come newest first, a page at a time, so an open search over a year is one page of rows.
A phone is digits only and matches anywhere in the number (the desk often has only the last four).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from . import queries
from .cashcount import parse_yuan
from .reports import default_offset

PAGE = 50
STATES = ("done", "refunded", "declined", "cancelled", "failed", "review")  # transactions/records.py FINAL_STATES
PHONE_RE = re.compile(r"\d{1,11}")
COLUMNS = "hall, kiosk, txn, seq, service, phone, amount_fen, state, finished_at, received_at"


@dataclass(frozen=True)
class Search:
    phone: str = ""
    hall: str = ""
    kiosk: str = ""
    state: str = ""
    start: dt.date | None = None
    end: dt.date | None = None
    min_fen: int | None = None
    max_fen: int | None = None
    page: int = 1
    tz_offset_s: int = 0

    @classmethod
    def parse(cls, query: Any, tz_offset_s: int | None = None) -> "Search":
        """From the page's query string; a malformed value is ValueError with what was wrong."""
        phone = (query.get("phone") or "").strip()
        if phone and not PHONE_RE.fullmatch(phone):
            raise ValueError("phone: digits only, at most 11")
        state = query.get("state") or ""
        if state and state not in STATES:
            raise ValueError(f"state: one of {', '.join(STATES)}")
        try:
            start = dt.date.fromisoformat(query["from"]) if query.get("from") else None
            end = dt.date.fromisoformat(query["to"]) if query.get("to") else None
        except ValueError:
            raise ValueError("dates are YYYY-MM-DD") from None
        if start and end and start > end:
            start, end = end, start
        low = parse_yuan(query["min"]) if query.get("min") else None
        high = parse_yuan(query["max"]) if query.get("max") else None
        try:
            page = max(1, min(int(query.get("page") or 1), 100000))
        except ValueError:
            page = 1
        return cls(phone, (query.get("hall") or "")[:64], (query.get("kiosk") or "")[:64], state, start, end, low,
                   high, page, default_offset() if tz_offset_s is None else tz_offset_s)

    def where(self) -> tuple[str, list[Any]]:
        conds: list[str] = []
        params: list[Any] = []
        epoch = dt.date(1970, 1, 1)
        for sql, value in (("phone LIKE ?", f"%{self.phone}%" if self.phone else None),
                           ("hall = ?", self.hall or None), ("kiosk = ?", self.kiosk or None),
                           ("state = ?", self.state or None),
                           ("finished_at >= ?", None if self.start is None else
                            (self.start - epoch).days * 86400 - self.tz_offset_s),
                           ("finished_at < ?", None if self.end is None else
                            (self.end - epoch).days * 86400 + 86400 - self.tz_offset_s),
                           ("amount_fen >= ?", self.min_fen), ("amount_fen <= ?", self.max_fen)):
            if value is not None:
                conds.append(sql)
                params.append(value)
        return (" WHERE " + " AND ".join(conds) if conds else ""), params

    def query(self, **change: Any) -> dict[str, str]:
        """The query string of this search (for the pager and the export links)."""
        yuan = lambda fen: "" if fen is None else f"{fen // 100}.{fen % 100:02d}"  # noqa: E731
        out = {"phone": self.phone, "hall": self.hall, "kiosk": self.kiosk, "state": self.state,
               "from": self.start.isoformat() if self.start else "", "to": self.end.isoformat() if self.end else "",
               "min": yuan(self.min_fen), "max": yuan(self.max_fen), "page": str(self.page)}
        out.update({k: str(v) for k, v in change.items()})
        return {k: v for k, v in out.items() if v}


def search(db: Any, s: Search, size: int = PAGE) -> tuple[list[dict[str, Any]], bool]:
    """One page of matches, newest first, and whether there is another page."""
    where, params = s.where()
    rows = db.dicts(f"SELECT {COLUMNS} FROM txns{where} ORDER BY finished_at DESC, kiosk, txn LIMIT ? OFFSET ?",
                    (*params, size + 1, (s.page - 1) * size))
    return rows[:size], len(rows) > size


def totals(db: Any, s: Search) -> tuple[int, int]:
    """How many match and their amount in fen (for the line above the table)."""
    where, params = s.where()
    count, fen = db.one(f"SELECT COUNT(*), COALESCE(SUM(amount_fen), 0) FROM txns{where}", params)
    return int(count), int(fen)


def detail(db: Any, kiosk: str, txn: str) -> dict[str, Any] | None:
    """One transaction with its record as the kiosk sent it, its events, refund vouchers, review."""
    rows = db.dicts(f"SELECT {COLUMNS}, msg_seq, payload FROM txns WHERE kiosk = ? AND txn = ?", (kiosk, txn))
    if not rows:
        return None
    row = rows[0]
    try:
        row["payload"] = json.loads(row["payload"]) if row["payload"] else {}
    except ValueError:
        pass
    row["events"] = queries._decode(db.dicts(
        "SELECT msg_seq, kind, device, code, detail, at, received_at FROM events WHERE kiosk = ? AND txn = ?"
        " ORDER BY msg_seq", (kiosk, txn)))
    row["refunds"] = db.dicts("SELECT * FROM refunds WHERE kiosk = ? AND txn = ? ORDER BY created_at", (kiosk, txn))
    row["reviews"] = db.dicts("SELECT * FROM reviews WHERE kiosk = ? AND txn = ?", (kiosk, txn))
    return row


EXPORT_MAX = 100_000  # rows in one CSV/XLSX export, newest first (a year of a big hall is narrowed by dates)
EXPORT_COLUMNS = ["完成时间 finished", "营业厅 hall", "终端 kiosk", "交易号 txn", "业务 service", "手机号 phone",
                  "金额(分) amount_fen", "状态 state"]


def export(db: Any, s: Search, limit: int = EXPORT_MAX) -> dict[str, Any]:
    """Every match (up to `limit`, newest first) as a report-shaped table for hall.reports.to_csv/to_xlsx,
    which neutralise cells a spreadsheet would run as formulas."""
    import time

    where, params = s.where()
    rows = db.query(f"SELECT finished_at, hall, kiosk, txn, service, phone, amount_fen, state FROM txns{where}"
                    " ORDER BY finished_at DESC, kiosk, txn LIMIT ?", (*params, limit))
    return {"columns": EXPORT_COLUMNS,
            "rows": [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r[0])) if r[0] else "", *r[1:]] for r in rows]}

"""The six report families of the hall's back office, as SQL aggregates over the writer's rollups.

Each report is a function of a Database and a `Filter` (hall, kiosk, local date range) returning
`{"columns": [...], "rows": [[...]], "totals": {...}, "charts": {...}}`: the database sums the
rollup rows of the range (hall/rollups.py: one row per day and kiosk and service, hour or
bracket, kept by the writer as it stores each transaction), never the `txns` rows themselves, so
a year of a big hall answers in milliseconds (bench/reports.py). Python only reshapes the
aggregates (at most one row per day, hour, kiosk or bracket). Every value from a filter is a bound
parameter, never SQL text.

What counts: transactions in state `done` (the business the hall did), at the time the kiosk
finished them (`finished_at`), in the hall's local time (the rollups' offset; China: UTC+8 all
year). Money is integer fen. The families, as the seed's back office names them:

- `daily`     每日营业信息统计表: per day and kiosk, count and amount by service
- `profile`   时段/月情况分析: hour-of-day and day-of-month profiles
- `monthly`   月度业务对比: the month of the range's end against the month before, kiosks ranked
- `prepaid`   话费预存与欠费占比: prepaid top-ups against arrears (bill) payments
- `services`  各类型业务统计: by service type
- `brackets`  缴费区间分类统计: by payment amount bracket
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from . import rollups

FAMILIES = {
    "daily": ("每日营业信息统计表", "Daily business by kiosk"),
    "profile": ("时段/月情况分析", "Hour-of-day and day-of-month profile"),
    "monthly": ("月度业务对比", "Month against month, kiosks ranked"),
    "prepaid": ("话费预存与欠费占比", "Prepaid top-ups against arrears payments"),
    "services": ("各类型业务统计", "By service type"),
    "brackets": ("缴费区间分类统计", "By payment amount bracket"),
}
SERVICE_NAMES = {
    "topup": ("话费充值", "Top-up"), "bill_pay": ("缴费", "Bill payment"), "card_sale": ("售卡", "Card sale"),
    "plan_change": ("套餐变更", "Plan change"), "query": ("查询", "Query"), "loss_report": ("挂失", "Loss report"),
    "documents": ("打印", "Documents"), "new_number": ("开户", "New number"), "replace_sim": ("补卡", "SIM replacement"),
    "real_name": ("实名登记", "Real-name registration"),
}
PREPAID, ARREARS = rollups.PREPAID, rollups.ARREARS
BRACKETS = rollups.BRACKETS  # 缴费区间: lower bounds in fen
MAX_DAYS = 400  # a range longer than this is cut to its last MAX_DAYS days
PAGE_ROWS = 500  # the daily table's page
EPOCH = dt.date(1970, 1, 1)
default_offset = rollups.default_offset


@dataclass(frozen=True)
class Filter:
    start: dt.date  # first day, inclusive
    end: dt.date  # last day, inclusive
    hall: str | None = None
    kiosk: str | None = None

    @classmethod
    def parse(cls, query: Any, today: dt.date | None = None) -> "Filter":
        """From the page's query string: `from`, `to` (YYYY-MM-DD), `hall`, `kiosk`. Missing dates:
        the last 30 days; a bad date is ValueError; a range over MAX_DAYS keeps its last MAX_DAYS."""
        today = today or dt.date.today()
        end = dt.date.fromisoformat(query["to"]) if query.get("to") else today
        start = dt.date.fromisoformat(query["from"]) if query.get("from") else end - dt.timedelta(days=29)
        if start > end:
            start, end = end, start
        if (end - start).days >= MAX_DAYS:
            start = end - dt.timedelta(days=MAX_DAYS - 1)
        return cls(start, end, query.get("hall") or None, query.get("kiosk") or None)

    def where(self, start: dt.date | None = None, end: dt.date | None = None) -> tuple[str, list[Any]]:
        """The rollup rows of the filter's days (local day numbers, rollups.py), hall and kiosk."""
        sql = "day >= ? AND day <= ?"
        params: list[Any] = [_day(start or self.start), _day(end or self.end)]
        if self.hall:
            sql += " AND hall = ?"
            params.append(self.hall)
        if self.kiosk:
            sql += " AND kiosk = ?"
            params.append(self.kiosk)
        return sql, params

    def table(self, kind: str) -> str:
        """The rollup to read (hall/rollups.py): one kiosk's rows, or the halls' without kiosks."""
        return f"{'txn' if self.kiosk else 'hall'}_{kind}"

    def query(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "hall": self.hall or "",
                "kiosk": self.kiosk or ""}


def _day(day: dt.date) -> int:
    return (day - EPOCH).days


def _date(day: int) -> str:
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()


def service_label(service: str | None, lang: str = "zh") -> str:
    names = SERVICE_NAMES.get(service or "")
    return (names[0] if lang == "zh" else names[1]) if names else (service or "-")


def bracket_label(i: int) -> str:
    lo = BRACKETS[i] // 100
    return f"≥{lo}" if i == len(BRACKETS) - 1 else f"{lo}–{BRACKETS[i + 1] // 100}"


SUMS = "CAST(SUM(n) AS BIGINT), CAST(SUM(fen) AS BIGINT)"

# -- the families ------------------------------------------------------------------------------

def daily(db: Any, f: Filter, page: int = 1, page_rows: int = PAGE_ROWS) -> dict[str, Any]:
    """`page_rows`: the table's page (an export asks for every row at once)."""
    where, params = f.where()
    rows = db.query(f"SELECT day, kiosk, service, n, fen FROM txn_days WHERE {where}"  # the key's order: no sort
                    " ORDER BY day, hall, kiosk, service LIMIT ? OFFSET ?", [*params, page_rows + 1, (page - 1) * page_rows])
    per_day = db.query(f"SELECT day, service, {SUMS} FROM {f.table('days')} WHERE {where} GROUP BY 1, 2 ORDER BY 1",
                       params)
    days = sorted({d for d, *_ in per_day})
    services = sorted({s for _, s, *_ in per_day})
    amount = {(d, s): a for d, s, _, a in per_day}
    return {
        "columns": ["date", "kiosk", "service", "count", "amount_fen"],
        "rows": [[_date(d), k, s, n, a] for d, k, s, n, a in rows[:page_rows]],
        "more": len(rows) > page_rows, "page": page,
        "totals": {"count": sum(r[2] for r in per_day), "amount_fen": sum(r[3] for r in per_day)},
        "charts": {"days": [_date(d) for d in days],
                   "series": {s: [amount.get((d, s), 0) for d in days] for s in services}},
    }


def profile(db: Any, f: Filter) -> dict[str, Any]:
    where, params = f.where()
    hours = {h: (n, a) for h, n, a in db.query(f"SELECT hour, {SUMS} FROM {f.table('hours')} WHERE {where} GROUP BY 1", params)}
    by_dom: dict[int, list[int]] = {d: [0, 0] for d in range(1, 32)}
    for d, n, a in db.query(f"SELECT day, {SUMS} FROM {f.table('days')} WHERE {where} GROUP BY 1", params):
        dom = (EPOCH + dt.timedelta(days=int(d))).day  # one row per day, at most MAX_DAYS
        by_dom[dom][0] += n
        by_dom[dom][1] += a
    return {
        "columns": ["hour", "count", "amount_fen"],
        "rows": [[h, *hours.get(h, (0, 0))] for h in range(24)],
        "rows2": [[d, *by_dom[d]] for d in range(1, 32)],
        "columns2": ["day_of_month", "count", "amount_fen"],
        "totals": {"count": sum(n for n, _ in hours.values()), "amount_fen": sum(a for _, a in hours.values())},
        "charts": {},
    }


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def monthly(db: Any, f: Filter) -> dict[str, Any]:
    """The month holding the range's last day against the month before, per kiosk, ranked by this month."""
    this_start = _month_start(f.end)
    next_start = (this_start + dt.timedelta(days=32)).replace(day=1)
    last_start = (this_start - dt.timedelta(days=1)).replace(day=1)
    where, params = f.where(last_start, next_start - dt.timedelta(days=1))
    this = _day(this_start)
    rows = db.query(
        "SELECT kiosk,"
        " CAST(SUM(CASE WHEN day >= ? THEN n ELSE 0 END) AS BIGINT),"
        " CAST(SUM(CASE WHEN day >= ? THEN fen ELSE 0 END) AS BIGINT),"
        " CAST(SUM(CASE WHEN day < ? THEN n ELSE 0 END) AS BIGINT),"
        " CAST(SUM(CASE WHEN day < ? THEN fen ELSE 0 END) AS BIGINT)"
        f" FROM txn_days WHERE {where} GROUP BY kiosk", [this, this, this, this, *params])
    rows = sorted(rows, key=lambda r: (-r[2], r[0]))
    out = []
    for rank, (kiosk, n, a, ln, la) in enumerate(rows, 1):
        change = None if not la else round((a - la) * 100 / la, 1)
        out.append([rank, kiosk, n, a, ln, la, change])
    return {
        "columns": ["rank", "kiosk", "count", "amount_fen", "last_count", "last_amount_fen", "change_pct"],
        "rows": out, "months": [this_start.strftime("%Y-%m"), last_start.strftime("%Y-%m")],
        "totals": {"count": sum(r[2] for r in out), "amount_fen": sum(r[3] for r in out),
                   "last_count": sum(r[4] for r in out), "last_amount_fen": sum(r[5] for r in out)},
        "charts": {},
    }


def prepaid(db: Any, f: Filter) -> dict[str, Any]:
    where, params = f.where()
    per_day = db.query(f"SELECT day, service, {SUMS} FROM {f.table('days')} WHERE {where} AND service IN (?, ?)"
                       " GROUP BY 1, 2 ORDER BY 1", [*params, PREPAID, ARREARS])
    split = {s: [0, 0] for s in (PREPAID, ARREARS)}
    for _, s, n, a in per_day:  # one row per day and service
        split[s][0] += n
        split[s][1] += a
    total = sum(a for _, a in split.values())
    rows = [[s, *split[s], round(split[s][1] * 100 / total, 1) if total else 0.0] for s in (PREPAID, ARREARS)]
    days = sorted({d for d, *_ in per_day})
    amount = {(d, s): a for d, s, _, a in per_day}
    return {
        "columns": ["service", "count", "amount_fen", "share_pct"], "rows": rows,
        "totals": {"count": sum(r[1] for r in rows), "amount_fen": total},
        "charts": {"days": [_date(d) for d in days],
                   "series": {s: [amount.get((d, s), 0) for d in days] for s in (PREPAID, ARREARS)}},
    }


def services(db: Any, f: Filter) -> dict[str, Any]:
    where, params = f.where()
    rows = db.query(f"SELECT service, {SUMS} FROM {f.table('days')} WHERE {where} GROUP BY service ORDER BY 3 DESC, 1",
                    params)
    count, fen = sum(r[1] for r in rows), sum(r[2] for r in rows)
    return {
        "columns": ["service", "count", "amount_fen", "share_pct"],
        "rows": [[s, n, a, round(a * 100 / fen, 1) if fen else 0.0] for s, n, a in rows],
        "totals": {"count": count, "amount_fen": fen}, "charts": {},
    }


def brackets(db: Any, f: Filter) -> dict[str, Any]:
    """Payments only (top-ups and bills, amount > 0), counted by amount bracket."""
    where, params = f.where()
    found = {b: (n, a) for b, n, a in db.query(f"SELECT bracket, {SUMS} FROM {f.table('brackets')} WHERE {where} GROUP BY 1",
                                               params)}
    rows = [[bracket_label(i), *found.get(i, (0, 0))] for i in range(len(BRACKETS))]
    return {"columns": ["bracket_yuan", "count", "amount_fen"], "rows": rows,
            "totals": {"count": sum(r[1] for r in rows), "amount_fen": sum(r[2] for r in rows)}, "charts": {}}


RUN = {"daily": daily, "profile": profile, "monthly": monthly, "prepaid": prepaid, "services": services,
       "brackets": brackets}


EXPORT_ROWS = 1_000_000


def run(db: Any, family: str, f: Filter, page: int = 1, export: bool = False) -> dict[str, Any]:
    if family not in RUN:
        raise KeyError(family)
    if family == "daily":
        return daily(db, f, page, EXPORT_ROWS if export else PAGE_ROWS)
    return RUN[family](db, f)


def create_index(db: Any) -> None:
    """Transaction search finds its rows by finish time (halld's own index is on received_at)."""
    db.execute("CREATE INDEX IF NOT EXISTS txns_finished ON txns (finished_at)")


# -- export ------------------------------------------------------------------------------------

def safe_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (= + - @, or a tab/CR before one)
    starts with a ' instead; numbers stay numbers."""
    if isinstance(value, str) and value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def table(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    return report["columns"], [[safe_cell(c) for c in row] for row in report["rows"]]


def to_csv(report: dict[str, Any]) -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    columns, rows = table(report)
    writer.writerow(columns)
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM: Excel reads the Chinese as UTF-8


def to_xlsx(report: dict[str, Any], title: str) -> bytes:
    import io

    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    columns, rows = table(report)
    ws.append(columns)
    for row in rows:
        ws.append(row)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()

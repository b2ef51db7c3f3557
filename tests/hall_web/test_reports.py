"""The six report families (hall/reports.py) against sums written independently here, on SQLite and
PostgreSQL; CSV and XLSX exports read back (openpyxl) with formula injection neutralised."""
from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import random

import pytest
from openpyxl import load_workbook

from hall import reports, rollups
from hall.db import connect
from hall.reports import Filter

TZ = 8 * 3600  # the hall's local time: China
START = dt.date(2025, 3, 1)
EVIL = "=HYPERLINK(\"http://x\",\"y\")"
SERVICES = ["topup", "bill_pay", "card_sale", "plan_change", "query"]


def _rows(n: int = 3000, seed: int = 14) -> list[tuple]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        kiosk = rnd.choice(["K1", "K2", EVIL, "<script>x</script>"])
        hall = "H2" if kiosk == "K2" else "H1"
        day = START + dt.timedelta(days=rnd.randrange(75))
        local = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rnd.randrange(86400))
        ts = (local - dt.datetime(1970, 1, 1)).total_seconds() - TZ + rnd.random()
        service = rnd.choice(SERVICES)
        amount = None if service == "query" else rnd.choice([500, 1000, 2999, 3000, 5000, 10000, 19999, 50000, 88800])
        state = rnd.choice(["done"] * 8 + ["failed", "refunded", "review"])
        rows.append((hall, kiosk, f"T{i}", i, i, service, "13800138000", amount, state, ts, ts, "{}"))
    return rows


@pytest.fixture
def db(db_url):
    d = connect(db_url)
    d.executemany("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at,"
                  " received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _rows())
    with d.transaction():  # inserted here, not by the writer: the rollups by the writer's own SQL
        rollups.rebuild(d, TZ)
    yield d
    d.close()


def _local(ts: float) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=ts + TZ)


def _done(f: Filter) -> list[tuple]:
    """The reference: the generated rows, filtered in Python."""
    return [r for r in _rows() if r[8] == "done" and f.start <= _local(r[9]).date() <= f.end
            and (f.hall is None or r[0] == f.hall) and (f.kiosk is None or r[1] == f.kiosk)]


FILTERS = [Filter(START + dt.timedelta(days=10), START + dt.timedelta(days=49)),
           Filter(START, START + dt.timedelta(days=80), hall="H1"),
           Filter(START, START + dt.timedelta(days=40), kiosk="K2")]


@pytest.mark.parametrize("f", FILTERS, ids=["range", "hall", "kiosk"])
def test_every_family_s_totals_equal_sums_written_independently(db, f):
    ref = _done(f)
    assert len(ref) > 50
    count, fen = len(ref), sum(r[7] or 0 for r in ref)
    # one independent SQL too, with the engine's own calendar functions
    sql_day = ("to_char(to_timestamp(finished_at) AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD')" if db.postgres
               else "date(finished_at + 28800, 'unixepoch')")
    where = "state = 'done' AND " + sql_day + " BETWEEN ? AND ?" + (" AND hall = ?" if f.hall else "") + \
        (" AND kiosk = ?" if f.kiosk else "")
    args = [f.start.isoformat(), f.end.isoformat(), *([f.hall] if f.hall else []), *([f.kiosk] if f.kiosk else [])]
    assert db.one(f"SELECT COUNT(*), COALESCE(SUM(amount_fen), 0) FROM txns WHERE {where}", args) == (count, fen)
    per_day_sql = dict(((d, k, s), (n, a)) for d, k, s, n, a in db.query(
        f"SELECT {sql_day}, kiosk, service, COUNT(*), COALESCE(SUM(amount_fen), 0) FROM txns WHERE {where}"
        f" GROUP BY {sql_day}, kiosk, service", args))

    daily = reports.daily(db, f)
    rows, page = list(daily["rows"]), 1
    while reports.daily(db, f, page)["more"]:
        page += 1
        rows += reports.daily(db, f, page)["rows"]
    assert daily["totals"] == {"count": count, "amount_fen": fen}
    assert {(d, k, s): (n, a) for d, k, s, n, a in rows} == per_day_sql
    assert sum(sum(v) for v in daily["charts"]["series"].values()) == fen

    profile = reports.profile(db, f)
    hours = collections.Counter(_local(r[9]).hour for r in ref)
    assert [(h, n) for h, n, _ in profile["rows"]] == [(h, hours[h]) for h in range(24)]
    doms = collections.Counter(_local(r[9]).day for r in ref)
    assert [(d, n) for d, n, _ in profile["rows2"]] == [(d, doms[d]) for d in range(1, 32)]
    assert sum(a for *_, a in profile["rows"]) == sum(a for *_, a in profile["rows2"]) == fen

    services = reports.services(db, f)
    by = collections.defaultdict(lambda: [0, 0])
    for r in ref:
        by[r[5]][0] += 1
        by[r[5]][1] += r[7] or 0
    assert {s: [n, a] for s, n, a, _ in services["rows"]} == dict(by)
    assert services["totals"] == {"count": count, "amount_fen": fen}

    prepaid = reports.prepaid(db, f)
    assert {s: [n, a] for s, n, a, _ in prepaid["rows"]} == {s: by.get(s, [0, 0]) for s in ("topup", "bill_pay")}
    assert round(sum(p for *_, p in prepaid["rows"])) == 100

    brackets = reports.brackets(db, f)
    paid = [r[7] for r in ref if r[5] in ("topup", "bill_pay") and r[7]]
    expect = [sum(1 for a in paid if lo <= a < hi) for lo, hi in
              zip(reports.BRACKETS, [*reports.BRACKETS[1:], 10 ** 12])]
    assert [n for _, n, _ in brackets["rows"]] == expect and brackets["totals"]["amount_fen"] == sum(paid)

    monthly = reports.monthly(db, f)
    this_m, last_m = monthly["months"]
    month_ref = [r for r in _rows() if r[8] == "done" and (f.hall is None or r[0] == f.hall)
                 and (f.kiosk is None or r[1] == f.kiosk)]
    this = collections.Counter()
    last = collections.Counter()
    for r in month_ref:
        m = _local(r[9]).strftime("%Y-%m")
        (this if m == this_m else last if m == last_m else collections.Counter())[r[1]] += r[7] or 0
    assert {k: (a, la) for _, k, _, a, _, la, _ in monthly["rows"]} == \
        {k: (this[k], last[k]) for k in set(this) | set(last)}
    assert [row[3] for row in monthly["rows"]] == sorted([row[3] for row in monthly["rows"]], reverse=True)
    assert [row[0] for row in monthly["rows"]] == list(range(1, len(monthly["rows"]) + 1))


def test_filters_are_parameters_never_sql(db):
    f = Filter.parse({"from": "2025-03-01", "to": "2025-05-30", "kiosk": "K1' OR '1'='1"})
    for family in reports.RUN:
        assert reports.run(db, family, f)["totals"]["count"] == 0, family
    with pytest.raises(ValueError):
        Filter.parse({"from": "2025-03-01'; DROP TABLE txns; --"})
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 3000


def test_an_unbounded_range_is_cut_and_the_daily_table_is_paged(db):
    f = Filter.parse({"from": "1970-01-02", "to": "2025-05-30"})
    assert (f.end - f.start).days == reports.MAX_DAYS - 1
    page1 = reports.daily(db, f, 1)
    assert len(page1["rows"]) == reports.PAGE_ROWS and page1["more"]
    rest, page = [], 2
    while True:
        p = reports.daily(db, f, page)
        rest += p["rows"]
        if not p["more"]:
            break
        page += 1
    assert sum(r[3] for r in page1["rows"] + rest) == page1["totals"]["count"]


def test_csv_and_xlsx_exports_add_up_and_never_carry_a_formula(db, tmp_path):
    f = Filter(START, START + dt.timedelta(days=80))
    report = reports.run(db, "daily", f, export=True)
    assert not report["more"] and any(r[1] == EVIL for r in report["rows"])
    book = load_workbook(io.BytesIO(reports.to_xlsx(report, "每日营业信息统计表")))
    sheet = book.active
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert list(header) == report["columns"]
    assert sum(r[3] for r in rows) == report["totals"]["count"] and sum(r[4] for r in rows) == report["totals"]["amount_fen"]
    cells = [c for row in sheet.iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    assert not any(isinstance(c.value, str) and c.value[:1] in "=+-@" for c in cells)
    assert any(c.value == "'" + EVIL for c in cells)
    text = reports.to_csv(report).decode("utf-8-sig")
    parsed = list(csv.reader(io.StringIO(text)))
    assert sum(int(r[4]) for r in parsed[1:]) == report["totals"]["amount_fen"]
    assert not any(cell[:1] in "=+-@" for row in parsed for cell in row)
    json.dumps(report)  # the page embeds it as JSON

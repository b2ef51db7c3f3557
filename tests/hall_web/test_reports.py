"""The six report families (hall/reports.py) against sums written independently here, on SQLite and
PostgreSQL; CSV and XLSX exports read back (openpyxl) with formula injection neutralised."""
from __future__ import annotations

import collections
import contextlib
import csv
import datetime as dt
import io
import json
import os
import random
import time
import uuid

import pytest
from openpyxl import load_workbook

from hall import db as hall_db
from hall import reports, rollups
from hall.db import connect
from hall.reports import Filter
from tests.hall.kiosk_client import running_halld

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


def _insert_rows(d) -> None:
    d.executemany("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at,"
                  " received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _rows())


@pytest.fixture
def db(db_url):
    d = connect(db_url)
    _insert_rows(d)
    with d.transaction():  # inserted here, not by the writer: the rollups by the writer's own SQL
        rollups.rebuild(d, TZ)
    yield d
    d.close()


def _local(ts: float, tz: int = TZ) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=ts + tz)


def _done(f: Filter, tz: int = TZ) -> list[tuple]:
    """The reference: the generated rows, filtered in Python."""
    return [r for r in _rows() if r[8] == "done" and f.start <= _local(r[9], tz).date() <= f.end
            and (f.hall is None or r[0] == f.hall) and (f.kiosk is None or r[1] == f.kiosk)]


FILTERS = [Filter(START + dt.timedelta(days=10), START + dt.timedelta(days=49)),
           Filter(START, START + dt.timedelta(days=80), hall="H1"),
           Filter(START, START + dt.timedelta(days=40), kiosk="K2")]


@pytest.mark.parametrize("f", FILTERS, ids=["range", "hall", "kiosk"])
def test_every_family_s_totals_equal_sums_written_independently(db, f):
    _assert_families(db, f)


def _assert_families(db, f: Filter, tz: int = TZ) -> None:
    """Every family of `f` against the generated rows summed in Python and in the engine's own SQL
    over `txns`, in local time `tz` (seconds east of UTC: 28800 or 0)."""
    ref = _done(f, tz)
    assert len(ref) > 50
    count, fen = len(ref), sum(r[7] or 0 for r in ref)
    # one independent SQL too, with the engine's own calendar functions
    zone = {TZ: "Asia/Shanghai", 0: "UTC"}[tz]
    sql_day = (f"to_char(to_timestamp(finished_at) AT TIME ZONE '{zone}', 'YYYY-MM-DD')" if db.postgres
               else f"date(finished_at + {tz}, 'unixepoch')")
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
    hours = collections.Counter(_local(r[9], tz).hour for r in ref)
    assert [(h, n) for h, n, _ in profile["rows"]] == [(h, hours[h]) for h in range(24)]
    doms = collections.Counter(_local(r[9], tz).day for r in ref)
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
        m = _local(r[9], tz).strftime("%Y-%m")
        (this if m == this_m else last if m == last_m else collections.Counter())[r[1]] += r[7] or 0
    assert {k: (a, la) for _, k, _, a, _, la, _ in monthly["rows"]} == \
        {k: (this[k], last[k]) for k in set(this) | set(last)}
    assert [row[3] for row in monthly["rows"]] == sorted([row[3] for row in monthly["rows"]], reverse=True)
    assert [row[0] for row in monthly["rows"]] == list(range(1, len(monthly["rows"]) + 1))


@contextlib.contextmanager
def _local_time(zone: str):
    """This process's local time zone: `halld serve` keeps the rollups in it (rollups.prepare)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


async def _start_and_stop_halld(broker, db_url: str, zone: str) -> None:
    with _local_time(zone):
        async with running_halld(broker.port, db_url, worker=f"tz-{uuid.uuid4().hex[:6]}"):
            pass


async def test_halld_rebuilds_the_rollups_when_the_hall_s_time_zone_changes(db, db_url, broker):
    """The rollups kept in China's time; halld started in UTC rebuilds them in UTC (every family
    then equals the sums over txns by UTC days and hours, which it did not before), started in
    China's time again it rebuilds them back, and a start in the same zone rebuilds nothing."""
    f = FILTERS[0]
    assert rollups.offset(db) == TZ
    with pytest.raises(AssertionError):
        _assert_families(db, f, tz=0)
    await _start_and_stop_halld(broker, db_url, "UTC")
    assert rollups.offset(db) == 0
    _assert_families(db, f, tz=0)
    await _start_and_stop_halld(broker, db_url, "Asia/Shanghai")
    assert rollups.offset(db) == TZ
    for each in FILTERS:
        _assert_families(db, each)
    with db.transaction():
        assert rollups.prepare(db, TZ) is False


async def test_a_hall_database_from_before_the_rollups_is_upgraded_when_halld_starts(db_url, broker):
    """A database with the tables halld kept before the rollups (no rollup tables, no rollup_tz)
    and its transactions: halld's start builds the rollups from txns, and every family equals the
    sums written independently."""
    old = connect(db_url, schema=False)
    serial = "BIGSERIAL PRIMARY KEY" if old.postgres else "INTEGER PRIMARY KEY"
    with old.transaction():
        for statement in hall_db.SCHEMA.format(serial=serial).split(";"):
            if statement.strip():
                old.execute(statement)
        _insert_rows(old)
    assert not {"rollup_tz", *rollups.TABLES} & set(_tables(old))
    old.close()
    await _start_and_stop_halld(broker, db_url, "Asia/Shanghai")
    d = connect(db_url)
    try:
        assert rollups.offset(d) == TZ
        for f in FILTERS:
            _assert_families(d, f)
    finally:
        d.close()


def _tables(d) -> list[str]:
    if d.postgres:
        return [r[0] for r in d.query("SELECT table_name FROM information_schema.tables"
                                      " WHERE table_schema = current_schema()")]
    return [r[0] for r in d.query("SELECT name FROM sqlite_master WHERE type = 'table'")]


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

"""Report speed on a year of a big hall: every report family timed on PostgreSQL and on SQLite.

    python bench/reports.py [--kiosks 200] [--per-day 137] [--days 365]
                            [--sqlite-kiosks 20] [--repeat 5] [--pg-url postgresql://...] [--only pg,sqlite]

PostgreSQL: ``--kiosks`` kiosks x ``--days`` days x ``--per-day`` transactions (defaults: 10 million
rows, 200 kiosks in two halls, a year), bulk-loaded with COPY into `txns` (not through halld: an
ingest of 10 million rows would take the bench hours), then the report rollups built by the very
statements halld's writer runs for each batch (hall/rollups.py `rebuild`), as a database upgraded
to rollups gets them. SQLite: the same year for ``--sqlite-kiosks`` kiosks, loaded with
executemany. The cluster is a private one from tests/support/postgres.py (fsync off) or ``--pg-url``
(a fresh schema of its own).

Each family is timed through `hall.reports.run` (SQL + the Python reshaping the page gets),
``--repeat`` times, for: the whole year of every hall, one hall's year, one kiosk's year and the
last 30 days. Printed: the best and the worst of the repeats, beside the row counts of `txns` and
of the rollups. Goal: under 500 ms each on PostgreSQL. Never fails on the numbers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hall import reports, rollups  # noqa: E402
from hall.db import connect  # noqa: E402

TZ = 8 * 3600  # the hall's local time: China
FIRST_DAY = dt.date(2025, 1, 1)
# what a telecom hall's kiosks do: mostly top-ups and bills, in opening hours
SERVICES = ["topup"] * 45 + ["bill_pay"] * 25 + ["query"] * 15 + ["card_sale"] * 5 + ["plan_change"] * 5 + \
    ["documents"] * 5
STATES = ["done"] * 95 + ["failed"] * 3 + ["review", "refunded"]
TOPUP_FEN = [1000, 2000, 3000, 5000, 10000, 20000, 50000]
HOURS = [8, 9, 9, 10, 10, 10, 11, 11, 11, 12, 12, 13, 14, 14, 15, 15, 16, 16, 17, 17, 17, 18, 18, 19, 19, 20, 21]


def kiosks(n: int) -> list[tuple[str, str]]:
    """(hall, kiosk): three fifths in hall H-A, the rest in H-B."""
    return [("H-A" if k < n * 3 // 5 else "H-B", f"K-{k:03d}") for k in range(n)]


def rows(fleet: list[tuple[str, str]], days: int, per_day: int, seed: int = 14):
    """Tuples in txns' column order (the payload kept short: no report reads it)."""
    rnd = random.Random(seed)
    epoch = dt.date(1970, 1, 1)
    for d in range(days):
        midnight = ((FIRST_DAY + dt.timedelta(days=d)) - epoch).days * 86400 - TZ
        for hall, kiosk in fleet:
            for i in range(per_day):
                service = rnd.choice(SERVICES)
                fen = rnd.choice(TOPUP_FEN) if service == "topup" else rnd.randrange(500, 40000) \
                    if service == "bill_pay" else 2500 if service == "card_sale" else None
                at = midnight + rnd.choice(HOURS) * 3600 + rnd.randrange(3600)
                yield (hall, kiosk, f"{kiosk}-{d}-{i}", i, d * per_day + i + 1, service, "13800138000", fen,
                       rnd.choice(STATES), float(at), float(at + 2), "{}")


def _copy_text(value) -> str:
    return "\\N" if value is None else str(value)


def load_postgres(url: str, fleet, days: int, per_day: int) -> tuple[float, float]:
    import psycopg

    db = connect(url)  # the schema, as halld makes it
    db.close()
    start = time.perf_counter()
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state,"
                                " finished_at, received_at, payload) FROM STDIN") as copy:
            buf = io.StringIO()
            for n, row in enumerate(rows(fleet, days, per_day), 1):
                buf.write("\t".join(map(_copy_text, row)) + "\n")
                if n % 50000 == 0:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    db = connect(url, schema=False)
    with db.transaction():
        rollups.rebuild(db, TZ)
    for table in ("txns", *rollups.TABLES):
        db.execute(f"VACUUM ANALYZE {table}")  # what autovacuum does on a live database
    db.close()
    return loaded, time.perf_counter() - start


def load_sqlite(path: str, fleet, days: int, per_day: int) -> tuple[float, float]:
    db = connect(path)
    db.close()
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    it = rows(fleet, days, per_day)
    while True:
        chunk = [r for _, r in zip(range(100000), it)]
        if not chunk:
            break
        conn.executemany("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state,"
                         " finished_at, received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
        conn.commit()
    conn.close()
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    db = connect(path, schema=False)
    with db.transaction():
        rollups.rebuild(db, TZ)
    db.execute("ANALYZE")
    db.close()
    return loaded, time.perf_counter() - start


def filters(fleet, days: int) -> dict[str, reports.Filter]:
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    return {
        "year, all halls": reports.Filter(FIRST_DAY, last),
        "year, hall H-B": reports.Filter(FIRST_DAY, last, hall="H-B"),
        f"year, kiosk {fleet[-1][1]}": reports.Filter(FIRST_DAY, last, kiosk=fleet[-1][1]),
        "last 30 days": reports.Filter(last - dt.timedelta(days=29), last),
    }


def time_reports(url: str, label: str, fleet, days: int, repeat: int) -> None:
    db = connect(url, schema=False)
    counts = {t: db.one(f"SELECT COUNT(*) FROM {t}")[0] for t in ("txns", *rollups.TABLES)}
    print(f"  rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    worst = 0.0
    for name, f in filters(fleet, days).items():
        cells = []
        for family in reports.FAMILIES:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                report = reports.run(db, family, f)
                times.append((time.perf_counter() - t0) * 1000)
            worst = max(worst, max(times))
            cells.append(f"{family} {min(times):5.0f}/{max(times):4.0f}")
        count = reports.run(db, "services", f)["totals"]["count"]
        print(f"  {name:20s} ({count:>10,} done txns): " + "  ".join(cells))
    print(f"  {label}: the slowest report took {worst:.0f} ms (goal < 500 ms on PostgreSQL)")
    db.close()


def fresh_schema(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"


def main(args: argparse.Namespace) -> None:
    print("report times in ms, best/worst of", args.repeat, "runs of hall.reports.run (SQL + reshaping)")
    if "pg" in args.only:
        fleet = kiosks(args.kiosks)
        n = args.kiosks * args.days * args.per_day
        print(f"PostgreSQL: {args.kiosks} kiosks x {args.days} days x {args.per_day} txns = {n:,} rows")
        pg = stop = None
        if args.pg_url:
            url = fresh_schema(args.pg_url, "bench_reports")
        else:
            from tests.support.postgres import start_postgres

            pg = start_postgres()
            url, stop = pg.new_database(), pg.stop
        try:
            loaded, built = load_postgres(url, fleet, args.days, args.per_day)
            print(f"  COPY {loaded:.0f} s ({n / loaded:,.0f} rows/s); rollups by the writer's SQL {built:.0f} s")
            time_reports(url, "PostgreSQL", fleet, args.days, args.repeat)
        finally:
            if stop:
                stop()
    if "sqlite" in args.only:
        fleet = kiosks(args.sqlite_kiosks)
        n = args.sqlite_kiosks * args.days * args.per_day
        print(f"SQLite: {args.sqlite_kiosks} kiosks x {args.days} days x {args.per_day} txns = {n:,} rows")
        tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
        try:
            path = str(tmp / "hall.db")
            loaded, built = load_sqlite(path, fleet, args.days, args.per_day)
            print(f"  executemany {loaded:.0f} s ({n / loaded:,.0f} rows/s); rollups by the writer's SQL {built:.0f} s")
            time_reports(path, "SQLite", fleet, args.days, args.repeat)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=int, default=200)
    parser.add_argument("--per-day", type=int, default=137, help="transactions per kiosk and day")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--sqlite-kiosks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-url", help="a PostgreSQL server (a fresh schema is made) instead of a private cluster")
    parser.add_argument("--only", default="pg,sqlite")
    main(parser.parse_args())

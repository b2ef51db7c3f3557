"""Report rollups: per local day, the counts and sums the six reports read, kept by the writer.

Why: a year of a big hall is millions of `txns` rows; a report that grouped them on every request
took seconds. The writer adds each newly stored `done` transaction to three small tables in the
same transaction as the row itself (hall/store.py), so a report reads at most one row per
(day, kiosk, service | hour | bracket) and an acked row is always counted exactly once:

- `txn_days`     (day, hall, kiosk, service)  count, amount
- `txn_hours`    (day, hall, kiosk, hour)     count, amount   (hour of the local day, 0-23)
- `txn_brackets` (day, hall, kiosk, bracket)  count, amount   (top-ups and bill payments over 0 fen)

`day` is the local day number (days since 1970-01-01) in the hall's time, `rollup_tz`'s one
offset in seconds (China: +28800 all year, no daylight saving); `halld serve` sets it to its own
local offset at start and rebuilds the rollups when it changed (`prepare`). A database without
rollups (made before them) gets them built from its `txns` the same way.

Each has a twin without the kiosk, `hall_days`, `hall_hours`, `hall_brackets` (day, hall, key):
a report of a whole hall (or of all halls) reads those, 200 times fewer rows on a hall of 200
kiosks; a report of one kiosk, and the per-kiosk tables of `daily` and `monthly`, read the `txn_*`.

The same SQL does the work for the writer and for a rebuild alike (`_add`): it sums the chosen
`txns` rows once per every key of every table (`_grain`), then adds those sums to each table
(`ON CONFLICT ... DO UPDATE SET n = n + ...`). The writer gives it the rows its INSERT stored
(never one skipped as a duplicate: `insert_txns`); `rebuild` gives it the whole `txns` table.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

PREPAID, ARREARS = "topup", "bill_pay"
# 缴费区间: lower bounds in fen; a payment falls in the last bracket whose bound it reaches
BRACKETS = [0, 1000, 3000, 5000, 10000, 20000, 50000]
KINDS = {  # kind: its key column and type
    "days": ("service", "TEXT"), "hours": ("hour", "BIGINT"), "brackets": ("bracket", "BIGINT")}
TABLES = tuple(f"{scope}_{kind}" for scope in ("txn", "hall") for kind in KINDS)


def _schema() -> str:
    out = ["CREATE TABLE IF NOT EXISTS rollup_tz (one BIGINT PRIMARY KEY, tz_offset_s BIGINT NOT NULL)"]
    for kind, (key, kind_type) in KINDS.items():
        out += [f"CREATE TABLE IF NOT EXISTS txn_{kind} (day BIGINT NOT NULL, hall TEXT NOT NULL, kiosk TEXT NOT NULL,"
                f" {key} {kind_type} NOT NULL, n BIGINT NOT NULL, fen BIGINT NOT NULL, PRIMARY KEY (day, hall, kiosk, {key}))",
                f"CREATE INDEX IF NOT EXISTS txn_{kind}_kiosk ON txn_{kind} (kiosk, day)",
                f"CREATE TABLE IF NOT EXISTS hall_{kind} (day BIGINT NOT NULL, hall TEXT NOT NULL,"
                f" {key} {kind_type} NOT NULL, n BIGINT NOT NULL, fen BIGINT NOT NULL, PRIMARY KEY (day, hall, {key}))"]
    return ";\n".join(out)


SCHEMA = _schema()


def default_offset() -> int:
    """This machine's offset from UTC now, in seconds (TZ=Asia/Shanghai: 28800)."""
    return time.localtime().tm_gmtoff


def _exprs(db: Any) -> dict[str, str]:
    """Local day and hour of a `txns` row `t` (joined with `rollup_tz` as `z`), the same on both
    engines: finished_at > 0, so SQLite's truncating casts are floors."""
    if db.postgres:
        local = "FLOOR(t.finished_at + z.tz_offset_s)"
        return {"day": f"CAST(FLOOR({local} / 86400) AS BIGINT)", "hour": f"MOD(CAST({local} AS BIGINT), 86400) / 3600"}
    return {"day": "CAST(t.finished_at + z.tz_offset_s AS INTEGER) / 86400",
            "hour": "CAST(t.finished_at + z.tz_offset_s AS INTEGER) % 86400 / 3600"}


_BRACKET = "CASE " + " ".join(f"WHEN t.amount_fen >= {lo} THEN {i}" for i, lo in reversed(list(enumerate(BRACKETS)))) + " END"
_GRAIN = "day, hall, kiosk, service, hour, bracket"  # every key of every rollup


def _grain(db: Any, source: str) -> str:
    """The `done` rows of `source` (`txns`, or the rows a batch stored) summed per every key of every
    rollup: each row's local day, hour and bracket computed once, where the six statements each
    computed them again (on PostgreSQL as much CPU as storing the rows). A row's bracket is NULL
    unless it is a top-up or bill payment over 0 fen."""
    ex = _exprs(db)
    return (f"SELECT {ex['day']}, COALESCE(t.hall, ''), t.kiosk, COALESCE(t.service, ''), {ex['hour']},"
            f" CASE WHEN t.service IN ('{PREPAID}', '{ARREARS}') AND t.amount_fen > 0 THEN {_BRACKET} END,"
            f" COUNT(*), SUM(COALESCE(t.amount_fen, 0)) FROM {source} t CROSS JOIN rollup_tz z"
            " WHERE t.state = 'done' AND t.finished_at IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6")


def _adds(grain: str) -> list[str]:
    """The six statements adding `grain`'s sums (a relation of `_GRAIN`, n, fen) to the rollups.
    Rows go in key order (ORDER BY): two PostgreSQL workers adding to the same hall_* rows then
    lock them in the same order, and wait for each other instead of deadlocking."""
    out = []
    for scope, kiosk in (("txn", ", kiosk"), ("hall", "")):
        for kind, (key, _) in KINDS.items():
            table, cols = f"{scope}_{kind}", f"day, hall{kiosk}, {key}"
            where = "bracket IS NOT NULL" if key == "bracket" else "true"  # true: SQLite's upsert needs a WHERE
            out.append(
                f"INSERT INTO {table} ({cols}, n, fen) SELECT {cols}, CAST(SUM(n) AS BIGINT), CAST(SUM(fen) AS BIGINT)"
                f" FROM {grain} WHERE {where} GROUP BY {cols} ORDER BY {cols}"
                f" ON CONFLICT ({cols}) DO UPDATE SET n = {table}.n + excluded.n, fen = {table}.fen + excluded.fen")
    return out


def _add(db: Any, source: str, new: str = "", params: Sequence[Any] = ()) -> None:
    """Add the `done` rows of `source` to the rollups. On PostgreSQL one statement, `new` (``new AS
    (INSERT ... RETURNING ...)``, the batch's INSERT, with its ``params``) first among its CTEs, the grain, then the
    six INSERTs as data-modifying CTEs. On SQLite (no such CTEs) the grain goes into the
    connection's temporary table `rollup_grain` first."""
    if db.postgres:
        *first, last = _adds("g")
        ctes = [new] if new else []
        ctes += [f"g ({_GRAIN}, n, fen) AS ({_grain(db, source)})", *(f"r{i} AS ({sql})" for i, sql in enumerate(first))]
        db.execute(f"WITH {', '.join(ctes)} {last}", params)
        return
    db.execute(f"CREATE TEMP TABLE IF NOT EXISTS rollup_grain ({_GRAIN}, n, fen)")
    db.execute("DELETE FROM rollup_grain")
    db.execute(f"INSERT INTO rollup_grain {_grain(db, source)}")
    for sql in _adds("rollup_grain"):
        db.execute(sql)


COLUMNS = "hall, kiosk, service, amount_fen, state, finished_at"  # what the statements read of a txns row


def insert_txns(db: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """``statements``: ``INSERT INTO txns ... ON CONFLICT DO NOTHING`` and their parameters; run
    them and add to the rollups the rows they stored (not those ON CONFLICT skipped), inside the
    writer's transaction. On PostgreSQL one statement a batch: the INSERT is the CTE `new` whose
    RETURNING rows the rollups read (no rows back to the client). On SQLite the stored rows go into
    the connection's temporary table `rollup_new` from the INSERTs' RETURNING rows."""
    if db.postgres:
        for insert, params in statements:
            _add(db, "new", f"new AS ({insert} RETURNING {COLUMNS})", params)
        return
    db.execute(f"CREATE TEMP TABLE IF NOT EXISTS rollup_new ({_NEW})")
    db.execute("DELETE FROM rollup_new")  # a second batch in one transaction counts its own rows only
    for insert, params in statements:
        db.executemany(f"INSERT INTO rollup_new ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                       [r for r in db.query(f"{insert} RETURNING {COLUMNS}", params) if r[4] == "done"])
    _add(db, "rollup_new")


_NEW = "hall TEXT, kiosk TEXT, service TEXT, amount_fen BIGINT, state TEXT, finished_at DOUBLE PRECISION"


def rebuild(db: Any, tz_offset_s: int) -> None:
    """Every rollup again from `txns`, in `tz_offset_s`, inside the caller's write transaction
    (on PostgreSQL `txns` is locked against sibling writers meanwhile)."""
    if db.postgres:
        db.execute("LOCK TABLE txns IN SHARE MODE")
    for table in TABLES:
        db.execute(f"DELETE FROM {table}")
    db.execute("DELETE FROM rollup_tz")
    db.execute("INSERT INTO rollup_tz (one, tz_offset_s) VALUES (1, ?)", (tz_offset_s,))
    _add(db, "txns")


def create_schema(db: Any, tz_offset_s: int | None = None) -> None:
    """The tables, inside db.create_schema's transaction; a database without `rollup_tz` yet (new,
    or made before the rollups) gets its rollups built from what `txns` holds."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    kept = db.one("SELECT tz_offset_s FROM rollup_tz")
    if kept is None:
        rebuild(db, default_offset() if tz_offset_s is None else tz_offset_s)
    elif db.one("SELECT 1 FROM hall_days LIMIT 1") is None and db.one("SELECT 1 FROM txn_days LIMIT 1") is not None:
        rebuild(db, kept[0])  # made before the hall_* tables


def offset(db: Any) -> int:
    return db.one("SELECT tz_offset_s FROM rollup_tz")[0]


def prepare(db: Any, tz_offset_s: int | None = None) -> bool:
    """At `halld serve`'s start: rollups in this machine's local time (rebuilt if they were kept in
    another offset). Returns whether it rebuilt."""
    want = default_offset() if tz_offset_s is None else tz_offset_s
    if offset(db) == want:
        return False
    rebuild(db, want)
    return True

"""交易对账 / Reconciliation of one business day: what the kiosks recorded against what the BOSS did.

The BOSS's day statement (hall.bossdesk `day_statement`) lists every money operation it applied
that day with the idempotency key the kiosk sent (`{txn}:credit` for a top-up, `{txn}:pay` for a
bill payment, transactions/flows) and every reversal. The kiosks' side is the hall's `txns` rows of
those services finished that day: what the kiosk says reached the BOSS (its ledger's `applied`
when the transaction is done, nothing when it refunded or failed, unknown when it is held for
review), less what the hall itself reversed. Matched on the key, per transaction:

- `kiosk_only`: the kiosk says it credited, the BOSS has nothing (the customer may be short);
- `boss_only`: the BOSS applied money the kiosk refunded or never reported (the hall is short);
- `amount_differs`: both, not the same amount;
- `review`: the kiosk could not tell (held for review); the statement says what happened.

Before an item is called a mismatch it gets a second look across midnight: a kiosk-only key is
asked of the BOSS (`op_status`), a BOSS-only key's transaction is looked up by its kiosk and id
whatever its day. Days are the BOSS's business days (China Standard Time, BOSS_TZ_S), not the
hall's. The operator records a resolution for each mismatch; both the run and each resolution go
to the audit log. A run again keeps the resolved items and replaces the open ones.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

from . import auth, reversals

BOSS_TZ_S = 8 * 3600
KEY_SUFFIX = {"topup": "credit", "bill_pay": "pay"}  # the services that move money at the BOSS
RESOLUTIONS = {
    "refund_customer": ("已退款给顾客", "refunded to the customer"),
    "credit_customer": ("已手工补充值", "credited by hand"),
    "boss_corrected": ("BOSS已更正", "corrected at the BOSS"),
    "kiosk_record_late": ("终端记录迟到", "the kiosk's record came late"),
    "written_off": ("核销", "written off"),
    "other": ("其他", "other"),
}
NOTE_MAX = 300
PAGE = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS recon_runs (
    date TEXT PRIMARY KEY, at DOUBLE PRECISION, who TEXT, boss_count BIGINT, boss_fen BIGINT, kiosk_count BIGINT,
    kiosk_fen BIGINT, matched BIGINT, mismatches BIGINT);
CREATE TABLE IF NOT EXISTS recon_items (
    id {serial}, date TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, hall TEXT, kiosk TEXT, txn TEXT,
    kiosk_state TEXT, kiosk_fen BIGINT, boss_fen BIGINT, boss_ref TEXT, found_at DOUBLE PRECISION,
    resolution TEXT, note TEXT, resolved_by TEXT, resolved_at DOUBLE PRECISION, UNIQUE (date, key));
"""


def create_schema(db: Any) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    for statement in SCHEMA.format(serial=serial).split(";"):
        if statement.strip():
            db.execute(statement)


def day_bounds(date: dt.date) -> tuple[float, float]:
    start = (date - dt.date(1970, 1, 1)).days * 86400 - BOSS_TZ_S
    return start, start + 86400


def boss_day(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts + BOSS_TZ_S, dt.timezone.utc).date()


@dataclass
class Side:
    hall: str | None
    kiosk: str | None
    txn: str
    state: str | None
    fen: int | None  # None: unknown (held for review)
    ref: str | None = None


def _kiosk_fen(state: str | None, payload: Any, amount_fen: Any) -> int | None:
    if state == "review":
        return None
    if state != "done":
        return 0
    try:
        body = json.loads(payload) if isinstance(payload, str) else {}
    except ValueError:
        body = {}
    applied = body.get("applied") if isinstance(body, dict) else None
    return applied if type(applied) is int else int(amount_fen or 0)


def _side(row: dict[str, Any]) -> tuple[str, Side]:
    key = f"{row['txn']}:{KEY_SUFFIX[row['service']]}"
    return key, Side(row["hall"], row["kiosk"], row["txn"], row["state"],
                     _kiosk_fen(row["state"], row["payload"], row["amount_fen"]))


def kiosk_side(db: Any, date: dt.date) -> dict[str, Side]:
    """The kiosks' money transactions finished on `date`, keyed as the BOSS knows them, net of the
    hall's own reversals."""
    start, end = day_bounds(date)
    rows = db.dicts("SELECT hall, kiosk, txn, service, state, amount_fen, payload FROM txns"
                    " WHERE service IN (?, ?) AND finished_at >= ? AND finished_at < ?", (*KEY_SUFFIX, start, end))
    out = dict(_side(r) for r in rows)
    for key, fen in reversals.reversed_fen(db, list(out)).items():
        if out[key].fen:
            out[key].fen -= fen
    return out


def kiosk_txn(db: Any, key: str) -> Side | None:
    """One transaction of a BOSS key, whatever its day (`{kiosk}-{boot}-{n}:{suffix}`: the kiosk is in the id)."""
    txn = key.rsplit(":", 1)[0]
    kiosk = txn.rsplit("-", 2)[0]
    rows = db.dicts("SELECT hall, kiosk, txn, service, state, amount_fen, payload FROM txns WHERE kiosk = ? AND txn = ?"
                    " AND service IN (?, ?)", (kiosk, txn, *KEY_SUFFIX))
    if not rows:
        return None
    k, side = _side(rows[0])
    if k != key:
        return None
    back = reversals.reversed_fen(db, [key]).get(key)
    if back and side.fen:
        side.fen -= back
    return side


def boss_side(statement: dict[str, Any]) -> dict[str, Side]:
    out: dict[str, Side] = {}
    for op in statement.get("ops") or []:
        key = op.get("of") if op.get("op") == "reverse_credit" else op.get("key")
        if not isinstance(key, str) or type(op.get("fen")) is not int:
            continue
        side = out.setdefault(key, Side(None, None, key.rsplit(":", 1)[0], None, 0))
        side.fen = (side.fen or 0) + op["fen"]
        if op.get("op") != "reverse_credit":
            side.ref = op.get("boss_ref")
    return out


def compare(kiosk: dict[str, Side], boss: dict[str, Side]) -> tuple[list[dict[str, Any]], int]:
    """Mismatch candidates (before the second look) and how many keys matched."""
    items, matched = [], 0
    for key in sorted(set(kiosk) | set(boss)):
        k, b = kiosk.get(key), boss.get(key)
        boss_fen = b.fen if b else 0
        if k is not None and k.fen is None:
            kind = "review"
        elif k is not None and (k.fen or 0) == boss_fen:
            matched += 1 if boss_fen else 0
            continue
        elif k is None and boss_fen == 0:
            continue  # a credit and its reversal: nothing moved
        elif k is None:
            kind = "boss_only"
        elif boss_fen == 0:
            kind = "kiosk_only"
        else:
            kind = "boss_only" if k.fen == 0 else "amount_differs"
        items.append({"key": key, "kind": kind, "hall": k.hall if k else None, "kiosk": k.kiosk if k else None,
                      "txn": (k or b).txn, "kiosk_state": k.state if k else None, "kiosk_fen": k.fen if k else None,
                      "boss_fen": boss_fen, "boss_ref": b.ref if b else None})
    return items, matched


def store(db: Any, date: dt.date, items: list[dict[str, Any]], summary: dict[str, Any], who: str) -> None:
    """The run's result: open items replaced, resolved ones kept; the run and its audit entry."""
    now, day = time.time(), date.isoformat()
    before = db.dicts("SELECT * FROM recon_runs WHERE date = ?", (day,))
    db.execute("DELETE FROM recon_items WHERE date = ? AND resolution IS NULL", (day,))
    db.executemany("INSERT INTO recon_items (date, key, kind, hall, kiosk, txn, kiosk_state, kiosk_fen, boss_fen,"
                   " boss_ref, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (date, key) DO NOTHING",
                   [(day, i["key"], i["kind"], i["hall"], i["kiosk"], i["txn"], i["kiosk_state"], i["kiosk_fen"],
                     i["boss_fen"], i["boss_ref"], now) for i in items])
    db.execute("DELETE FROM recon_runs WHERE date = ?", (day,))
    db.execute("INSERT INTO recon_runs (date, at, who, boss_count, boss_fen, kiosk_count, kiosk_fen, matched,"
               " mismatches) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (day, now, who, summary["boss_count"], summary["boss_fen"], summary["kiosk_count"],
                summary["kiosk_fen"], summary["matched"], len(items)))
    auth.audit(db, who, "recon.run", day, before[0] if before else None, {**summary, "mismatches": len(items)}, now)


async def run(read: Any, write: Any, desk: Any, date: dt.date, who: str) -> dict[str, Any]:
    """Fetch the BOSS's statement, compare, look twice, store. BossError propagates (nothing stored)."""
    statement = await desk.call("day_statement", date=date.isoformat())
    kiosk = await read(kiosk_side, date)
    boss = boss_side(statement)
    candidates, matched = compare(kiosk, boss)
    items = []
    for item in candidates:
        if item["kind"] == "kiosk_only":  # applied at the BOSS on another day?
            status = await desk.call("op_status", key=item["key"])
            fen = (status.get("result") or {}).get("fen") if status.get("found") else None
            if fen == item["kiosk_fen"]:
                matched += 1
                continue
        elif item["kind"] == "boss_only" and item["kiosk"] is None:  # reported on another day?
            other = await read(kiosk_txn, item["key"])
            if other is not None:
                item.update(hall=other.hall, kiosk=other.kiosk, kiosk_state=other.state, kiosk_fen=other.fen)
                if other.fen == item["boss_fen"]:
                    matched += 1
                    continue
                if other.fen is None:
                    item["kind"] = "review"
                elif other.fen:
                    item["kind"] = "amount_differs"
            else:
                item["kiosk_state"] = "not_reported"
        items.append(item)
    ops = [o for o in statement.get("ops") or [] if o.get("op") != "reverse_credit"]
    summary = {"boss_count": len(ops), "boss_fen": int(statement.get("total_fen") or 0),
               "kiosk_count": sum(1 for s in kiosk.values() if s.fen), "kiosk_fen": sum(s.fen or 0 for s in kiosk.values()),
               "matched": matched}
    await write(store, date, items, summary, who)
    return {**summary, "mismatches": len(items)}


def result(db: Any, date: dt.date, page: int = 1, size: int = PAGE) -> dict[str, Any]:
    day = date.isoformat()
    runs = db.dicts("SELECT * FROM recon_runs WHERE date = ?", (day,))
    items = db.dicts("SELECT * FROM recon_items WHERE date = ? ORDER BY resolution IS NOT NULL, kind, key"
                     " LIMIT ? OFFSET ?", (day, size + 1, (page - 1) * size))
    return {"run": runs[0] if runs else None, "items": items[:size], "more": len(items) > size}


def resolve(db: Any, item_id: int, resolution: str, note: str, who: str) -> bool:
    """Record what was done about one mismatch (once); False if it is not open."""
    if resolution not in RESOLUTIONS:
        raise ValueError("unknown resolution")
    rows = db.dicts(f"SELECT * FROM recon_items WHERE id = ?{db.for_update}", (item_id,))
    if not rows or rows[0]["resolution"] is not None:
        return False
    now = time.time()
    db.execute("UPDATE recon_items SET resolution = ?, note = ?, resolved_by = ?, resolved_at = ? WHERE id = ?",
               (resolution, note[:NOTE_MAX], who, now, item_id))
    auth.audit(db, who, "recon.resolve", f"{rows[0]['date']}/{rows[0]['key']}", rows[0],
               {"resolution": resolution, "note": note[:NOTE_MAX]}, now)
    return True

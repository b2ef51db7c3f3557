"""What the journal holds, as small functions of a connection: pass them to ``Journal.write``/``read``.

Each write function is one atomic piece of bookkeeping: an intent; an outcome together with
the money it moved and the counters it changed; a finish with its sequence number and its
outbox row. Nothing here does I/O besides SQLite, so the writer thread can run them.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any, Iterable

from .ledger import Ledger, LedgerUnbalanced

# (kind, fen, source) tuples; source names the device or the reason, e.g. "bill:bv", "voucher".
Money = tuple[str, int, str]
# (kind, key, delta) tuples for counters.
Count = tuple[str, str, int]

FINAL_STATES = ("done", "refunded", "declined", "cancelled", "failed", "review")
_CLAIM_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a counter


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def new_txn(conn: sqlite3.Connection, kiosk: str, boot: int, service: str, phone: str | None,
            flow_state: str, now: float, data: dict | None = None) -> str:
    n = conn.execute("SELECT COUNT(*) FROM transactions WHERE boot = ?", (boot,)).fetchone()[0] + 1
    txn = f"{kiosk}-{boot}-{n}"
    conn.execute(
        "INSERT INTO transactions(id, boot, service, phone, flow_state, data, opened_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (txn, boot, service, phone, flow_state, _j(data or {}), now, now))
    return txn


def set_flow_state(conn: sqlite3.Connection, txn: str, flow_state: str, now: float,
                   data: dict | None = None, phone: str | None = None, amount_fen: int | None = None) -> None:
    row = conn.execute("SELECT data, state FROM transactions WHERE id = ?", (txn,)).fetchone()
    if row is None or row["state"] != "open":
        raise ValueError(f"transaction {txn} is not open")
    merged = {**json.loads(row["data"]), **(data or {})}
    conn.execute("UPDATE transactions SET flow_state = ?, data = ?, updated_at = ?,"
                 " phone = COALESCE(?, phone), amount_fen = COALESCE(?, amount_fen) WHERE id = ?",
                 (flow_state, _j(merged), now, phone, amount_fen, txn))


def add_money(conn: sqlite3.Connection, txn: str, money: Iterable[Money], now: float,
              step: int | None = None, counts: Iterable[Count] = ()) -> None:
    for kind, fen, source in money:
        if fen:
            conn.execute("INSERT INTO money(txn, kind, fen, source, step, at) VALUES (?, ?, ?, ?, ?, ?)",
                         (txn, kind, fen, source, step, now))
    for kind, key, delta in counts:
        if kind == "acceptor_seq":  # not a count: the device event counter of the last credit journalled
            set_counter(conn, kind, key, delta, now)
        else:
            adjust_counter(conn, kind, key, delta, now)


def open_intent(conn: sqlite3.Connection, txn: str, kind: str, args: dict, now: float,
                flow_state: str | None = None) -> int:
    """The write-ahead record of a side effect; committed (fsync'd) before the effect starts."""
    if flow_state is not None:
        set_flow_state(conn, txn, flow_state, now)
    cur = conn.execute("INSERT INTO steps(txn, kind, args, opened_at) VALUES (?, ?, ?, ?)",
                       (txn, kind, _j(args), now))
    return int(cur.lastrowid)


def close_intent(conn: sqlite3.Connection, step: int, outcome: dict, now: float, *,
                 money: Iterable[Money] = (), counts: Iterable[Count] = (), resolved_by: str = "flow") -> None:
    """The outcome, with the money it moved and the counters it changed, in one transaction."""
    row = conn.execute("SELECT txn, closed_at FROM steps WHERE id = ?", (step,)).fetchone()
    if row is None or row["closed_at"] is not None:
        raise ValueError(f"step {step} is not open")
    conn.execute("UPDATE steps SET outcome = ?, closed_at = ?, resolved_by = ? WHERE id = ?",
                 (_j(outcome), now, resolved_by, step))
    add_money(conn, row["txn"], money, now, step=step, counts=counts)


def reresolve(conn: sqlite3.Connection, step: int, outcome: dict, now: float, *,
              money: Iterable[Money] = (), counts: Iterable[Count] = (), resolved_by: str = "recovery") -> None:
    """A closed step whose outcome was unknown is known now (the BOSS found the key, the hopper's
    counter told the payout): the provisional money committed with the unknown outcome (its hold)
    is replaced by what the effect really moved, in one commit. The first outcome is kept inside
    the new one; only an open transaction's steps (nothing of it reported yet) can be re-resolved."""
    row = conn.execute("SELECT s.txn, s.outcome, s.closed_at, t.state FROM steps s JOIN transactions t"
                       " ON t.id = s.txn WHERE s.id = ?", (step,)).fetchone()
    if row is None or row["closed_at"] is None or row["state"] != "open":
        raise ValueError(f"step {step} is not a closed step of an open transaction")
    conn.execute("DELETE FROM money WHERE step = ?", (step,))
    first = json.loads(row["outcome"]) if row["outcome"] else None
    conn.execute("UPDATE steps SET outcome = ?, resolved_by = ? WHERE id = ?",
                 (_j({**outcome, "first": first}), resolved_by, step))
    add_money(conn, row["txn"], money, now, step=step, counts=counts)


def ledger(conn: sqlite3.Connection, txn: str) -> Ledger:
    rows = conn.execute("SELECT kind, fen FROM money WHERE txn = ?", (txn,)).fetchall()
    return Ledger.from_rows((r["kind"], r["fen"]) for r in rows)


def issue_voucher(conn: sqlite3.Connection, txn: str, fen: int, reason: str, now: float) -> str:
    """A refund the hopper could not pay: a refund record, a claim code, money kind ``refunded``."""
    for _ in range(20):
        code = "".join(secrets.choice(_CLAIM_ALPHABET) for _ in range(10))
        if conn.execute("SELECT 1 FROM refunds WHERE claim_code = ?", (code,)).fetchone() is None:
            break
    else:  # pragma: no cover - 32**10 codes
        raise RuntimeError("no free claim code")
    conn.execute("INSERT INTO refunds(txn, fen, claim_code, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                 (txn, fen, code, reason, now))
    add_money(conn, txn, [("refunded", fen, f"voucher:{code}")], now)
    enqueue(conn, "event", {"kind": "refund_voucher", "txn": txn, "fen": fen, "claim_code": code,
                            "reason": reason}, now)
    return code


def claim_voucher(conn: sqlite3.Connection, code: str, now: float) -> dict:
    row = conn.execute("SELECT * FROM refunds WHERE claim_code = ?", (code,)).fetchone()
    if row is None or row["state"] != "issued":
        raise ValueError(f"no open voucher {code}")
    conn.execute("UPDATE refunds SET state = 'claimed', claimed_at = ? WHERE id = ?", (now, row["id"]))
    enqueue(conn, "event", {"kind": "voucher_claimed", "claim_code": code, "fen": row["fen"]}, now)
    return dict(row)


def finish_txn(conn: sqlite3.Connection, txn: str, state: str, now: float, note: str = "") -> int:
    """Close a transaction: balanced ledger or ``LedgerUnbalanced``; assigns seq, queues the txn record."""
    if state not in FINAL_STATES:
        raise ValueError(f"not a final state: {state}")
    led = ledger(conn, txn)
    led.check()  # raises LedgerUnbalanced: the caller sends the transaction to review instead
    return _finish(conn, txn, state, now, note, led)


def finish_for_review(conn: sqlite3.Connection, txn: str, reason: str, now: float) -> int:
    """The way out when a finish cannot balance: hold what is outstanding and flag the txn."""
    led = ledger(conn, txn)
    if led.outstanding > 0:
        add_money(conn, txn, [("held", led.outstanding, "review")], now)
        led.record("held", led.outstanding)
    enqueue(conn, "event", {"kind": "txn_review", "txn": txn, "reason": reason, **led.as_dict()}, now)
    return _finish(conn, txn, "review", now, reason, led)


def _finish(conn: sqlite3.Connection, txn: str, state: str, now: float, note: str, led: Ledger) -> int:
    row = conn.execute("SELECT * FROM transactions WHERE id = ?", (txn,)).fetchone()
    if row is None or row["state"] != "open":
        raise ValueError(f"transaction {txn} is not open")
    seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM transactions").fetchone()[0]
    conn.execute("UPDATE transactions SET state = ?, seq = ?, note = ?, finished_at = ?, updated_at = ?"
                 " WHERE id = ?", (state, seq, note, now, now, txn))
    vouchers = [dict(code=r["claim_code"], fen=r["fen"]) for r in conn.execute(
        "SELECT claim_code, fen FROM refunds WHERE txn = ? ORDER BY id", (txn,))]
    enqueue(conn, "txn", {
        "schema": 1, "txn": txn, "seq": seq, "service": row["service"], "phone": row["phone"],
        "amount_fen": row["amount_fen"], "state": state, "flow_state": row["flow_state"], "note": note,
        "opened_at": row["opened_at"], "finished_at": now, "data": json.loads(row["data"]),
        "vouchers": vouchers, **led.as_dict()}, now)
    return int(seq)


def command_seen(conn: sqlite3.Connection, cid: str) -> tuple[bool, dict | None]:
    """(known, its reply): known with no reply is a command a restart cut short."""
    row = conn.execute("SELECT reply FROM commands WHERE id = ?", (cid,)).fetchone()
    return (False, None) if row is None else (True, None if row["reply"] is None else json.loads(row["reply"]))


def command_started(conn: sqlite3.Connection, cid: str, name: str, deadline: float, forget_before: float) -> None:
    """Before a hall command runs; forgets the ones whose deadline is past (no copy of them can run)."""
    conn.execute("DELETE FROM commands WHERE deadline < ?", (forget_before,))
    conn.execute("INSERT INTO commands(id, name, deadline) VALUES (?, ?, ?)", (cid, name, deadline))


def command_finished(conn: sqlite3.Connection, cid: str, reply: dict) -> None:
    conn.execute("UPDATE commands SET reply = ? WHERE id = ?", (_j(reply), cid))


def enqueue(conn: sqlite3.Connection, topic: str, payload: dict, now: float) -> int:
    cur = conn.execute("INSERT INTO outbox(topic, payload, created_at) VALUES (?, ?, ?)",
                       (topic, _j(payload), now))
    return int(cur.lastrowid)


def outbox_pending(conn: sqlite3.Connection, after_seq: int = 0, limit: int = 100) -> list[dict]:
    rows = conn.execute("SELECT seq, topic, payload, created_at FROM outbox WHERE delivered = 0 AND seq > ?"
                        " ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
    return [{"seq": r["seq"], "topic": r["topic"], "payload": json.loads(r["payload"]),
             "created_at": r["created_at"]} for r in rows]


def outbox_depth(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered = 0").fetchone()[0]


def mark_delivered(conn: sqlite3.Connection, upto_seq: int, now: float) -> int:
    """The hall's ack: everything up to the high-water ``upto_seq`` is committed there."""
    return conn.execute("UPDATE outbox SET delivered = 1, delivered_at = ? WHERE delivered = 0 AND seq <= ?",
                        (now, upto_seq)).rowcount


def prune_delivered(conn: sqlite3.Connection, upto_seq: int, keep: int) -> int:
    """Delete delivered outbox rows but the newest ``keep`` (at least one) of those up to ``upto_seq``.

    An outbox row is a copy for the hall; once halld has acked it, halld's database is where the
    hall's audit reads it. The kiosk's own books — transactions, money, steps, refunds, counters,
    collections: what recovery resolves and what the ledger rule is checked on — are never
    touched. Kept of the outbox: the newest delivered row, because its seq is the acked high water
    the outbox restarts from (``Outbox.load``; AUTOINCREMENT never hands a seq out twice, but the
    high water would read 0 without it); and a tail of ``keep`` delivered rows (kioskd keeps
    ``max_outbox``), so whoever compares the kiosk's last records with halld's after an incident
    has them here, and the table never holds more than about twice ``max_outbox`` rows. Rows up to
    ``upto_seq`` are all delivered (acks are a contiguous high water), so the cut is a seq.

    The device_events table, the kiosk's local copy of what its devices reported (the hall has
    each in its event record), keeps its newest ``keep`` rows the same way: a device chattering
    for months with a healthy hall must not fill the SD card either.
    """
    last = conn.execute("SELECT MAX(seq) FROM outbox WHERE seq <= ? AND delivered = 1", (upto_seq,)).fetchone()[0]
    if last is None:
        return 0
    keep = max(1, keep)
    newest = conn.execute("SELECT MAX(id) FROM device_events").fetchone()[0]
    if newest is not None:
        conn.execute("DELETE FROM device_events WHERE id <= ?", (newest - keep,))
    return conn.execute("DELETE FROM outbox WHERE seq <= ? AND delivered = 1", (last - keep,)).rowcount


def record_device_event(conn: sqlite3.Connection, device: str, kind: str, code: str, detail: str,
                        data: dict, now: float, cap: int | None = None) -> int:
    """A device's event, journalled and queued for the hall; returns its outbox seq.

    ``cap``: with that many rows undelivered or more, the event is not stored but counted
    (``drop_event``): a chattering device in a long outage must not grow the journal without end,
    nor take the room money records need. kioskd caps only the events its devices report
    (``Outbox.device_event``); money-related ones (a bill's late stack result) are never capped.
    """
    if cap is not None and outbox_depth(conn) >= cap:
        drop_event(conn, device, kind, code, now)
        return 0
    conn.execute("INSERT INTO device_events(at, device, kind, code, detail, data) VALUES (?, ?, ?, ?, ?, ?)",
                 (now, device, kind, code, detail, _j(data)))
    return enqueue(conn, "event", {"kind": kind, "device": device, "code": code, "detail": detail,
                                   "data": data, "at": now}, now)


def drop_event(conn: sqlite3.Connection, device: str, kind: str, code: str, now: float) -> None:
    """Count a device event not stored: per ``device/kind/code``, and when the first was dropped."""
    conn.execute("INSERT OR IGNORE INTO counters(kind, key, value, updated_at) VALUES ('events_dropped_since', '', ?, ?)",
                 (int(now), now))
    adjust_counter(conn, "events_dropped", f"{device}/{kind}/{code}", 1, now)


def dropped_events(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(SUM(value), 0) FROM counters WHERE kind = 'events_dropped'").fetchone()[0]


def report_dropped(conn: sqlite3.Connection, now: float) -> int:
    """One ``events_dropped`` event for the hall with what ``drop_event`` counted, and the counts
    reset in the same commit; returns its outbox seq (0: nothing was dropped)."""
    rows = conn.execute("SELECT key, value, updated_at FROM counters WHERE kind = 'events_dropped' ORDER BY key").fetchall()
    if not rows:
        return 0
    since = conn.execute("SELECT value FROM counters WHERE kind = 'events_dropped_since'").fetchone()
    event = {"kind": "events_dropped", "count": sum(r["value"] for r in rows),
             "by": {r["key"]: r["value"] for r in rows}, "since": since[0] if since else None,
             "until": max(r["updated_at"] for r in rows), "at": now}
    conn.execute("DELETE FROM counters WHERE kind IN ('events_dropped', 'events_dropped_since')")
    return enqueue(conn, "event", event, now)


def adjust_counter(conn: sqlite3.Connection, kind: str, key: str, delta: int, now: float) -> int | None:
    """Add ``delta``; a level nobody ever counted (no refill recorded) is not taken below zero.

    Why: a hopper or card stock with no row means "unknown, let the device say"; decrementing
    it into -1 would read as "empty" and refuse every later payout or sale. Nor is a zero delta
    (a payout that paid no coin, resolved at recovery) written: it would create the row at 0, and
    "counted, 0 coins" stops every later payout (tests/crash found it: change on vouchers for ever).
    """
    if delta <= 0 and conn.execute("SELECT 1 FROM counters WHERE kind = ? AND key = ?", (kind, str(key))).fetchone() is None:
        return None
    conn.execute("INSERT INTO counters(kind, key, value, updated_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT(kind, key) DO UPDATE SET value = value + excluded.value,"
                 " updated_at = excluded.updated_at", (kind, str(key), delta, now))
    return conn.execute("SELECT value FROM counters WHERE kind = ? AND key = ?", (kind, str(key))).fetchone()[0]


def set_counter(conn: sqlite3.Connection, kind: str, key: str, value: int, now: float) -> None:
    conn.execute("INSERT INTO counters(kind, key, value, updated_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT(kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                 (kind, str(key), value, now))


def counters(conn: sqlite3.Connection, kind: str | None = None) -> dict[str, dict[str, int]]:
    """``{"cashbox": {"bill:2000": 3, ...}, "hopper": {...}, "card_stock": {"3000": 17}}``."""
    query, args = "SELECT kind, key, value FROM counters", ()
    if kind is not None:
        query, args = query + " WHERE kind = ?", (kind,)
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(query, args):
        out.setdefault(r["kind"], {})[r["key"]] = r["value"]
    return out


def cashbox_fen(conn: sqlite3.Connection) -> int:
    """Cash in the box since the last collection, from the per-denomination counts."""
    total = 0
    for key, count in counters(conn, "cashbox").get("cashbox", {}).items():
        total += int(key.split(":")[1]) * count
    return total


def collect(conn: sqlite3.Connection, by: str, now: float) -> dict:
    """A cash collection: record what the box should hold, reset the counts, report it."""
    detail = counters(conn, "cashbox").get("cashbox", {})
    total = cashbox_fen(conn)
    cur = conn.execute("INSERT INTO collections(at, by, total_fen, detail) VALUES (?, ?, ?, ?)",
                       (now, by, total, _j(detail)))
    conn.execute("UPDATE counters SET value = 0, updated_at = ? WHERE kind = 'cashbox'", (now,))
    record = {"kind": "collection", "id": cur.lastrowid, "by": by, "total_fen": total, "detail": detail, "at": now}
    enqueue(conn, "event", record, now)
    return record


def get_txn(conn: sqlite3.Connection, txn: str) -> dict | None:
    row = conn.execute("SELECT * FROM transactions WHERE id = ?", (txn,)).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["data"] = json.loads(out["data"])
    out["ledger"] = ledger(conn, txn).as_dict()
    out["steps"] = steps(conn, txn)
    out["vouchers"] = [dict(r) for r in conn.execute("SELECT * FROM refunds WHERE txn = ? ORDER BY id", (txn,))]
    return out


def steps(conn: sqlite3.Connection, txn: str) -> list[dict]:
    out = []
    for r in conn.execute("SELECT * FROM steps WHERE txn = ? ORDER BY id", (txn,)):
        d = dict(r)
        d["args"] = json.loads(d["args"])
        d["outcome"] = json.loads(d["outcome"]) if d["outcome"] is not None else None
        out.append(d)
    return out


def open_txns(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM transactions WHERE state = 'open' ORDER BY opened_at, id")]


"""What a kiosk's message means for the hall's tables, and the acks that follow (docs/mqtt.md).

A batch of inbound messages is applied in one transaction (hall/writer.py commits it), grouped by
kiosk in sorted order: every writer takes a kiosk's `highwater` row lock before touching that
kiosk's rows, always in the same order, so two workers on PostgreSQL never deadlock and the high
water each computes inside its transaction sees the other's committed rows.

Records (`txn`, `event`) are stored idempotently on (kiosk, msg_seq) and their meaning once more
on (kiosk, txn id) / (kiosk, claim code); the ack carries the contiguous high water committed
here. A row beyond high water + 1 is a hole: once the same hole has stood for RESEND_HOLDOFF_S,
the next ack adds `resend_from` (docs/mqtt.md "Records and acks"), and again every
RESEND_HOLDOFF_S while it stands. Not at first sight: with several workers a hole is nearly always
a sibling's batch not committed yet, and asking at once made kiosks publish most rows twice. A
kiosk that stops sending behind a real hole rewinds by itself when acks stall.

Malformed input (bad JSON, nested too deep, wrong schema, a missing or non-integer msg_seq, an
integer beyond 64 bits, a string with a lone surrogate, NaN, a payload naming another kiosk or
hall, a kiosk not in the fleet) never touches the batch: it is checked before any SQL, stored in
the `quarantine` table with the reason (the payload as received, for staff), counted in `stats`,
and a record's msg_seq still counts as committed, so the kiosk is acked and its outbox drains
(issue 16: one poison record made the writer go row by row for every kiosk, and was never acked).
The topic names the kiosk and its certificate (the broker's ACL gives each certificate its own
subtree only), so the payload must agree with the topic, never the other way round.
"""
from __future__ import annotations

import json
import logging
import math
import operator
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from . import rollups
from .db import Database, Pending

log = logging.getLogger("halld.store")

SCHEMA = 1
LEAVES = ("status", "txn", "event", "telemetry")  # what the writer stores
RESEND_HOLDOFF_S = 1.0


INT64 = 2 ** 63  # BIGINT on PostgreSQL, INTEGER on SQLite: Python ints beyond do not fit
QUARANTINE_BYTES = 1 << 20  # kept of a quarantined payload (the broker's limit is far smaller)
# Only a payload with one of these can hold a value the database cannot store, so the common
# record skips the walk over its values: a \u escape (a lone surrogate, or \u0000: PostgreSQL's
# TEXT holds no NUL), NaN/Infinity, a run of 19 digits (beyond 64 bits). Plain substring tests:
# a regex over the payload cost more than parsing it.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def _suspect(payload: bytes) -> bool:
    return (b"\\u" in payload or b"NaN" in payload or b"Infinity" in payload
            or _LONG_NUMBER in payload.translate(_DIGITS))


T, I, F = "TEXT", "BIGINT", "DOUBLE PRECISION"  # column types for Database.insert
_SURROGATE = re.compile("[\ud800-\udfff]")
_SEQ = re.compile(rb'"msg_seq"\s*:\s*([0-9]{1,18})[\s,}]')


class Malformed(ValueError):
    def __init__(self, why: str, msg_seq: int | None = None) -> None:
        super().__init__(why)
        self.msg_seq = msg_seq  # the record's place in the kiosk's sequence, when it can be read


def _storable(body: Any) -> None:
    """Raise Malformed for a value no database column or TEXT can hold (walked without recursion)."""
    stack = [body]
    while stack:
        v = stack.pop()
        if type(v) is int:
            if not -INT64 <= v < INT64:
                raise Malformed(f"integer {str(v)[:20]}... beyond 64 bits")
        elif type(v) is float:
            if not math.isfinite(v):
                raise Malformed(f"number {v} is not JSON")
        elif type(v) is str:
            if _SURROGATE.search(v):
                raise Malformed("string with a lone UTF-16 surrogate")
            if "\x00" in v:
                raise Malformed("string with a NUL character")
        elif type(v) is dict:
            stack.extend(v)
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)


@dataclass
class Inbound:
    hall: str
    kiosk: str
    leaf: str
    payload: bytes
    received_at: float


@dataclass(frozen=True)
class Ack:
    hall: str
    kiosk: str
    msg_seq: int
    resend_from: int | None = None

    @property
    def topic(self) -> str:
        return f"kiosk/v1/{self.hall}/{self.kiosk}/ack"

    def payload(self) -> bytes:
        body: dict[str, Any] = {"schema": SCHEMA, "msg_seq": self.msg_seq}
        if self.resend_from is not None:
            body["resend_from"] = self.resend_from
        return json.dumps(body, separators=(",", ":")).encode()


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _int(value: Any) -> int | None:
    return value if type(value) is int else None  # bool is not an int here; money is never float


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(m: Inbound, body: dict) -> str:
    """The record as stored: the kiosk's own JSON text (decode checked it is UTF-8 JSON), not
    encoded again."""
    return m.payload.decode()


def _num(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# The batch's new records, staged once (Database.stage) for the records, txns and events INSERTs:
# the columns of a records row, then a txn's, then an event's (NULL in the other kind's rows).
INBOUND = (("hall", T), ("kiosk", T), ("msg_seq", I), ("leaf", T), ("txn", T), ("received_at", F), ("payload", T),
           ("seq", I), ("service", T), ("phone", T), ("amount_fen", I), ("state", T), ("finished_at", F),
           ("kind", T), ("device", T), ("code", T), ("detail", T), ("at", F))
_NAMES = [name for name, _ in INBOUND]
_BY_SEQ = operator.itemgetter(1, 2)  # kiosk, msg_seq
_COLUMNS = {"records": "hall, kiosk, msg_seq, kind, txn, received_at, payload",
            "txns": "hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at, received_at, payload",
            "events": "hall, kiosk, msg_seq, kind, device, code, detail, txn, at, received_at, payload"}
_FROM = {table: [("leaf" if table == "records" and c == "kind" else c) for c in cols.split(", ")]
         for table, cols in _COLUMNS.items()}  # each table's columns in INBOUND
_CONFLICT = {"records": "(kiosk, msg_seq)", "txns": "(kiosk, txn)", "events": "(kiosk, msg_seq)"}
_NO_EVENT = (None,) * 5
_NO_TXN = (None,) * 6


def _txn_row(hall: str, kiosk: str, b: dict, now: float, text: str) -> tuple:
    return (hall, kiosk, b["msg_seq"], "txn", b["txn"], now, text, _int(b.get("seq")), _str(b.get("service")),
            _str(b.get("phone")), _int(b.get("amount_fen")), _str(b.get("state")), _num(b.get("finished_at")),
            *_NO_EVENT)


def _event_row(hall: str, kiosk: str, b: dict, now: float, text: str) -> tuple:
    return (hall, kiosk, b["msg_seq"], "event", _str(b.get("txn")), now, text, *_NO_TXN, b["kind"],
            _str(b.get("device")), _str(b.get("code")), _str(b.get("detail")), _num(b.get("at")))


def _insert(db: Database, inbound: list[tuple]) -> None:
    """A batch's new records (INBOUND rows in (kiosk, msg_seq) order: of two records of one txn id
    the first is kept) into records, txns with the rollups of what it stored, and events.
    PostgreSQL: one COPY of them all into the temporary table `inbound`, then an INSERT ... SELECT
    a table (each value crosses the wire once, in binary); SQLite, in-process: VALUES lists
    straight into each table (staging them there was only a copy more)."""
    if not inbound:
        return
    kinds = {r[3] for r in inbound}
    if db.postgres:
        db.stage("inbound", INBOUND, inbound)
    for table, leaf in (("records", None), ("txns", "txn"), ("events", "event")):
        if leaf is not None and leaf not in kinds:
            continue
        head, tail = f"INSERT INTO {table} ({_COLUMNS[table]})", f"ON CONFLICT {_CONFLICT[table]} DO NOTHING"
        if db.postgres:
            where = f"leaf = '{leaf}'" if leaf else "true"
            statements = [(f"{head} SELECT {', '.join(_FROM[table])} FROM inbound WHERE {where}"
                           f" ORDER BY kiosk, msg_seq {tail}", ())]
        else:
            pick = operator.itemgetter(*[_NAMES.index(c) for c in _FROM[table]])
            rows = [pick(r) for r in inbound if leaf is None or r[3] == leaf]
            statements = [(f"{head} {source} {tail}", params)
                          for source, params in db.rows([INBOUND[_NAMES.index(c)][1] for c in _FROM[table]], rows)]
        if table == "txns":
            rollups.insert_txns(db, statements)  # and the reports' sums of exactly the rows stored now
        else:
            for sql, params in statements:
                db.execute(sql, params)


def _seq_in(payload: bytes) -> int | None:
    """A record's msg_seq read from bytes json could not parse (nested too deep): only when the
    text names exactly one."""
    found = _SEQ.findall(payload)
    return int(found[0]) if len(found) == 1 and int(found[0]) >= 1 else None


def _seq_of_text(m: Inbound) -> int | None:
    """The msg_seq of a record whose bytes are not UTF-8, read with the bad bytes replaced."""
    if m.leaf not in ("txn", "event"):
        return None
    try:
        seq = json.loads(m.payload.decode("utf-8", "replace")).get("msg_seq")
    except (ValueError, RecursionError, AttributeError):
        return None
    return seq if type(seq) is int and 1 <= seq < INT64 else None


def decode(m: Inbound) -> dict[str, Any]:
    """The payload as a dict, checked against the contract's envelope; raises Malformed."""
    try:  # strict UTF-8 first: json.loads(bytes) would let encoded lone surrogates through
        body = json.loads(m.payload.decode("utf-8"))
    except RecursionError:
        raise Malformed("nested too deep", _seq_in(m.payload) if m.leaf in ("txn", "event") else None) from None
    except UnicodeDecodeError as exc:  # its place in the sequence, if it has one, is still acked
        raise Malformed(f"not UTF-8: {str(exc)[:120]}", _seq_of_text(m)) from None
    except ValueError as exc:
        raise Malformed(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise Malformed("payload is not a JSON object")
    seq = body.get("msg_seq")
    seq = seq if type(seq) is int and 1 <= seq < INT64 else None
    try:
        if _suspect(m.payload):
            _storable(body)
        if body.get("schema") != SCHEMA:
            raise Malformed(f"schema {str(body.get('schema'))[:20]!a}, expected {SCHEMA}")
        for key, want in (("kiosk", m.kiosk), ("hall", m.hall)):
            if key in body and body[key] != want:
                raise Malformed(f"payload says {key} {str(body[key])[:64]!a} on {want!a}'s topic")
        if m.leaf in ("txn", "event"):
            if seq is None:
                raise Malformed(f"msg_seq {str(body.get('msg_seq'))[:24]!a} is not a positive 64-bit integer")
            if m.leaf == "txn" and not isinstance(body.get("txn"), str):
                raise Malformed("txn record without a txn id")
            if m.leaf == "txn" and not body["txn"].startswith(f"{m.kiosk}-"):
                raise Malformed(f"txn id {body['txn'][:64]!a} is not one of {m.kiosk!a}'s")
            if m.leaf == "event" and not isinstance(body.get("kind"), str):
                raise Malformed("event without a kind")
    except Malformed as exc:
        exc.msg_seq = seq if m.leaf in ("txn", "event") else None
        raise
    if m.leaf == "status" and (type(body.get("online")) is not bool or _int(body.get("session")) is None):
        raise Malformed("status needs online (bool) and session (int)")
    return body


def _due(hole: tuple[str, int, float, int]) -> float:
    """When a standing hole is (next) asked for: after 1 s, then 2, 4 ... 64 s, so a kiosk that is
    away is not flooded with acks queued in its session."""
    _, _, at, asks = hole
    return at + RESEND_HOLDOFF_S * 2 ** min(asks, 6)


def _quarantined_text(payload: bytes) -> str:
    """What a quarantined payload is kept as: text any database stores (bad bytes and NUL escaped)."""
    return payload[:QUARANTINE_BYTES].decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


class _Kiosk:
    """One kiosk's share of a batch: what decoded, what is quarantined, its records."""

    def __init__(self, hall: str, kiosk: str, items: list[tuple[Inbound, dict | None, Malformed | None]]) -> None:
        self.hall, self.kiosk = hall, kiosk
        self.good = [(m, b) for m, b, exc in items if b is not None]
        self.bad = [(m, exc) for m, _, exc in items if exc is not None]
        self.records = [(m, b) for m, b in self.good if m.leaf in ("txn", "event")]
        self.held = [(m, exc.msg_seq) for m, exc in self.bad if exc.msg_seq is not None]  # still take their place
        self.now = max(m.received_at for m, _, _ in items)
        self.high = 0
        self.fresh: dict[int, tuple[Inbound, dict, str]] = {}  # msg_seq -> the first copy in this batch
        self.places: dict[int, float] = {}  # msg_seq of a quarantined record new here -> received at
        self.beyond: list[int] = []  # msg_seq in records above `high` once the batch is stored


class Store:
    def __init__(self, fleet: dict[str, list[str]] | None = None) -> None:
        self.stats: Counter[str] = Counter()
        self.fleet = {hall: set(kiosks) for hall, kiosks in fleet.items()} if fleet is not None else None
        self._holes: dict[str, tuple[str, int, float, int]] = {}  # kiosk -> (hall, first missing, seen/asked at, asks)

    def malformed(self, where: str, why: str) -> None:
        self.stats["malformed"] += 1
        log.warning("malformed message on %s quarantined: %s", where, why)

    def _check(self, m: Inbound, refused: str | None) -> dict[str, Any]:
        if refused is not None:  # the database refused it (hall/writer.py): quarantined all the same
            try:
                seq = decode(m)["msg_seq"]
            except (Malformed, KeyError) as exc:
                seq = getattr(exc, "msg_seq", None)
            raise Malformed(refused, seq if m.leaf in ("txn", "event") else None)
        if self.fleet is not None and m.kiosk not in self.fleet.get(m.hall, ()):
            raise Malformed("kiosk not in this hall's fleet")  # no ack: nothing of it is kept in the sequence
        return decode(m)

    def apply(self, db: Database, batch: list[Inbound], refused: str | None = None) -> list[Ack]:
        """Apply a batch inside the caller's transaction; returns the acks to publish after commit
        (one per kiosk, whatever the number of its records in the batch). ``refused``: quarantine
        the whole batch with this reason (the writer's last resort for an item the database refused).

        The batch's rows go in together, one statement per table for all its kiosks (on PostgreSQL
        a statement is a round trip; per kiosk and per row they were most of the writer's time)."""
        by_kiosk: dict[tuple[str, str], list[tuple[Inbound, dict | None, Malformed | None]]] = defaultdict(list)
        self.stats["received"] += len(batch)
        for m in batch:
            try:
                by_kiosk[(m.kiosk, m.hall)].append((m, self._check(m, refused), None))
            except Malformed as exc:
                self.malformed(f"kiosk/v1/{m.hall}/{m.kiosk}/{m.leaf}", str(exc))
                by_kiosk[(m.kiosk, m.hall)].append((m, None, exc))
        kiosks = [_Kiosk(hall, kiosk, items) for (kiosk, hall), items in sorted(by_kiosk.items())]
        sequenced = [k for k in kiosks if k.records or k.held]
        highs, stored = self._lock(db, sequenced)
        for k in kiosks:  # births, wills, gauges and quarantine: few, one kiosk at a time
            for m, body in k.good:
                if m.leaf == "status":
                    self._status(db, k.hall, k.kiosk, body, m.received_at)
                elif m.leaf == "telemetry":
                    self._telemetry(db, k.hall, k.kiosk, body, m.received_at)
            if k.bad:
                self.stats["quarantined"] += len(k.bad)
                db.executemany(
                    "INSERT INTO quarantine (hall, kiosk, leaf, msg_seq, reason, size, received_at, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(k.hall, k.kiosk, m.leaf, exc.msg_seq, str(exc)[:500], len(m.payload), m.received_at,
                      _quarantined_text(m.payload)) for m, exc in k.bad])
        inbound, places = [], []
        for k in sequenced:
            k.high, before = highs[k.kiosk], set(stored.get(k.kiosk, ()))
            for m, b in k.records:  # not at or below the high water, nor stored beyond it already
                if b["msg_seq"] > k.high and b["msg_seq"] not in k.fresh and b["msg_seq"] not in before:
                    k.fresh[b["msg_seq"]] = (m, b, _text(m, b))
            self.stats["duplicates"] += len(k.records) - len(k.fresh)
            self.stats["records"] += len(k.fresh)
            inbound += [(_txn_row if m.leaf == "txn" else _event_row)(k.hall, k.kiosk, b, m.received_at, text)
                        for m, b, text in k.fresh.values()]
            k.places = {seq: m.received_at for m, seq in k.held if seq > k.high and seq not in k.fresh
                        and seq not in before}
            places += [(k.hall, k.kiosk, seq, at) for seq, at in k.places.items()]
            k.beyond = sorted(before.union(k.fresh, k.places))  # what records holds above k.high at commit
        _insert(db, sorted(inbound, key=_BY_SEQ))
        db.insert(  # a quarantined record's place in the sequence (its payload is in quarantine)
            "INSERT INTO records (hall, kiosk, msg_seq, received_at, kind)", (T, T, I, F, T),
            [(*p, "quarantined") for p in places],
            "ON CONFLICT (kiosk, msg_seq) DO NOTHING")
        for k in sequenced:  # what a record means beyond its own row, in msg_seq order of arrival
            for m, body, _ in k.fresh.values():
                (self._txn if m.leaf == "txn" else self._event)(db, k.hall, k.kiosk, body, m.received_at)
        acks = [self._advance(db, k.hall, k.kiosk, k.high, k.now, k.beyond) for k in sequenced]
        # one statement a table for all the batch's kiosks (their highwater rows are locked: no
        # sibling waits on these fleet rows in another order)
        for rows, params in db.rows((T, T, F), [(k.hall, k.kiosk, k.now) for k in sequenced]):
            db.execute(f"WITH v (hall, kiosk, at) AS ({rows}) UPDATE fleet SET last_seen = v.at FROM v"
                       " WHERE fleet.hall = v.hall AND fleet.kiosk = v.kiosk", params)
        for rows, params in db.rows((T, I, F), [(k.kiosk, a.msg_seq, k.now) for a, k in zip(acks, sequenced)
                                                if a.msg_seq != k.high]):
            db.execute(f"WITH v (kiosk, high, at) AS ({rows}) UPDATE highwater SET msg_seq = v.high,"
                       " updated_at = v.at FROM v WHERE highwater.kiosk = v.kiosk", params)
        return acks

    @staticmethod
    def _lock(db: Database, kiosks: list["_Kiosk"]) -> tuple[dict[str, int], dict[str, list[int]]]:
        """Each kiosk's high water, its row locked (FOR UPDATE, in kiosk order) until commit, and
        the rows already stored beyond it (past a hole: rarely any), read in the same round trip.
        Every writer of a kiosk's records holds this lock, so what the batch adds to them is known
        here without reading them back (that read cost PostgreSQL as much as storing the records)."""
        if not kiosks:
            return {}, {}
        db.insert("INSERT INTO highwater (kiosk, hall, msg_seq, updated_at)", (T, T, I, F),
                  [(k.kiosk, k.hall, 0, k.now) for k in kiosks],
                  "ON CONFLICT (kiosk) DO NOTHING")
        names = [k.kiosk for k in kiosks]
        marks = ", ".join(["?"] * len(kiosks))
        highs = Pending([db.execute(f"SELECT kiosk, msg_seq FROM highwater WHERE kiosk IN ({marks}) ORDER BY kiosk"
                                    + db.for_update, names)])
        beyond = Store._beyond(db, names)  # a statement after the lock: it sees what a sibling committed
        return dict(highs.fetch()), beyond

    @staticmethod
    def _beyond(db: Database, kiosks: list[str]) -> dict[str, list[int]]:
        """Per kiosk (its high water locked), the msg_seq stored above its high water, in order."""
        out: dict[str, list[int]] = defaultdict(list)
        one = ("SELECT kiosk, msg_seq FROM records WHERE kiosk = ?"  # an index range per kiosk (a join of
               " AND msg_seq > (SELECT msg_seq FROM highwater WHERE kiosk = ?)")  # the two was a scan of records)
        sql = " UNION ALL ".join([one] * len(kiosks)) + " ORDER BY 1, 2"
        for kiosk, seq in db.query(sql, [k for k in kiosks for _ in range(2)]):
            out[kiosk].append(seq)
        return out

    def _advance(self, db: Database, hall: str, kiosk: str, high: int, now: float, beyond: list[int]) -> Ack:
        """The new high water over the rows stored `beyond` the old one (the caller stores it), and
        whether a hole has stood long enough to ask for it."""
        new_high = high
        for seq in beyond:
            if seq != new_high + 1:
                break
            new_high = seq
        resend_from = None
        if len(beyond) > new_high - high:  # rows past a hole
            hole, mono = new_high + 1, time.monotonic()
            seen = self._holes.get(kiosk)
            if seen is None or seen[1] != hole:
                self._holes[kiosk] = (hall, hole, mono, 0)  # new: most likely a sibling's batch in flight
            elif mono >= _due(seen):
                resend_from = hole
                self._holes[kiosk] = (hall, hole, mono, seen[3] + 1)
                self.stats["resends"] += 1
                log.info("hole in %s/%s after msg_seq %d: asking a resend", hall, kiosk, new_high)
        else:
            self._holes.pop(kiosk, None)
        return Ack(hall, kiosk, new_high, resend_from)

    def holes_due(self) -> float | None:
        """Seconds until the oldest standing hole is due a resend request (None: no holes)."""
        if not self._holes:
            return None
        return max(0.0, min(map(_due, self._holes.values())) - time.monotonic())

    def sweep(self, db: Database) -> list[Ack]:
        """Holes that stood for RESEND_HOLDOFF_S with nothing arriving after them (rows lost at the
        tail of a kiosk's window): ask for them now rather than leave the kiosk to its ack stall.
        Runs in a write transaction; a hole a sibling filled meanwhile just moves the high water."""
        acks, mono, now = [], time.monotonic(), time.time()
        for kiosk, hole in sorted(self._holes.items()):
            if mono < _due(hole):
                continue
            hall = hole[0]
            high = db.one("SELECT msg_seq FROM highwater WHERE kiosk = ?" + db.for_update, (kiosk,))[0]
            ack = self._advance(db, hall, kiosk, high, now, self._beyond(db, [kiosk]).get(kiosk, []))
            if ack.msg_seq != high:
                db.execute("UPDATE highwater SET msg_seq = ?, updated_at = ? WHERE kiosk = ?", (ack.msg_seq, now, kiosk))
            if ack.resend_from is not None or ack.msg_seq != high:
                acks.append(ack)
        return acks

    def _status(self, db: Database, hall: str, kiosk: str, body: dict, now: float) -> None:
        """Birth, will or clean goodbye. A status whose session is older than the one held is a
        late will from an earlier boot (docs/mqtt.md "Status"): ignored."""
        row = db.one("SELECT session FROM fleet WHERE hall = ? AND kiosk = ?" + db.for_update, (hall, kiosk))
        session = body["session"]
        db.execute("INSERT INTO messages (hall, kiosk, kind, received_at, payload) VALUES (?, ?, 'status', ?, ?)",
                   (hall, kiosk, now, _j(body)))
        if row is not None and row[0] is not None and session < row[0]:
            self.stats["late_wills"] += 1
            log.info("late status from %s/%s session %s ignored (holding %s)", hall, kiosk, session, row[0])
            return
        if not body["online"] and row is not None:
            db.execute("UPDATE fleet SET online = 0, session = ?, status_at = ? WHERE hall = ? AND kiosk = ?",
                       (session, now, hall, kiosk))
            return
        cash = body.get("cashbox") if isinstance(body.get("cashbox"), dict) else {}
        db.execute(
            "INSERT INTO fleet (hall, kiosk, online, session, last_seen, state, version, config_hash, outbox_depth,"
            " alarms, devices, cashbox_fen, cashbox, card_stock, hopper_fen, status, status_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hall, kiosk) DO UPDATE SET"
            " online = excluded.online, session = excluded.session, last_seen = excluded.last_seen,"
            " state = excluded.state, version = excluded.version, config_hash = excluded.config_hash,"
            " outbox_depth = excluded.outbox_depth, alarms = excluded.alarms, devices = excluded.devices,"
            " cashbox_fen = excluded.cashbox_fen, cashbox = excluded.cashbox, card_stock = excluded.card_stock,"
            " hopper_fen = excluded.hopper_fen, status = excluded.status, status_at = excluded.status_at",
            (hall, kiosk, int(body["online"]), session, now, _str(body.get("state")), _str(body.get("version")),
             _str(body.get("config_hash")), _int(body.get("outbox_depth")), _j(body.get("alarms") or []),
             _j(body.get("devices") or {}), _int(cash.get("fen")), _j(cash), _j(body.get("card_stock") or {}),
             _int(body.get("hopper_fen")), _j(body), now))

    def _telemetry(self, db: Database, hall: str, kiosk: str, body: dict, now: float) -> None:
        """Gauges between births: depth, health, cash box, card stock. Kept only in the fleet row."""
        cash = body.get("cashbox") if isinstance(body.get("cashbox"), dict) else None
        db.execute(
            "UPDATE fleet SET last_seen = ?, state = COALESCE(?, state), outbox_depth = COALESCE(?, outbox_depth),"
            " alarms = COALESCE(?, alarms), devices = COALESCE(?, devices), cashbox_fen = COALESCE(?, cashbox_fen),"
            " cashbox = COALESCE(?, cashbox), card_stock = COALESCE(?, card_stock),"
            " hopper_fen = COALESCE(?, hopper_fen) WHERE hall = ? AND kiosk = ?",
            (now, _str(body.get("state")), _int(body.get("outbox_depth")),
             _j(body["alarms"]) if isinstance(body.get("alarms"), list) else None,
             _j(body["devices"]) if isinstance(body.get("devices"), dict) else None,
             _int(cash.get("fen")) if cash else None, _j(cash) if cash else None,
             _j(body["card_stock"]) if isinstance(body.get("card_stock"), dict) else None,
             _int(body.get("hopper_fen")), hall, kiosk))

    def _txn(self, db: Database, hall: str, kiosk: str, b: dict, now: float) -> None:
        """A transaction record's reviews and refund vouchers (its txns row is _txn_row)."""
        if b.get("state") == "review":
            self._review(db, hall, kiosk, b["txn"], _str(b.get("note")), _int(b.get("held_for_review")), now)
        for v in b.get("vouchers") or []:
            if isinstance(v, dict) and isinstance(v.get("code"), str):
                self._refund(db, hall, kiosk, v["code"], b["txn"], _int(v.get("fen")), "", now)

    def _event(self, db: Database, hall: str, kiosk: str, b: dict, now: float) -> None:
        """An event's refunds and reviews (its events row is _event_row)."""
        kind = b["kind"]
        if kind == "refund_voucher" and isinstance(b.get("claim_code"), str):
            self._refund(db, hall, kiosk, b["claim_code"], _str(b.get("txn")), _int(b.get("fen")),
                         _str(b.get("reason")) or "", now)
        elif kind == "voucher_claimed" and isinstance(b.get("claim_code"), str):
            self._refund(db, hall, kiosk, b["claim_code"], None, _int(b.get("fen")), "", now)
            self.resolve_refund(db, kiosk, b["claim_code"], "claimed", "", now)
        elif kind == "txn_review" and isinstance(b.get("txn"), str):
            self._review(db, hall, kiosk, b["txn"], _str(b.get("reason")), _int(b.get("held_for_review")), now)
        elif kind == "review_resolved" and isinstance(b.get("txn"), str):
            self.resolve_review(db, kiosk, b["txn"], _str(b.get("resolution")) or "resolved",
                                _str(b.get("note")) or "", now)

    @staticmethod
    def _refund(db, hall, kiosk, code, txn, fen, reason, now) -> None:
        db.execute("INSERT INTO refunds (hall, kiosk, claim_code, txn, fen, reason, state, created_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, 'issued', ?) ON CONFLICT (kiosk, claim_code) DO NOTHING",
                   (hall, kiosk, code, txn, fen, reason, now))

    @staticmethod
    def _review(db, hall, kiosk, txn, reason, held, now) -> None:
        db.execute("INSERT INTO reviews (hall, kiosk, txn, reason, held_fen, state, opened_at)"
                   " VALUES (?, ?, ?, ?, ?, 'open', ?) ON CONFLICT (kiosk, txn) DO NOTHING",
                   (hall, kiosk, txn, reason, held, now))

    @staticmethod
    def resolve_refund(db: Database, kiosk: str, code: str, resolution: str, note: str, now: float) -> None:
        db.execute("UPDATE refunds SET state = ?, resolved_at = ?, note = ? WHERE kiosk = ? AND claim_code = ?",
                   (resolution, now, note, kiosk, code))

    @staticmethod
    def resolve_review(db: Database, kiosk: str, txn: str, resolution: str, note: str, now: float) -> None:
        db.execute("UPDATE reviews SET state = 'closed', resolution = ?, resolved_at = ?, note = ?"
                   " WHERE kiosk = ? AND txn = ?", (resolution, now, note, kiosk, txn))

"""放卡维护 / Recharge-card stock: what each kiosk's dispensers hold, which run low, where a delivery goes.

The levels are the kiosks' own (the journal's `card_stock` counter per face value, in every status
and telemetry message: hall.store keeps the last in `fleet.card_stock`). Loading cards is a command
to the kiosk (`load_cards`: its counter grows, it reports the new level), recorded here with who
loaded what (`card_loads`) and audited with the level before and the kiosk's reply after.

A delivery of N cards of one face is shared out so that the kiosks run out as late as possible:
card by card, to the kiosk with the fewest days of cover (stock / sales per day over SALES_DAYS,
at least MIN_RATE so a kiosk that sold nothing lately still gets its turn), never beyond what a
dispenser holds. Sales come from one SQL aggregate over the card sales of the period.
"""
from __future__ import annotations

import heapq
import json
import time
from typing import Any

from . import auth

SCHEMA = """
CREATE TABLE IF NOT EXISTS card_loads (
    id {serial}, hall TEXT, kiosk TEXT NOT NULL, face_fen BIGINT NOT NULL, added BIGINT NOT NULL, ok BIGINT,
    stock BIGINT, who TEXT, at DOUBLE PRECISION, reply TEXT);
"""
LOW_CARDS = 20  # at or below: low-stock alert
LOW_DAYS = 2.0  # or fewer days of cover than this
SALES_DAYS = 14
MIN_RATE = 0.5  # cards a day assumed for a kiosk that sold none lately
CAPACITY = 200  # cards one dispenser's cassette holds (CRT-571 class); the form may say otherwise
FACES = (3000, 5000, 10000)  # transactions FlowConfig card_prices' faces, offered when no kiosk reported any


def create_schema(db: Any) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    db.execute(SCHEMA.format(serial=serial))


def _stock(value: Any) -> dict[int, int]:
    try:
        raw = json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        raw = {}
    out = {}
    for face, n in (raw.items() if isinstance(raw, dict) else ()):
        if str(face).isdigit() and type(n) is int:
            out[int(face)] = n
    return out


def sales(db: Any, since: float) -> dict[tuple[str, int], int]:
    """Card sales per (kiosk, face) since `since`: one aggregate in the database."""
    face = ("CAST(payload::jsonb -> 'data' ->> 'face_fen' AS BIGINT)" if db.postgres
            else "CAST(json_extract(payload, '$.data.face_fen') AS INTEGER)")
    rows = db.query(f"SELECT kiosk, {face} AS face, COUNT(*) FROM txns WHERE service = 'card_sale' AND state = 'done'"
                    f" AND finished_at >= ? GROUP BY kiosk, {face}", (since,))
    return {(k, int(f)): int(n) for k, f, n in rows if f is not None}


def levels(db: Any, now: float | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """Every kiosk with its stock per face, sales per day, days of cover and alerts; the faces seen."""
    now = now or time.time()
    sold = sales(db, now - SALES_DAYS * 86400)
    rows = db.dicts("SELECT hall, kiosk, online, last_seen, card_stock FROM fleet ORDER BY hall, kiosk")
    faces = sorted({f for r in rows for f in _stock(r["card_stock"])} or FACES)
    for r in rows:
        stock = _stock(r.pop("card_stock"))
        r["faces"] = {}
        for face in faces:
            if face not in stock:
                continue
            rate = sold.get((r["kiosk"], face), 0) / SALES_DAYS
            cover = stock[face] / max(rate, MIN_RATE)
            r["faces"][face] = {"stock": stock[face], "per_day": round(rate, 1), "days": round(cover, 1),
                                "low": stock[face] <= LOW_CARDS or cover < LOW_DAYS}
        r["low"] = any(f["low"] for f in r["faces"].values())
    return rows, faces


def allocate(rows: list[dict[str, Any]], face: int, delivery: int, capacity: int = CAPACITY) -> tuple[dict[str, int], int]:
    """{kiosk: cards} for a delivery of one face, and the cards left over (every dispenser full)."""
    heap, got = [], {}
    for r in rows:
        f = r["faces"].get(face)
        if f is None or f["stock"] >= capacity:
            continue
        rate = max(f["per_day"], MIN_RATE)
        heapq.heappush(heap, (f["stock"] / rate, r["kiosk"], f["stock"], rate))
        got[r["kiosk"]] = 0
    left = delivery
    while left > 0 and heap:
        _, kiosk, stock, rate = heapq.heappop(heap)
        got[kiosk] += 1
        left -= 1
        if stock + 1 < capacity:
            heapq.heappush(heap, ((stock + 1) / rate, kiosk, stock + 1, rate))
    return {k: n for k, n in got.items() if n}, left


def record_load(db: Any, hall: str, kiosk: str, face: int, added: int, before: Any, reply: dict[str, Any],
                who: str) -> None:
    now = time.time()
    result = reply.get("result") if isinstance(reply.get("result"), dict) else {}
    stock = result.get("stock") if type(result.get("stock")) is int else None
    db.execute("INSERT INTO card_loads (hall, kiosk, face_fen, added, ok, stock, who, at, reply)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (hall, kiosk, face, added, int(bool(reply.get("ok"))), stock, who,
                                                       now, json.dumps(reply, ensure_ascii=False)[:2000]))
    auth.audit(db, who, "stock.load" if reply.get("ok") else "stock.load.refused", f"{hall}/{kiosk}",
               {"face_fen": face, "stock": before}, {"added": added, "reply": reply}, now)


def loads(db: Any, limit: int = 30) -> list[dict[str, Any]]:
    return db.dicts("SELECT * FROM card_loads ORDER BY at DESC, id DESC LIMIT ?", (limit,))

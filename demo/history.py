"""Some weeks of a hall's business for the demo's console, stored the way halld stores kiosk records.

Why through `hall.store.Store.apply`: the history then goes through the same checks, tables and
report rollups as the records a kiosk sends (hall/store.py, hall/rollups.py), so the console's
reports and fleet show what a hall that has run for a while would show. It is stored under kiosk
ids the live demo kiosks do not use: a kiosk's msg_seq sequence is its own, and history under a
live kiosk's id would make the hall take that kiosk's first real records for ones it already has.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import time

from hall.db import connect
from hall.store import Inbound, Store

KIOSKS = ["SIM-0003", "SIM-0004", "SIM-0005", "SIM-0006"]
# a telecom hall's kiosks: mostly top-ups and bills, in opening hours, busier at the weekend
SERVICES = ["topup"] * 9 + ["bill_pay"] * 5 + ["query"] * 3 + ["card_sale", "plan_change", "documents"]
TOPUP_FEN = [1000, 2000, 3000, 5000, 10000, 20000, 50000]
HOURS = [9, 10, 10, 11, 11, 12, 13, 14, 15, 15, 16, 17, 17, 18, 18, 19, 20]


def _record(kiosk: str, seq: int, at: float, rnd: random.Random) -> dict:
    """A finished transaction as kioskd publishes it (transactions/records.py, controller/link.py)."""
    service = rnd.choice(SERVICES)
    fen = rnd.choice(TOPUP_FEN) if service == "topup" else rnd.randrange(1000, 40000, 100) \
        if service == "bill_pay" else 2500 if service == "card_sale" else 0
    state = "done" if rnd.random() > 0.03 else "failed"
    paid = fen if state == "done" else 0
    return {"schema": 1, "txn": f"{kiosk}-1-{seq}", "seq": seq, "msg_seq": seq, "service": service,
            "phone": f"13{rnd.randrange(10**9):09d}", "state": state, "flow_state": "credited" if paid else state,
            "amount_fen": fen or None, "cash_in": paid, "applied": paid, "change_paid": 0, "refunded": 0,
            "held_for_review": 0, "vouchers": [], "note": "", "data": {}, "opened_at": at - 40, "finished_at": at}


def _message(hall: str, kiosk: str, leaf: str, body: dict, at: float) -> Inbound:
    return Inbound(hall, kiosk, leaf, json.dumps(body, ensure_ascii=False).encode(), at)


def seed(db_path: str, hall: str, days: int = 28, now: float | None = None, seed: int = 14) -> dict[str, int]:
    """`days` days up to yesterday for KIOSKS, each a birth, its day's transactions and at the end
    a goodbye (offline); returns counts of what was stored."""
    rnd = random.Random(seed)
    now = time.time() if now is None else now
    today = dt.datetime.fromtimestamp(now).date()
    messages: list[Inbound] = []
    for kiosk in KIOSKS:
        first = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(8)).timestamp()
        messages.append(_message(hall, kiosk, "status", {"schema": 1, "online": True, "session": 1, "kiosk": kiosk,
                                                         "hall": hall, "state": "ready", "outbox_depth": 0,
                                                         "devices": {"bill": "ok", "printer": "ok"}}, first))
        seq = 0
        for d in range(days, 0, -1):
            day = today - dt.timedelta(days=d)
            midnight = dt.datetime.combine(day, dt.time()).timestamp()
            visits = rnd.randrange(40, 70) if day.weekday() >= 5 else rnd.randrange(20, 45)
            times = sorted(midnight + rnd.choice(HOURS) * 3600 + rnd.randrange(3600) for _ in range(visits))
            for at in times:
                seq += 1
                messages.append(_message(hall, kiosk, "txn", _record(kiosk, seq, at, rnd), at + 1))
        last = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(21)).timestamp()
        messages.append(_message(hall, kiosk, "status", {"schema": 1, "online": False, "session": 1}, last))
    messages.sort(key=lambda m: m.received_at)  # the kiosks' records arriving interleaved, as they would
    db = connect(db_path)
    store = Store()
    try:
        for start in range(0, len(messages), 500):  # the writer's batches
            with db.transaction():
                store.apply(db, messages[start:start + 500])
        done = db.one("SELECT COUNT(*) FROM txns WHERE state = 'done'")[0]
    finally:
        db.close()
    return {"kiosks": len(KIOSKS), "days": days, "records": store.stats["records"], "done": done}

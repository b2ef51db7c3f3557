"""终端设置 / Device settings pushed to kiosks: services offered, cash denominations accepted, the
notices on the idle screen.

The console sends them as one `apply_settings` command per kiosk (controller/commands.py: the
kiosk validates them as its config loader would, keeps them in kiosk.toml in one atomic write and
applies them at once). What the hall last pushed to each kiosk and whether the kiosk took it is
kept in `kiosk_settings`; every push is audited per kiosk with the previous settings before and
the kiosk's reply after. The checks here are the kiosk's own, so a bad form never leaves the hall.
"""
from __future__ import annotations

import json
import time
from typing import Any

from . import auth

SCHEMA = """
CREATE TABLE IF NOT EXISTS kiosk_settings (
    hall TEXT NOT NULL, kiosk TEXT NOT NULL, services TEXT, denominations TEXT, notices TEXT, who TEXT,
    pushed_at DOUBLE PRECISION, ok BIGINT, code TEXT, PRIMARY KEY (hall, kiosk));
"""
DENOMINATIONS_FEN = (10, 50, 100, 500, 1000, 2000, 5000, 10000)  # as controller/commands.py accepts
NOTICES_MAX, NOTICE_CHARS = 5, 120


def create_schema(db: Any) -> None:
    db.execute(SCHEMA)


def services() -> dict[str, tuple[str, str]]:
    """The kiosks' services (transactions' flows) with their Chinese and English names."""
    from transactions import SPECS

    return {name: (spec.title_zh, spec.title_en) for name, spec in SPECS.items()}


def parse(chosen: list[str], denominations: list[str], notices_text: str) -> dict[str, Any]:
    """The form's settings as the command's arguments; ValueError says what is wrong."""
    known = services()
    bad = [s for s in chosen if s not in known]
    if bad:
        raise ValueError(f"unknown service {bad[0][:40]!r}")
    try:
        fen = sorted({int(d) for d in denominations})
    except ValueError:
        raise ValueError("denominations are amounts in fen") from None
    if any(d not in DENOMINATIONS_FEN for d in fen):
        raise ValueError(f"denominations: each one of {DENOMINATIONS_FEN} fen")
    notices = [line.strip() for line in notices_text.splitlines() if line.strip()]
    if len(notices) > NOTICES_MAX or any(len(n) > NOTICE_CHARS or not n.isprintable() for n in notices):
        raise ValueError(f"notices: at most {NOTICES_MAX} lines of at most {NOTICE_CHARS} printable characters")
    return {"services": [s for s in known if s in chosen], "denominations": fen, "notices": notices}


def pushed(db: Any) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for row in db.dicts("SELECT * FROM kiosk_settings"):
        for key in ("services", "denominations", "notices"):
            row[key] = json.loads(row[key]) if row[key] else None
        out[(row["hall"], row["kiosk"])] = row
    return out


def record(db: Any, hall: str, kiosk: str, args: dict[str, Any], reply: dict[str, Any], code: str, who: str) -> None:
    """One kiosk's push: kept when the kiosk took it (the last good settings stay otherwise), always audited."""
    now = time.time()
    before = db.dicts("SELECT services, denominations, notices, ok FROM kiosk_settings WHERE hall = ? AND kiosk = ?",
                      (hall, kiosk))
    if reply.get("ok"):
        db.execute("INSERT INTO kiosk_settings (hall, kiosk, services, denominations, notices, who, pushed_at, ok, code)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, 1, '') ON CONFLICT (hall, kiosk) DO UPDATE SET"
                   " services = excluded.services, denominations = excluded.denominations, notices = excluded.notices,"
                   " who = excluded.who, pushed_at = excluded.pushed_at, ok = 1, code = ''",
                   (hall, kiosk, *(json.dumps(args[k], ensure_ascii=False) for k in ("services", "denominations",
                                                                                     "notices")), who, now))
    else:
        db.execute("INSERT INTO kiosk_settings (hall, kiosk, who, pushed_at, ok, code) VALUES (?, ?, ?, ?, 0, ?)"
                   " ON CONFLICT (hall, kiosk) DO UPDATE SET who = excluded.who, pushed_at = excluded.pushed_at,"
                   " ok = 0, code = excluded.code", (hall, kiosk, who, now, code))
    auth.audit(db, who, "kiosk.apply_settings" if reply.get("ok") else "kiosk.apply_settings.refused",
               f"{hall}/{kiosk}", before[0] if before else None, {"args": args, "reply": reply}, now)

"""`halld`: the hall server. For now a subscriber that stores what the kiosks report, and answers
queries about it; the hall-link issue adds acks, commands, the BOSS gateway and PostgreSQL.

    halld serve --db hall.db [--mqtt-host H] [--mqtt-port P]
    halld fleet --db hall.db        kiosks, online or not, last seen
    halld recent --db hall.db [-n 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sqlite3
import sys
import time

log = logging.getLogger("halld")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, hall TEXT, kiosk TEXT, kind TEXT, received_at REAL, payload TEXT);
CREATE TABLE IF NOT EXISTS records (
    hall TEXT, kiosk TEXT, msg_seq INTEGER, kind TEXT, txn TEXT, received_at REAL, payload TEXT,
    PRIMARY KEY (kiosk, msg_seq));
CREATE TABLE IF NOT EXISTS acked (kiosk TEXT PRIMARY KEY, msg_seq INTEGER);
CREATE TABLE IF NOT EXISTS fleet (
    hall TEXT, kiosk TEXT, online INTEGER, session INTEGER, last_seen REAL, status TEXT,
    PRIMARY KEY (hall, kiosk));
"""


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def store(db: sqlite3.Connection, topic: str, payload: bytes) -> tuple[str, int] | None:
    """Store one message; malformed topics or payloads are logged and dropped, never fatal.

    Returns (ack topic, high-water msg_seq) when a kiosk's outbox record moved its high water:
    the contiguous run of msg_seq committed here, so the kiosk may forget everything up to it."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[:2] != ["kiosk", "v1"]:
        log.warning("ignored message on unexpected topic %s", topic)
        return None
    hall, kiosk, kind = parts[2], parts[3], "/".join(parts[4:])
    try:
        body = json.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        log.warning("malformed payload on %s: %s", topic, exc)
        return None
    if kind in ("ack", "telemetry") or kind.startswith("cmd/"):
        return None  # our own acks and commands echo back on kiosk/v1/#; telemetry is not kept
    now = time.time()
    if kind in ("txn", "event"):
        return _store_record(db, hall, kiosk, kind, body, now)
    with db:
        db.execute("INSERT INTO messages (hall, kiosk, kind, received_at, payload) VALUES (?,?,?,?,?)",
                   (hall, kiosk, kind, now, json.dumps(body, ensure_ascii=False)))
        if kind == "status":
            session = body.get("session")
            row = db.execute("SELECT session FROM fleet WHERE hall=? AND kiosk=?", (hall, kiosk)).fetchone()
            if not body.get("online") and row and row[0] is not None and session is not None and session < row[0]:
                return None  # a late will from an earlier boot: the kiosk is back, ignore it
            db.execute("INSERT OR REPLACE INTO fleet VALUES (?,?,?,?,?,?)",
                       (hall, kiosk, int(bool(body.get("online"))), session, now, json.dumps(body, ensure_ascii=False)))
        else:
            db.execute("UPDATE fleet SET last_seen=? WHERE hall=? AND kiosk=?", (now, hall, kiosk))
    return None


def _store_record(db: sqlite3.Connection, hall: str, kiosk: str, kind: str, body: dict, now: float):
    seq = body.get("msg_seq")
    if not isinstance(seq, int) or seq < 1:
        log.warning("record without msg_seq from %s/%s dropped", hall, kiosk)
        return None
    with db:
        db.execute("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?)",
                   (hall, kiosk, seq, kind, body.get("txn"), now, json.dumps(body, ensure_ascii=False)))
        db.execute("UPDATE fleet SET last_seen=? WHERE hall=? AND kiosk=?", (now, hall, kiosk))
        row = db.execute("SELECT msg_seq FROM acked WHERE kiosk=?", (kiosk,)).fetchone()
        high = row[0] if row else 0
        while db.execute("SELECT 1 FROM records WHERE kiosk=? AND msg_seq=?", (kiosk, high + 1)).fetchone():
            high += 1
        db.execute("INSERT OR REPLACE INTO acked VALUES (?, ?)", (kiosk, high))
    return f"kiosk/v1/{hall}/{kiosk}/ack", high

async def serve(db_path: str, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    import aiomqtt

    db = open_db(db_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            async with aiomqtt.Client(host, port, identifier="halld", protocol=aiomqtt.ProtocolVersion.V5) as client:
                await client.subscribe("kiosk/v1/#", qos=1)
                log.info("halld subscribed on %s:%s", host, port)
                print(f"halld: listening on mqtt://{host}:{port}, storing in {db_path}", flush=True)
                if ready:
                    ready.set()
                receive = asyncio.ensure_future(_receive(client, db))
                await asyncio.wait([receive, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
                receive.cancel()
        except aiomqtt.MqttError as exc:
            log.warning("broker unreachable: %s", exc)
            await asyncio.sleep(1)
    db.close()


async def _receive(client, db: sqlite3.Connection) -> None:
    async for message in client.messages:
        ack = store(db, str(message.topic), bytes(message.payload or b""))
        if ack:  # after the commit, never before: the kiosk forgets what we acknowledge
            await client.publish(ack[0], json.dumps({"schema": 1, "msg_seq": ack[1]}).encode(), qos=1)


def fleet(db_path: str) -> list[dict]:
    db = open_db(db_path)
    rows = db.execute("SELECT hall, kiosk, online, session, last_seen FROM fleet ORDER BY hall, kiosk").fetchall()
    return [dict(zip(("hall", "kiosk", "online", "session", "last_seen"), r)) for r in rows]


def transactions(db_path: str, n: int = 20) -> list[dict]:
    db = open_db(db_path)
    rows = db.execute("SELECT hall, kiosk, msg_seq, payload FROM records WHERE kind='txn' ORDER BY received_at DESC LIMIT ?", (n,))
    return [dict(zip(("hall", "kiosk", "msg_seq"), r[:3]), **json.loads(r[3])) for r in rows]


def recent(db_path: str, n: int) -> list[dict]:
    db = open_db(db_path)
    rows = db.execute("SELECT hall, kiosk, kind, received_at, payload FROM messages ORDER BY id DESC LIMIT ?", (n,))
    return [dict(zip(("hall", "kiosk", "kind", "received_at"), r[:4]), payload=json.loads(r[4])) for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="halld")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("serve", "fleet", "recent", "txns"):
        p = sub.add_parser(name)
        p.add_argument("--db", default="hall.db")
        if name == "serve":
            p.add_argument("--mqtt-host", default="127.0.0.1")
            p.add_argument("--mqtt-port", type=int, default=1883)
        if name in ("recent", "txns"):
            p.add_argument("-n", type=int, default=20)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s halld %(levelname)s %(message)s")
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    if args.cmd == "serve":
        asyncio.run(serve(args.db, args.mqtt_host, args.mqtt_port))
    elif args.cmd == "fleet":
        for row in fleet(args.db):
            seen = time.strftime("%H:%M:%S", time.localtime(row["last_seen"]))
            print(f"{row['hall']}/{row['kiosk']}  {'online ' if row['online'] else 'offline'}  session {row['session']}  last seen {seen}")
    elif args.cmd == "txns":
        from transactions.messages import yuan

        for t in transactions(args.db, args.n):
            print(f"{t['hall']}/{t['kiosk']} #{t.get('seq')} {t.get('service'):<12} {t.get('state'):<9} "
                  f"{yuan(t.get('amount_fen') or 0):>9} yuan  txn {t.get('txn')}")
    else:
        for row in recent(args.db, args.n):
            print(f"{row['hall']}/{row['kiosk']} {row['kind']:<10} {json.dumps(row['payload'], ensure_ascii=False)[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

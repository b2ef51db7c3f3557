"""The `halld` command line: `serve`, queries straight from the database, `cmd` through the API.

Queries open the database read-only in spirit (SQLite path or PostgreSQL URL, `--db` or
$HALLD_DB); `cmd` needs the running halld (it holds the MQTT session that waits for the reply),
so it goes through the HTTP API (`--api`, default http://127.0.0.1:8470).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from . import queries
from .db import connect

DEFAULT_API = "http://127.0.0.1:8470"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="halld", description="the hall server for self-service kiosks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    db_default = os.environ.get("HALLD_DB", "hall.db")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if name != "cmd":
            p.add_argument("--db", default=db_default, help="SQLite path or postgresql:// URL (env HALLD_DB)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return p

    p = add("serve", "run the hall server")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--worker", default="halld", help="MQTT client id (with TLS the certificate CN is used)")
    p.add_argument("--hall", action="append", default=[], help="hall id to announce online (repeatable)")
    p.add_argument("--boss", help="BOSS adapter base URL (bosssim: http://127.0.0.1:8600)")
    p.add_argument("--boss-timeout", type=float, default=5.0)
    p.add_argument("--ca", help="fleet CA certificate (TLS)")
    p.add_argument("--cert", help="this worker's client certificate")
    p.add_argument("--key", help="this worker's private key")
    p.add_argument("--http", default="127.0.0.1:8470", help="HOST:PORT of the JSON API, or 'off'")
    add("fleet", "kiosks: online, last seen, outbox, health, cash box, card stock")
    p = add("kiosk", "one kiosk in detail")
    p.add_argument("kiosk")
    for name, help in (("txns", "latest transactions"), ("events", "latest events"), ("recent", "latest statuses")):
        p = add(name, help)
        p.add_argument("-n", type=int, default=20)
        p.add_argument("--kiosk")
    p = add("refunds", "refund vouchers")
    p.add_argument("--state", help="issued | claimed")
    p = add("reviews", "transactions held for review")
    p.add_argument("--state", help="open | closed")
    p = add("pii", "real-name data: keygen (the hall's key pair) or open TXN (for an authorised person)")
    p.add_argument("action", choices=["open", "keygen"])
    p.add_argument("txn", nargs="?")
    p.add_argument("--key", required=True, help="the hall's private key file")
    p.add_argument("--out", help="open: write the photos into this directory")
    p = add("cmd", "send a command to a kiosk and print its reply")
    p.add_argument("kiosk")
    p.add_argument("name")
    p.add_argument("--args", default="{}", help='JSON object, e.g. \'{"service":"topup"}\'')
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--hall")
    p.add_argument("--api", default=os.environ.get("HALLD_API", DEFAULT_API))
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s halld %(levelname)s %(name)s %(message)s")
    logging.getLogger("halld.mqtt").setLevel(logging.ERROR)
    if args.cmd == "serve":
        return _serve(args)
    if args.cmd == "cmd":
        return _command(args)
    if args.cmd == "pii":
        return _pii(args)
    db = connect(args.db)
    try:
        data = _query(db, args)
    finally:
        db.close()
    if data is None:
        print(f"no kiosk {args.kiosk}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        _print(args.cmd, data)
    return 0


def _pii(args: argparse.Namespace) -> int:
    from . import pii

    if args.action == "keygen":
        try:
            print(pii.keygen(args.key))
        except FileExistsError:
            print(f"{args.key} exists: a hall key is never overwritten", file=sys.stderr)
            return 1
        return 0
    if not args.txn:
        print("halld pii open TXN --key FILE", file=sys.stderr)
        return 2
    db = connect(args.db)
    try:
        shown = pii.open_txn(db, args.txn, args.key, args.out)
    except (pii.PiiError, OSError) as exc:
        print(f"cannot open: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .halld import HalldConfig, serve

    http_port = None
    http_host = "127.0.0.1"
    if args.http != "off":
        http_host, _, port = args.http.rpartition(":")
        http_port = int(port)
    config = HalldConfig(db=args.db, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, worker=args.worker,
                         halls=args.hall, boss_url=args.boss, boss_timeout_s=args.boss_timeout, ca_file=args.ca,
                         cert_file=args.cert, key_file=args.key, http_host=http_host or "127.0.0.1", http_port=http_port)
    asyncio.run(serve(args.db, config=config))
    return 0


def _query(db: Any, args: argparse.Namespace) -> Any:
    if args.cmd == "fleet":
        return queries.fleet(db)
    if args.cmd == "kiosk":
        return queries.kiosk(db, args.kiosk)
    if args.cmd == "txns":
        return queries.txns(db, args.kiosk, args.n)
    if args.cmd == "events":
        return queries.events(db, args.kiosk, args.n)
    if args.cmd == "recent":
        return queries.recent(db, args.n)
    if args.cmd == "refunds":
        return queries.refunds(db, args.state)
    return queries.reviews(db, args.state)


def _when(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else "never"


def _print(cmd: str, data: Any) -> None:
    from transactions.messages import yuan

    if cmd == "fleet":
        for k in data:
            cards = sum(v for v in (k["card_stock"] or {}).values() if isinstance(v, int))
            bad = sorted(n for n, h in (k["devices"] or {}).items() if h != "ok")
            print(f"{k['hall']}/{k['kiosk']}  {'在线 online ' if k['online'] else '离线 offline'}  session {k['session']}"
                  f"  last seen {_when(k['last_seen'])}  outbox {k['outbox_depth']}  state {k['state']}"
                  f"  cashbox {yuan(k['cashbox_fen'] or 0)} yuan  cards {cards}"
                  f"  {'faults: ' + ','.join(bad) if bad else 'devices ok'}"
                  f"{'  alarms: ' + ','.join(k['alarms']) if k['alarms'] else ''}")
    elif cmd == "txns":
        for t in data:
            print(f"{t['hall']}/{t['kiosk']} #{t['seq']} {t['service'] or '':<12} {t['state'] or '':<9} "
                  f"{yuan(t['amount_fen'] or 0):>9} yuan  txn {t['txn']}")
    elif cmd == "events":
        for e in data:
            print(f"{_when(e['received_at'])} {e['hall']}/{e['kiosk']} #{e['msg_seq']} {e['kind']:<16} "
                  f"{e['device'] or '':<10} {e['code'] or ''} {e['detail'] or ''}")
    elif cmd == "recent":
        for r in data:
            print(f"{r['hall']}/{r['kiosk']} {r['kind']:<10} {json.dumps(r['payload'], ensure_ascii=False)[:160]}")
    elif cmd == "refunds":
        for r in data:
            print(f"{r['hall']}/{r['kiosk']} {r['claim_code']} {yuan(r['fen'] or 0):>9} yuan {r['state']:<8} "
                  f"txn {r['txn']} {r['reason'] or ''}")
    elif cmd == "reviews":
        for r in data:
            print(f"{r['hall']}/{r['kiosk']} txn {r['txn']} {r['state']:<6} held {yuan(r['held_fen'] or 0)} yuan "
                  f"{r['reason'] or ''}{' -> ' + r['resolution'] if r['resolution'] else ''}")
    else:
        print(json.dumps(data, ensure_ascii=False, indent=2))


def _command(args: argparse.Namespace) -> int:
    try:
        cmd_args = json.loads(args.args)
    except ValueError as exc:
        print(f"--args is not JSON: {exc}", file=sys.stderr)
        return 2
    body = {"args": cmd_args, "timeout": args.timeout, **({"hall": args.hall} if args.hall else {})}
    req = urllib.request.Request(f"{args.api.rstrip('/')}/api/kiosks/{args.kiosk}/cmd/{args.name}",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout + 5) as resp:
            reply = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        reply = json.loads(exc.read() or b"{}")
    except OSError as exc:
        print(f"halld API at {args.api} unreachable: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(reply, ensure_ascii=False, indent=None if args.json else 2))
    return 0 if reply.get("ok") else 1

"""The `halld` command line: `serve`, queries straight from the database, `cmd` through the API.

Queries read the database halld writes (SQLite path or PostgreSQL URL, `--db` or $HALLD_DB) and
never create one: a mistyped path is an error that names it, not an empty table. They say which
database they read. `cmd` needs the running halld (it holds the MQTT session that waits for the
reply), so it goes through the HTTP API (`--api`, default http://127.0.0.1:8470).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from . import queries
from .db import connect

DEFAULT_API = "http://127.0.0.1:8470"
EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
EPILOG = """\
exit codes: 0 done; 1 not found (no such kiosk) or the kiosk answered a command with ok=false;
2 bad command line, or no hall database at --db; 3 the halld API is unreachable (cmd);
4 the halld API refused the token (cmd: none, wrong, or a role that may not send commands).
Queries (fleet, kiosk, txns, events, recent, refunds, reviews) open an existing database only:
the one `halld serve --db` writes, given by --db or $HALLD_DB (default ./hall.db).
"""


class NoDatabase(Exception):
    """--db names no halld database: nothing is created, the message says where we looked."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="halld", description="the hall server for self-service kiosks",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    db_default = os.environ.get("HALLD_DB", "hall.db")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if name != "cmd":
            p.add_argument("--db", default=db_default, help="SQLite path or postgresql:// URL (env HALLD_DB)")
        p.add_argument("--json", action="store_true", help="print every field as JSON (for scripts) instead of "
                       "the readable table" if name != "cmd" else "print the kiosk's reply on one JSON line")
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
    p.add_argument("--enrol", metavar="HOST:PORT", help="serve first-boot enrolment (HTTPS) here; needs "
                   "--enrol-cert, --enrol-key and --fleet-ca-dir (hall/enrol.py, docs/provisioning.md)")
    p.add_argument("--enrol-cert", help="server certificate kiosks verify (signed by the fleet CA)")
    p.add_argument("--enrol-key", help="its private key")
    p.add_argument("--fleet-ca-dir", help="directory with ca.crt and ca.key: the fleet CA that signs kiosks")
    p.add_argument("--updates-dir", help="serve the signed update bundles (*.kup) in this directory at "
                   "https://ENROL/updates/NAME, for the kiosks' `update` command (docs/provisioning.md)")
    p.add_argument("--http-name", action="append", default=[], metavar="NAME",
                   help="a Host name the API answers to besides IP addresses and localhost (a proxy's), repeatable")
    p.add_argument("--fleet", help='fleet file (TOML, H1 = ["K1", ...]): messages of any other kiosk are quarantined')
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
    p.add_argument("--token", default=os.environ.get("HALLD_TOKEN"),
                   help="open: an auditor's API token (env HALLD_TOKEN), checked and written to the audit log")
    p = add("quarantine", "messages halld refused to store, with the reason")
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--kiosk")
    p = sub.add_parser("broker-config", help="write the hall broker's TLS-only mosquitto.conf and ACL for a fleet",
                       description="Writes OUT/mosquitto.conf (one TLS listener, client certificates required, the "
                                   "limits of docs/security.md) and OUT/acl (each kiosk its own topics) from a fleet "
                                   "file. Run `mosquitto -c OUT/mosquitto.conf`; after changing the fleet, run this "
                                   "again and send mosquitto SIGHUP.")
    p.add_argument("--fleet", required=True, help='fleet file (TOML): one line per hall, H1 = ["K1", "K2"]')
    p.add_argument("--ca", required=True, help="the fleet CA certificate (kiosks' and halld's certificates are checked against it)")
    p.add_argument("--cert", required=True, help="the broker's server certificate (its SANs: the names kiosks connect to)")
    p.add_argument("--key", required=True, help="the broker's private key")
    p.add_argument("--out", required=True, help="directory to write mosquitto.conf and acl into")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument("--halld-user", action="append", default=[], metavar="CN",
                   help="a halld worker's certificate CN, repeatable (default: halld)")
    p.add_argument("--persistence", default="/var/lib/mosquitto", help="mosquitto's persistence directory")
    p.add_argument("--user", help="account mosquitto drops to (default: its own, mosquitto)")
    p.add_argument("--memory-limit", type=int, help="broker heap limit in bytes (default 512 MiB)")
    p = add("cmd", "send a command to a kiosk and print its reply")
    p.add_argument("kiosk")
    p.add_argument("name")
    p.add_argument("--args", default="{}", help='JSON object, e.g. \'{"service":"topup"}\'')
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--hall")
    p.add_argument("--api", default=os.environ.get("HALLD_API", DEFAULT_API))
    p.add_argument("--token", default=os.environ.get("HALLD_TOKEN"),
                   help="API token (env HALLD_TOKEN; make one with `halld user token NAME`)")
    from .usercli import add_parser

    add_parser(sub, db_default)
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
    if args.cmd == "user":
        from .usercli import main as user_main

        return user_main(args)
    if args.cmd == "broker-config":
        return _broker_config(args)
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `halld txns | head` ends quietly, as other tools do
    try:
        db, where = open_existing(args.db)
    except NoDatabase as exc:
        print(f"halld {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        data = _query(db, args)
    finally:
        db.close()
    if data is None:
        print(f"halld kiosk: no kiosk {args.kiosk} in {where}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(f"hall database: {where}\n")
        _print(args.cmd, data)
    return EXIT_OK


def open_existing(url: str) -> tuple[Any, str]:
    """The halld database at `url` and how to name it; NoDatabase if there is none (never creates one)."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(url)
        if parts.password:  # name the database, never print its password
            user, _, host = parts.netloc.rpartition("@")
            parts = parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}")
        where = f"{urllib.parse.urlunsplit(parts)} (PostgreSQL)"
    else:
        path = Path(url.removeprefix("sqlite://")).expanduser().resolve()
        where = str(path)
        if not path.is_file():
            raise NoDatabase(f"no hall database at {where} (give --db PATH or postgresql:// URL, or set HALLD_DB; "
                             "`halld serve --db` creates it)")
        url = str(path)
    try:
        db = connect(url, schema=False)
    except Exception as exc:  # sqlite3.DatabaseError (not a database), psycopg.OperationalError (no server)
        raise NoDatabase(f"cannot open {where}: {exc}") from None
    try:
        db.one("SELECT 1 FROM fleet LIMIT 1")
    except db.errors as exc:
        db.close()
        raise NoDatabase(f"{where} is not a halld database ({exc})") from None
    return db, where


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
    try:
        db, _ = open_existing(args.db)
    except NoDatabase as exc:
        print(f"halld pii: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from . import auth

    try:
        who = auth.token_holder(db, args.token, "pii")  # only an auditor opens sealed real-name data
        shown = pii.open_txn(db, args.txn, args.key, args.out)
        with db.transaction():
            auth.audit(db, who, "pii.open", args.txn, None, {"kiosk": shown.get("kiosk"), "fields": sorted(shown)})
    except auth.AuthError as exc:
        print(f"halld pii open: {exc}", file=sys.stderr)
        return EXIT_REFUSED
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
    fleet = None
    if args.fleet:
        from provisioning.certs import CertError

        from .mosquitto_secure import load_fleet

        try:
            fleet = load_fleet(args.fleet)
        except (OSError, ValueError, CertError) as exc:
            print(f"halld: fleet file {args.fleet}: {exc}", file=sys.stderr)
            return 2
    config = HalldConfig(db=args.db, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, worker=args.worker,
                         halls=args.hall, boss_url=args.boss, boss_timeout_s=args.boss_timeout, ca_file=args.ca,
                         cert_file=args.cert, key_file=args.key, http_host=http_host or "127.0.0.1", http_port=http_port,
                         http_names=args.http_name, fleet=fleet)
    if args.enrol:
        from .enrol import EnrolConfig

        missing = [o for o in ("enrol_cert", "enrol_key", "fleet_ca_dir") if not getattr(args, o)]
        if missing:
            print(f"halld: --enrol needs {', '.join('--' + m.replace('_', '-') for m in missing)}", file=sys.stderr)
            return 2
        host, _, port = args.enrol.rpartition(":")
        config.enrol = EnrolConfig(host or "0.0.0.0", int(port), args.enrol_cert, args.enrol_key, args.fleet_ca_dir,
                                   args.updates_dir or "")
    asyncio.run(serve(args.db, config=config))
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from provisioning.certs import CertError

    from .mosquitto_secure import MEMORY_LIMIT, acl_text, config_text, load_fleet

    try:
        fleet = load_fleet(args.fleet)
        acl = acl_text(fleet, args.halld_user or ["halld"])
    except (OSError, ValueError, CertError) as exc:
        print(f"halld broker-config: fleet file {args.fleet}: {exc}", file=sys.stderr)
        return 2
    for name in ("ca", "cert", "key"):
        if not os.path.isfile(getattr(args, name)):
            print(f"halld broker-config: --{name} {getattr(args, name)}: no such file", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    absolute = {n: Path(getattr(args, n)).resolve() for n in ("ca", "cert", "key")}
    (out / "acl").write_text(acl)
    (out / "mosquitto.conf").write_text(config_text(
        args.port, absolute["ca"], absolute["cert"], absolute["key"], (out / "acl").resolve(),
        Path(args.persistence), bind=args.bind, user=args.user, memory_limit=args.memory_limit or MEMORY_LIMIT))
    kiosks = sum(len(k) for k in fleet.values())
    print(f"wrote {out / 'mosquitto.conf'} (TLS on {args.bind}:{args.port}) and {out / 'acl'} "
          f"({kiosks} kiosks in {len(fleet)} halls); run: mosquitto -c {out / 'mosquitto.conf'}")
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
    if args.cmd == "quarantine":
        return queries.quarantine(db, args.kiosk, args.n)
    if args.cmd == "refunds":
        return queries.refunds(db, args.state)
    return queries.reviews(db, args.state)


def _when(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else "never"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(headers: list[str], rows: list[list[Any]], empty: str = "none") -> str:
    """Columns as wide as their widest cell (a Chinese character counts 2); an empty cell is "-",
    so columns never shift; no rows at all says `empty`."""
    if not rows:
        return empty
    cells = [[str(c) if c not in (None, "") else "-" for c in row] for row in rows]
    widths = [max(_width(r[i]) for r in [headers, *cells]) for i in range(len(headers))]
    return "\n".join("  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths)).rstrip()
                     for r in [headers, *cells])


def _listed(items: Any) -> str:
    return ",".join(str(i) for i in items) if items else "none"


def _cards(stock: Any) -> str:
    """Card stock by face value as the kiosk counts it; nothing counted yet is "unknown", not 0."""
    from transactions.messages import yuan

    known = {face: n for face, n in (stock or {}).items() if isinstance(n, int)}
    if not known:
        return "unknown"
    return " ".join(f"{yuan(int(face)) if str(face).isdigit() else face}:{n}" for face, n in sorted(known.items()))


def _status_summary(body: dict) -> str:
    """A status message in words: what matters first, never a JSON string cut in the middle."""
    if not isinstance(body, dict):
        return json.dumps(body, ensure_ascii=False)
    if not body.get("online"):
        return f"offline  session {body.get('session')}"
    return (f"online  session {body.get('session')}  state {body.get('state')}  outbox {body.get('outbox_depth')}"
            f"  cash {'INHIBITED' if body.get('cash_inhibited') else 'accepted'}"
            f"  disabled {_listed(body.get('disabled_services'))}  alarms {_listed(body.get('alarms'))}")


def _fleet_rows(data: list[dict]) -> list[list[Any]]:
    from transactions.messages import yuan

    rows = []
    for k in data:
        bad = sorted(n for n, h in (k["devices"] or {}).items() if h != "ok")
        rows.append([f"{k['hall']}/{k['kiosk']}", "在线 online" if k["online"] else "离线 offline",
                     k["state"] if k["online"] else f"(was {k['state'] or '-'})", k["session"],
                     _when(k["last_seen"]), k["outbox_depth"],
                     "INHIBITED" if k.get("cash_inhibited") else "accepted", _listed(k.get("disabled_services")),
                     yuan(k["cashbox_fen"]) if k["cashbox_fen"] is not None else "unknown", _cards(k["card_stock"]),
                     "faults: " + ",".join(bad) if bad else "ok", _listed(k["alarms"])])
    return rows


FLEET_HEADERS = ["KIOSK", "LINK", "STATE", "SESSION", "LAST SEEN", "OUTBOX", "CASH", "DISABLED", "CASHBOX 元",
                 "CARDS 元:n", "DEVICES", "ALARMS"]


def _txn_rows(data: list[dict]) -> list[list[Any]]:
    from transactions.messages import yuan

    return [[_when(t["received_at"]), f"{t['hall']}/{t['kiosk']}", t["seq"], t["service"], t["state"],
             yuan(t["amount_fen"]) if t["amount_fen"] is not None else "", t["txn"]] for t in data]


TXN_HEADERS = ["RECEIVED", "KIOSK", "SEQ", "SERVICE", "STATE", "AMOUNT 元", "TXN"]


def _event_rows(data: list[dict]) -> list[list[Any]]:
    return [[_when(e["received_at"]), f"{e['hall']}/{e['kiosk']}", e["msg_seq"], e["kind"], e["device"], e["code"],
             e["detail"]] for e in data]


EVENT_HEADERS = ["RECEIVED", "KIOSK", "SEQ", "KIND", "DEVICE", "CODE", "DETAIL"]


def _refund_rows(data: list[dict]) -> list[list[Any]]:
    from transactions.messages import yuan

    return [[f"{r['hall']}/{r['kiosk']}", r["claim_code"], yuan(r["fen"] or 0), r["state"], r["txn"], r["reason"]]
            for r in data]


REFUND_HEADERS = ["KIOSK", "CLAIM CODE", "AMOUNT 元", "STATE", "TXN", "REASON"]


def _review_rows(data: list[dict]) -> list[list[Any]]:
    from transactions.messages import yuan

    return [[f"{r['hall']}/{r['kiosk']}", r["txn"], r["state"], yuan(r["held_fen"] or 0), r["reason"],
             r["resolution"]] for r in data]


REVIEW_HEADERS = ["KIOSK", "TXN", "STATE", "HELD 元", "REASON", "RESOLUTION"]


def _print_kiosk(k: dict) -> None:
    from transactions.messages import yuan

    bad = sorted(n for n, h in (k.get("devices") or {}).items() if h != "ok")
    status = k.get("status") if isinstance(k.get("status"), dict) else {}
    facts = [
        ("kiosk", f"{k['hall']}/{k['kiosk']}"),
        ("link", f"{'在线 online' if k['online'] else '离线 offline'}, boot session {k['session']}, "
                 f"last seen {_when(k['last_seen'])}"),
        ("state", k["state"] if k["online"] else f"(was {k['state']})"),
        ("firmware", f"{k.get('version')}, config {k.get('config_hash')}"),
        ("cash", "INHIBITED by the hall" if status.get("cash_inhibited") else "accepted"),
        ("disabled", _listed(status.get("disabled_services"))),
        ("alarms", _listed(k.get("alarms"))),
        ("outbox", f"{k['outbox_depth']} waiting on the kiosk; hall has acked up to msg_seq {k.get('acked_msg_seq')}"),
        ("cash box", f"{yuan(k['cashbox_fen'])} 元" if k["cashbox_fen"] is not None else "unknown"),
        ("hopper", f"{yuan(k['hopper_fen'])} 元" if k.get("hopper_fen") is not None else "unknown"),
        ("cards", _cards(k.get("card_stock"))),
        ("devices", "all ok" if not bad else "faults: " + ", ".join(f"{n} {k['devices'][n]}" for n in bad)),
    ]
    for label, value in facts:
        print(f"{label:<9} {value}")
    for title, headers, rows in (("recent transactions", TXN_HEADERS, _txn_rows(k.get("recent_txns") or [])),
                                 ("recent events", EVENT_HEADERS, _event_rows(k.get("recent_events") or [])),
                                 ("open reviews", REVIEW_HEADERS, _review_rows(k.get("open_reviews") or [])),
                                 ("unclaimed refunds", REFUND_HEADERS, _refund_rows(k.get("open_refunds") or []))):
        print(f"\n{title}:")
        print(table(headers, rows))


def _print(cmd: str, data: Any) -> None:
    if cmd == "kiosk":
        _print_kiosk(data)
    elif cmd == "fleet":
        print(table(FLEET_HEADERS, _fleet_rows(data), "no kiosk has reported yet"))
    elif cmd == "txns":
        print(table(TXN_HEADERS, _txn_rows(data)))
    elif cmd == "events":
        print(table(EVENT_HEADERS, _event_rows(data)))
    elif cmd == "recent":
        print(table(["RECEIVED", "KIOSK", "KIND", "WHAT"],
                    [[_when(r["received_at"]), f"{r['hall']}/{r['kiosk']}", r["kind"],
                      _status_summary(r["payload"]) if r["kind"] == "status"
                      else json.dumps(r["payload"], ensure_ascii=False)] for r in data]))
    elif cmd == "refunds":
        print(table(REFUND_HEADERS, _refund_rows(data)))
    elif cmd == "reviews":
        print(table(REVIEW_HEADERS, _review_rows(data)))
    elif cmd == "quarantine":
        print(table(["RECEIVED", "KIOSK", "LEAF", "MSG_SEQ", "BYTES", "REASON"],
                    [[_when(q["received_at"]), f"{q['hall']}/{q['kiosk']}", q["leaf"], q["msg_seq"], q["size"],
                      q["reason"]] for q in data]))
    else:
        print(json.dumps(data, ensure_ascii=False, indent=2))


def _command(args: argparse.Namespace) -> int:
    try:
        cmd_args = json.loads(args.args)
    except ValueError as exc:
        print(f"--args is not JSON: {exc}", file=sys.stderr)
        return 2
    body = {"args": cmd_args, "timeout": args.timeout, **({"hall": args.hall} if args.hall else {})}
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    req = urllib.request.Request(f"{args.api.rstrip('/')}/api/kiosks/{args.kiosk}/cmd/{args.name}",
                                 data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=args.timeout + 5) as resp:
            reply = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        reply = json.loads(exc.read() or b"{}")
        if exc.code in (401, 403):
            print(f"halld API at {args.api}: {reply.get('message', exc.reason)} (--token or HALLD_TOKEN)",
                  file=sys.stderr)
            return EXIT_REFUSED
    except OSError as exc:
        print(f"halld API at {args.api} unreachable: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(reply, ensure_ascii=False, indent=None if args.json else 2))
    return 0 if reply.get("ok") else 1

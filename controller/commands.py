"""Hall -> kiosk commands (docs/mqtt.md "Commands"): one table of name -> (args validator, handler).

A command arrives on ``kiosk/v1/H/K/cmd/{name}`` as ``{"schema":1,"args":{...}}`` with an MQTT 5
response topic (under our own ``cmdresp/``) and correlation data. Whatever arrives — an unknown
name, garbage bytes, wrong argument types, a handler that fails — ends in an error reply
(``unknown_command | bad_args | bad_payload | refused | failed``) and a log line, never a crash.
A command without a response topic is still executed when valid; nothing is sent back.

Every command carries an ``id`` (the idempotency key) and a ``deadline`` (UNIX time, the hall's
clock) besides its MQTT message expiry (issue 16: a command staff saw time out ran when the kiosk
came back, and a retry ran twice). A command past its deadline (with CLOCK_SKEW_S of slack) is
refused ``expired`` and not run; one whose deadline lies further ahead than MAX_AHEAD_S is refused
as ``bad_payload`` (it would outlive the dedup memory). A command whose id was seen before is not
run again: it gets the first run's reply. Ids are remembered until their deadline has passed, after
which any copy is refused as expired anyway — in memory and in the journal (its ``commands``
table), so a copy the broker delivers again after a kioskd restart is not run twice either.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from transactions import records
from transactions.cashlock import HALL_INHIBIT

from .link import HallLink, Incoming, LinkDown
from .logs import fields

if TYPE_CHECKING:
    from .kiosk import Kiosk

log = logging.getLogger("kioskd.commands")

CLOCK_SKEW_S = 30.0  # the kiosk's clock may be this far behind the hall's before a fresh command expires
MAX_AHEAD_S = 900.0  # a deadline further ahead than this is not a deadline
# a copy of a command that a kioskd restart cut short: it may or may not have taken effect
CUT_SHORT = {"ok": False, "error": {"code": "failed", "message": "kioskd restarted while this command ran; it is not "
                                    "run again (it may or may not have taken effect): check, then send it anew"}}
ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Reply:
    """A handler's result, with something to do once the reply is on its way (restart)."""

    result: Any = None
    then: Callable[[], None] | None = field(default=None, repr=False)


# -- argument validators: args dict in, checked args out, CommandError("bad_args") otherwise ------

Validator = Callable[[dict[str, Any]], dict[str, Any]]


def shape(required: dict[str, Any] | None = None, optional: dict[str, Any] | None = None) -> Validator:
    """Exactly these keys with these types (``float`` accepts int; ``int`` refuses bool)."""
    required, optional = required or {}, optional or {}

    def check(args: dict[str, Any]) -> dict[str, Any]:
        for key in args:
            if key not in required and key not in optional:
                raise CommandError("bad_args", f"unknown argument {key!r} (expected: {', '.join([*required, *optional]) or 'none'})")
        for key, tp in {**required, **optional}.items():
            if key not in args:
                if key in required:
                    raise CommandError("bad_args", f"missing argument {key!r}")
                continue
            value = args[key]
            if tp is Any:
                continue
            if not isinstance(value, tp) or (isinstance(value, bool) and tp is not bool):
                want = "number" if isinstance(tp, tuple) else tp.__name__
                raise CommandError("bad_args", f"{key}: expected {want}, got {type(value).__name__}")
        return args
    return check


def _service(args: dict[str, Any]) -> dict[str, Any]:
    from transactions import FLOWS

    shape({"service": str})(args)
    if args["service"] not in FLOWS:
        raise CommandError("bad_args", f"unknown service {args['service']!r} (services: {', '.join(FLOWS)})")
    return args


def _sync_time(args: dict[str, Any]) -> dict[str, Any]:
    shape({"ts": (int, float)})(args)
    if not 1_500_000_000 <= args["ts"] <= 4_000_000_000:  # 2017..2096: anything else is a broken sender
        raise CommandError("bad_args", f"ts {args['ts']!r} is not a plausible UNIX time")
    return args


def _one_of(key: str, values: tuple[str, ...], ident: str) -> Validator:
    def check(args: dict[str, Any]) -> dict[str, Any]:
        shape({ident: str, key: str}, {"note": str})(args)
        if args[key] not in values:
            raise CommandError("bad_args", f"{key}: expected one of {', '.join(values)}, got {args[key]!r}")
        return args
    return check


NOTICES_MAX, NOTICE_CHARS = 5, 120
DENOMINATIONS_FEN = (10, 50, 100, 500, 1000, 2000, 5000, 10000)  # RMB coins 1角 5角 1元, notes 1..100元
# the hall's device settings (apply_settings) -> the kiosk.toml key each one is kept under
SETTING_KEYS = {"services": "kiosk.services", "denominations": "flows.denominations", "notices": "ui.notices"}


def _settings(args: dict[str, Any]) -> dict[str, Any]:
    from transactions import FLOWS

    shape(optional={"services": list, "denominations": list, "notices": list})(args)
    if not args:
        raise CommandError("bad_args", f"nothing to set (settings: {', '.join(SETTING_KEYS)})")
    for service in args.get("services", []):
        if service not in FLOWS:
            raise CommandError("bad_args", f"services: unknown service {service!r} (services: {', '.join(FLOWS)})")
    for fen in args.get("denominations", []):
        if type(fen) is not int or fen not in DENOMINATIONS_FEN:
            raise CommandError("bad_args", f"denominations: {fen!r} is not one of {DENOMINATIONS_FEN} (fen)")
    notices = args.get("notices", [])
    if len(notices) > NOTICES_MAX or not all(isinstance(n, str) and 0 < len(n) <= NOTICE_CHARS and n.isprintable()
                                             for n in notices):
        raise CommandError("bad_args", f"notices: at most {NOTICES_MAX} lines of 1-{NOTICE_CHARS} printable characters")
    return args


def _cards(args: dict[str, Any]) -> dict[str, Any]:
    shape({"face_fen": int, "added": int})(args)
    if not 1 <= args["added"] <= 1000:
        raise CommandError("bad_args", "added: 1 to 1000 cards")
    return args


# -- handlers --------------------------------------------------------------------------------------

Handler = Callable[["Kiosk", dict[str, Any]], Awaitable[Any]]


async def enable_service(k: "Kiosk", args: dict[str, Any]) -> Any:
    k.disabled_services.discard(args["service"])
    k.offer_changed()
    return {"service": args["service"], "enabled": True, "disabled": sorted(k.disabled_services)}


async def disable_service(k: "Kiosk", args: dict[str, Any]) -> Any:
    k.disabled_services.add(args["service"])
    k.offer_changed()
    return {"service": args["service"], "enabled": False, "disabled": sorted(k.disabled_services)}


async def inhibit_cash(k: "Kiosk", args: dict[str, Any]) -> Any:
    """Inhibit every acceptor now, and offer no cash-taking service until released (a flow would
    otherwise enable its acceptors again); a customer in flight finishes as on a door opening:
    the intake stops and pays back what is in. Services that take no cash go on."""
    if args["inhibit"]:
        k.cash_lock.engage(HALL_INHIBIT)  # first: an intake about to enable its acceptors must see it
    else:
        k.cash_lock.release(HALL_INHIBIT)
    done = []
    if args["inhibit"] and k.devices is not None:
        for acceptor in k.devices.of_kind("cash_acceptor"):
            await acceptor.set_inhibit(True)
            done.append(acceptor.name)
    k.offer_changed()
    return {"inhibit": k.cash_inhibited, "acceptors": done}


async def reprint(k: "Kiosk", args: dict[str, Any]) -> Any:
    from transactions import SPECS, books
    from transactions.messages import both, yuan

    from hal.peripherals import Receipt

    txn = await books.transaction(k.require_journal(), args["txn"])
    if txn is None:
        raise CommandError("refused", f"no transaction {args['txn']!r}")
    if txn["state"] == "open":
        raise CommandError("refused", f"transaction {args['txn']} is still open")
    printer = next(iter(k.devices.of_kind("printer")), None) if k.devices else None
    if printer is None:
        raise CommandError("refused", "this kiosk has no printer")
    spec = SPECS.get(txn["service"])
    title = f"{spec.title_zh} / {spec.title_en}" if spec else txn["service"]
    phone = txn.get("phone") or ""
    led = txn["ledger"]
    lines = [(both("label_txn"), txn["id"]), (both("label_status"), txn["state"])]
    if phone:
        lines.append((both("label_phone"), phone[:3] + "****" + phone[-4:] if len(phone) >= 11 else phone))
    lines.append((both("label_amount"), yuan(int(txn["amount_fen"] or 0))))
    if led.get("cash_in"):
        lines.append((both("label_paid"), yuan(int(led["cash_in"]))))
    if led.get("change_paid"):
        lines.append((both("label_change"), yuan(int(led["change_paid"]))))
    for v in txn["vouchers"]:
        lines.append((both("label_claim_code"), v["claim_code"]))
    lines.append(("时间 / Time", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(txn["finished_at"] or txn["opened_at"]))))
    receipt = Receipt(title=f"补打 / REPRINT  {title}", lines=lines, footer=both("receipt_footer", hotline=k.config.flows.hotline))
    try:
        await printer.print_receipt(receipt)
    except Exception as exc:  # PrintFailed and device faults: an answer for the hall, not a crash
        raise CommandError("failed", f"printer: {exc}") from None
    await k.journal_event({"kind": "reprint", "txn": txn["id"]})
    return {"txn": txn["id"], "printed": True}


async def sync_time(k: "Kiosk", args: dict[str, Any]) -> Any:
    """Set the RTC chip(s) to the hall's time. The system clock is chrony's (kioskd runs with
    ProtectClock): we report its offset so the hall sees a drifting kiosk."""
    ts = float(args["ts"])
    out: dict[str, Any] = {"system_offset_s": round(ts - time.time(), 3), "rtc": {}}
    for device in (k.devices.devices.values() if k.devices else ()):
        if hasattr(device, "write_time") and hasattr(device, "read_time"):
            try:
                before = await device.read_time()
                await device.write_time(dt.datetime.fromtimestamp(ts, dt.timezone.utc).replace(tzinfo=None))
                out["rtc"][device.name] = {"offset_s": round(ts - before.replace(tzinfo=dt.timezone.utc).timestamp(), 3)
                                           if before else None, "set": True}
            except Exception as exc:
                out["rtc"][device.name] = {"set": False, "error": str(exc)}
    return out


async def request_telemetry(k: "Kiosk", args: dict[str, Any]) -> Any:
    assert k.link is not None
    try:
        return await k.link.publish_telemetry()
    except LinkDown as exc:
        raise CommandError("failed", str(exc)) from None


async def set_config(k: "Kiosk", args: dict[str, Any]) -> Any:
    from .config import ConfigError

    try:
        return await k.set_config(args["key"], args["value"])
    except ConfigError as exc:
        raise CommandError("bad_args", f"{exc.key}: {exc.problem}" if exc.key else exc.problem) from None


async def apply_settings(k: "Kiosk", args: dict[str, Any]) -> Any:
    """The hall's device settings (services offered, cash denominations accepted, idle-screen
    notices), kept in kiosk.toml in one atomic write and applied at once (the menu, the next cash
    intake and the next screen read them)."""
    from .config import ConfigError

    try:
        done = await k.set_configs({SETTING_KEYS[name]: value for name, value in args.items()})
    except ConfigError as exc:
        raise CommandError("bad_args", f"{exc.key}: {exc.problem}" if exc.key else exc.problem) from None
    return {**args, **done}


async def load_cards(k: "Kiosk", args: dict[str, Any]) -> Any:
    """Staff loaded recharge cards into a dispenser: the stock counter grows and the hall is told
    (a cards_loaded event, then the status with the new level)."""

    face, added = args["face_fen"], args["added"]
    if face not in k.config.flows.card_prices:
        raise CommandError("refused", f"this kiosk sells no {face}-fen card (faces: {sorted(k.config.flows.card_prices)})")

    def load(conn: Any) -> int:
        now = time.time()
        stock = records.adjust_counter(conn, "card_stock", str(face), added, now)
        records.enqueue(conn, "event", {"kind": "cards_loaded", "face_fen": face, "added": added, "stock": stock,
                                        "at": now}, now)
        return stock

    stock = await k.require_journal().write(load)
    await k.outbox_moved()
    k.offer_changed()
    return {"face_fen": face, "added": added, "stock": stock}


async def restart(k: "Kiosk", args: dict[str, Any]) -> Any:
    return Reply({"restarting": True, "in_flight": k.admission.in_flight}, then=k.request_restart)


async def resolve_review(k: "Kiosk", args: dict[str, Any]) -> Any:
    journal = k.require_journal()
    try:
        result = await journal.write(_resolve_review, args["txn"], args["resolution"], args.get("note", ""), time.time())
    except ValueError as exc:
        raise CommandError("refused", str(exc)) from None
    await k.outbox_moved()
    return result


def _resolve_review(conn: Any, txn: str, resolution: str, note: str, now: float) -> dict:
    """A person has looked at a transaction held for review: the resolution is recorded on it and
    reported. The ledger is not rewritten: what was held stays held in the kiosk's books; the
    resolution says what became of it (refunded at the counter, credited by hand, written off)."""
    from transactions import records

    row = conn.execute("SELECT state, data FROM transactions WHERE id = ?", (txn,)).fetchone()
    if row is None:
        raise ValueError(f"no transaction {txn!r}")
    if row["state"] != "review":
        raise ValueError(f"transaction {txn} is {row['state']}, not held for review")
    data = json.loads(row["data"])
    if "review_resolution" in data:
        raise ValueError(f"transaction {txn} was already resolved ({data['review_resolution']['resolution']})")
    held = records.ledger(conn, txn).held_for_review
    data["review_resolution"] = {"resolution": resolution, "note": note, "at": now, "held_fen": held}
    conn.execute("UPDATE transactions SET data = ?, updated_at = ? WHERE id = ?",
                 (json.dumps(data, ensure_ascii=False, sort_keys=True), now, txn))
    records.enqueue(conn, "event", {"kind": "review_resolved", "txn": txn, "resolution": resolution,
                                    "note": note, "held_fen": held, "at": now}, now)
    return {"txn": txn, "resolution": resolution, "held_fen": held}


async def resolve_refund(k: "Kiosk", args: dict[str, Any]) -> Any:
    from transactions import books

    try:
        row = await books.claim_voucher(k.require_journal(), args["claim"])
    except ValueError as exc:
        raise CommandError("refused", str(exc)) from None
    await k.outbox_moved()
    return {"claim": args["claim"], "txn": row["txn"], "fen": row["fen"], "resolution": "paid"}


def _update(args: dict[str, Any]) -> dict[str, Any]:
    from .updater import check_args

    return check_args(args)


async def update(k: "Kiosk", args: dict[str, Any]) -> Any:
    """A/B update (controller/updater.py): accepted or refused at once, installed in the background."""
    from .updater import Refused

    if k.updater is None:
        raise CommandError("refused", "kioskd is starting")
    try:
        return await k.updater.announce(args)
    except Refused as exc:
        raise CommandError("refused", str(exc)) from None


COMMANDS: dict[str, tuple[Validator, Handler]] = {
    "enable_service": (_service, enable_service),
    "disable_service": (_service, disable_service),
    "inhibit_cash": (shape({"inhibit": bool}), inhibit_cash),
    "reprint": (shape({"txn": str}), reprint),
    "sync_time": (_sync_time, sync_time),
    "request_telemetry": (shape(), request_telemetry),
    "set_config": (shape({"key": str, "value": Any}), set_config),
    "restart": (shape(), restart),
    "apply_settings": (_settings, apply_settings),
    "load_cards": (_cards, load_cards),
    "resolve_review": (_one_of("resolution", ("refunded", "credited", "written_off"), "txn"), resolve_review),
    "resolve_refund": (_one_of("resolution", ("paid",), "claim"), resolve_refund),
    "update": (_update, update),
}


# -- dispatch --------------------------------------------------------------------------------------

def envelope(payload: bytes, now: float) -> tuple[str, float, dict[str, Any]]:
    """The command's id, deadline and body; CommandError("bad_payload" | "expired") otherwise."""
    try:
        body = json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError included
        raise CommandError("bad_payload", f"not JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise CommandError("bad_payload", "nested too deep") from None
    if not isinstance(body, dict) or body.get("schema") != 1:
        raise CommandError("bad_payload", 'expected {"schema":1,"id":"...","deadline":<unix time>,"args":{...}}')
    cid, deadline = body.get("id"), body.get("deadline")
    if not isinstance(cid, str) or not ID_RE.fullmatch(cid):
        raise CommandError("bad_payload", "id: expected the command's idempotency key (letters, digits, _ . : -)")
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool) or deadline > now + MAX_AHEAD_S:
        raise CommandError("bad_payload", f"deadline: expected a UNIX time at most {MAX_AHEAD_S:g} s ahead")
    if deadline + CLOCK_SKEW_S < now:
        raise CommandError("expired", f"the hall stopped waiting {now - deadline:.0f} s ago (deadline {deadline:.0f});"
                                      " not run")
    return cid, float(deadline), body


def parse(name: str, payload: bytes) -> tuple[Validator, Handler, dict[str, Any]]:
    if name not in COMMANDS:
        raise CommandError("unknown_command", f"unknown command {name!r} (known: {', '.join(COMMANDS)})")
    _, _, body = envelope(payload, time.time())
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise CommandError("bad_payload", "args must be an object")
    validator, handler = COMMANDS[name]
    return validator, handler, validator(dict(args))


async def run(kiosk: "Kiosk", name: str, payload: bytes) -> Reply | dict[str, Any]:
    """Validate and execute one command; the reply envelope (without schema) or a Reply to unwrap."""
    try:
        _, handler, args = parse(name, payload)
        result = await handler(kiosk, args)
    except CommandError as exc:
        log.warning("command refused", extra=fields(command=name, code=exc.code, error=str(exc)))
        return {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
    except Exception as exc:
        log.exception("command failed", extra=fields(command=name))
        return {"ok": False, "error": {"code": "failed", "message": f"{type(exc).__name__}: {exc}"}}
    log.info("command done", extra=fields(command=name))
    return result if isinstance(result, Reply) else Reply(result)


class Commands:
    """Subscribes ``cmd/#`` on the link and answers each command on its response topic."""

    def __init__(self, kiosk: "Kiosk", link: HallLink) -> None:
        self.kiosk = kiosk
        self.link = link
        self.reply_prefix = link.topic("cmdresp/")
        self._seen: dict[str, tuple[float, asyncio.Future]] = {}  # id -> (deadline, the first run's reply)
        link.on("cmd/#", self.handle, concurrent=True)

    def _forget_expired(self, now: float) -> None:
        for cid in [c for c, (deadline, _) in self._seen.items() if deadline + CLOCK_SKEW_S < now]:
            del self._seen[cid]

    async def handle(self, message: Incoming) -> None:
        name = message.leaf[len("cmd/"):]
        now = time.time()
        self._forget_expired(now)
        outcome: Reply | dict[str, Any] | None = None
        try:
            cid, deadline, _ = envelope(message.payload, now)
        except CommandError as exc:
            log.warning("command refused", extra=fields(command=name, code=exc.code, error=str(exc)))
            reply = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
        else:
            if cid in self._seen:  # a retry or a redelivery: the first run's reply, not a second run
                log.info("command repeated: not run again", extra=fields(command=name, id=cid))
                reply = await asyncio.shield(self._seen[cid][1])
            else:
                first: asyncio.Future = asyncio.get_running_loop().create_future()
                self._seen[cid] = (deadline, first)
                journal = self.kiosk.journal
                known, stored = (await journal.read(records.command_seen, cid)) if journal else (False, None)
                if known:  # run before this kioskd started: never twice
                    log.warning("command run before a restart: not run again", extra=fields(command=name, id=cid))
                    reply = stored or CUT_SHORT
                    first.set_result(reply)
                else:
                    if journal:
                        await journal.write(records.command_started, cid, name, deadline, now - CLOCK_SKEW_S)
                    try:
                        outcome = await run(self.kiosk, name, message.payload)
                        reply = {"ok": True, "result": outcome.result} if isinstance(outcome, Reply) else outcome
                        if journal:
                            await journal.write(records.command_finished, cid, reply)
                    finally:
                        if not first.done():  # cancelled mid-run: a repeat gets a clear answer, not a hang
                            first.set_result(reply if outcome is not None else
                                             {"ok": False, "error": {"code": "failed", "message": "interrupted"}})
        if message.response_topic is None:
            log.info("command without response topic: no reply", extra=fields(command=name, ok=reply["ok"]))
        elif not message.response_topic.startswith(self.reply_prefix):
            log.warning("response topic outside our cmdresp/: no reply", extra=fields(command=name, topic=message.response_topic))
        else:
            try:
                await self.link.publish(None, reply, topic=message.response_topic, correlation=message.correlation)
            except LinkDown as exc:
                log.warning("command reply lost with the link", extra=fields(command=name, error=str(exc)))
        if isinstance(outcome, Reply) and outcome.then is not None:
            outcome.then()

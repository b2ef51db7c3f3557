"""One kiosk's page: status, telemetry, events, the commands sent to it, cash counts, and the
operator's buttons (inhibit cash, switch a service off/on, restart, record a cash collection).

A button is a form POST (CSRF checked by hall.auth's middleware, role `operator`) that goes through
the same command path as `POST /api/kiosks/{kiosk}/cmd/{name}` (hall.commands: logged in the
`commands` table before it is published) and writes an audit entry with the kiosk's state before
and its reply after. The answer is a redirect back to the page (a reload never resends a restart).
"""
from __future__ import annotations

import urllib.parse
from typing import Any

from aiohttp import web

from .. import auth, cashcount, queries, settings
from ..auth import PRINCIPAL, audited, requires
from ..commands import CommandError
from . import COMMANDS, READ, WRITE, render

routes = web.RouteTableDef()

# what a button may ask: form action -> (command, args); services are checked against SERVICES
ACTIONS = {
    "inhibit_cash": ("inhibit_cash", {"inhibit": True}),
    "release_cash": ("inhibit_cash", {"inhibit": False}),
    "disable_service": ("disable_service", None),
    "enable_service": ("enable_service", None),
    "restart": ("restart", {}),
}
SERVICE_NAMES = settings.services()  # the kiosks' own flow names (reports.SERVICE_NAMES are the reports' groups)
SERVICES = list(SERVICE_NAMES)
TIMEOUT_S = 15.0


async def _kiosk(request: web.Request) -> dict[str, Any]:
    row = await request.app[READ](queries.kiosk, request.match_info["kiosk"])
    if row is None:
        raise web.HTTPNotFound(text="404: no kiosk by that name has reported to this hall")
    return row


def _back(kiosk: str, **result: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/kiosks/{urllib.parse.quote(kiosk, safe='')}?" + urllib.parse.urlencode(result))


def _said(row: dict[str, Any]) -> dict[str, Any]:
    """What the hall told the kiosk, as its latest status says (republished on every change)."""
    status = row.get("status") if isinstance(row.get("status"), dict) else {}
    services = status.get("disabled_services")
    return {"cash_inhibited": bool(status.get("cash_inhibited")),
            "disabled_services": [str(s) for s in services] if isinstance(services, list) else []}


async def send(request: web.Request, hall: str, kiosk: str, name: str, args: dict[str, Any]) -> tuple[dict, str]:
    """A command through hall.commands (logged before and after); the reply and its error code ("" if ok)."""
    commands = request.app[COMMANDS]
    try:
        if commands is None:
            raise CommandError("unavailable", "commands are not enabled on this halld")
        reply = await commands.send(hall, kiosk, name, args, timeout=TIMEOUT_S)
        code = "" if reply.get("ok") else str((reply.get("error") or {}).get("code") or "refused")
    except CommandError as exc:
        reply, code = {"ok": False, "error": {"code": exc.code, "message": exc.message}}, exc.code
    return reply, code


@routes.get("/kiosks/{kiosk}")
async def kiosk_page(request: web.Request) -> web.Response:
    row = await _kiosk(request)
    kiosk = row["kiosk"]
    return render(request, "kiosk.html", k=row, said=_said(row),
                  events=await request.app[READ](queries.events, kiosk, 50),
                  commands=await request.app[READ](queries.commands, kiosk, 20),
                  counts=await request.app[READ](cashcount.counts, kiosk, 10),
                  services=SERVICES, service_names=SERVICE_NAMES,
                  result={k: request.query.get(k, "")[:200] for k in ("did", "ok", "code", "diff")})


@routes.post("/kiosks/{kiosk}/command")
@requires("operate")
@audited
async def kiosk_command(request: web.Request) -> web.StreamResponse:
    row = await _kiosk(request)
    form = await request.post()
    action = str(form.get("action") or "")
    if action not in ACTIONS:
        raise web.HTTPBadRequest(text=f"400: unknown action (known: {', '.join(ACTIONS)})")
    name, args = ACTIONS[action]
    if args is None:
        service = str(form.get("service") or "")
        if service not in SERVICES:
            raise web.HTTPBadRequest(text=f"400: unknown service (known: {', '.join(SERVICES)})")
        args = {"service": service}
    before = {"online": row.get("online"), **_said(row)}
    who, target = request[PRINCIPAL].name, f"{row['hall']}/{row['kiosk']}"
    reply, code = await send(request, row["hall"], row["kiosk"], name, args)
    await request.app[WRITE](auth.audit, who, f"kiosk.{name}", target, before, {"args": args, "reply": reply})
    raise _back(row["kiosk"], did=action, ok="1" if reply.get("ok") else "0", code=code)


@routes.post("/kiosks/{kiosk}/cash")
@requires("operate")
@audited  # cashcount.record writes the entry in the same transaction as the count
async def kiosk_cash(request: web.Request) -> web.StreamResponse:
    row = await _kiosk(request)
    form = await request.post()
    try:
        counted = cashcount.parse_yuan(str(form.get("counted") or ""))
    except ValueError:
        raise _back(row["kiosk"], did="cash", ok="0", code="bad_amount") from None
    rec = await request.app[WRITE](cashcount.record, row["hall"], row["kiosk"], counted, str(form.get("note") or ""),
                                   request[PRINCIPAL].name)
    raise _back(row["kiosk"], did="cash", ok="1", diff="" if rec["diff_fen"] is None else str(rec["diff_fen"]))

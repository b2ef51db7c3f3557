"""终端设置 / The device settings page (`/settings`, admin): services, denominations and idle-screen
notices pushed to one kiosk or every kiosk of a hall (hall.settings, the apply_settings command)."""
from __future__ import annotations

import asyncio
import urllib.parse

from aiohttp import web

from .. import queries, settings
from ..auth import PRINCIPAL, audited, requires
from . import READ, WRITE, kioskpages, render

routes = web.RouteTableDef()


async def _page(request: web.Request, status: int = 200, error: str = "") -> web.Response:
    fleet = await request.app[READ](queries.fleet, None)
    return render(request, "settings.html", status=status, error=error, fleet=fleet,
                  halls=sorted({k["hall"] for k in fleet}), pushed=await request.app[READ](settings.pushed),
                  services=settings.services(), denominations=settings.DENOMINATIONS_FEN,
                  result={k: request.query.get(k, "")[:200] for k in ("ok", "failed", "codes")})


@routes.get("/settings")
@requires("admin")
async def settings_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/settings")
@requires("admin")
@audited  # settings.record audits every kiosk's push
async def settings_push(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    try:
        args = settings.parse([str(s) for s in form.getall("services", [])],
                              [str(d) for d in form.getall("denominations", [])], str(form.get("notices") or ""))
    except ValueError as exc:
        return await _page(request, 400, str(exc))
    target = str(form.get("target") or "")
    fleet = await request.app[READ](queries.fleet, None)
    if target.startswith("hall:"):
        kiosks = [(k["hall"], k["kiosk"]) for k in fleet if k["hall"] == target[5:]]
    else:
        kiosks = [(k["hall"], k["kiosk"]) for k in fleet if k["kiosk"] == target[6:] and target.startswith("kiosk:")]
    if not kiosks:
        return await _page(request, 400, "choose a kiosk or a hall that has reported")
    who = request[PRINCIPAL].name

    async def push(hall: str, kiosk: str) -> str:
        reply, code = await kioskpages.send(request, hall, kiosk, "apply_settings", args)
        await request.app[WRITE](settings.record, hall, kiosk, args, reply, code, who)
        return code

    codes = await asyncio.gather(*(push(h, k) for h, k in kiosks))
    failed = [c for c in codes if c]
    raise web.HTTPSeeOther("/settings?" + urllib.parse.urlencode(
        {"ok": str(len(codes) - len(failed)), "failed": str(len(failed)), "codes": ",".join(sorted(set(failed)))}))

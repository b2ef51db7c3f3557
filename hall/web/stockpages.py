"""放卡维护 / The card stock page (`/stock`): levels and alerts per kiosk, loading cards into a kiosk's
dispenser (the `load_cards` command), and a suggestion of how to share out a delivery (hall.stock)."""
from __future__ import annotations

import urllib.parse

from aiohttp import web

from .. import queries, stock
from ..auth import PRINCIPAL, audited, requires
from . import READ, WRITE, kioskpages, render

routes = web.RouteTableDef()


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        n = int(value) if value not in (None, "") else default
    except ValueError:
        raise web.HTTPBadRequest(text="400: a whole number is expected") from None
    if not low <= n <= high:
        raise web.HTTPBadRequest(text=f"400: expected {low} to {high}")
    return n


@routes.get("/stock")
async def stock_page(request: web.Request) -> web.Response:
    rows, faces = await request.app[READ](stock.levels)
    face = _int(request.query.get("face"), faces[0], 1, 1_000_000)
    delivery = _int(request.query.get("delivery"), 0, 0, 100_000)
    capacity = _int(request.query.get("capacity"), stock.CAPACITY, 1, 10_000)
    plan, left = stock.allocate(rows, face, delivery, capacity) if delivery else ({}, 0)
    return render(request, "stock.html", rows=rows, faces=faces, face=face, delivery=delivery, capacity=capacity,
                  plan=plan, left=left, low=stock.LOW_CARDS, days=stock.SALES_DAYS,
                  loads=await request.app[READ](stock.loads, 30),
                  result={k: request.query.get(k, "")[:200] for k in ("did", "ok", "code", "level")})


@routes.post("/stock/load")
@requires("operate")
@audited  # stock.record_load audits the level before and the kiosk's reply after
async def stock_load(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    kiosk = str(form.get("kiosk") or "")[:128]
    face = _int(str(form.get("face_fen") or ""), 0, 1, 1_000_000)
    added = _int(str(form.get("added") or ""), 0, 1, 1000)
    row = await request.app[READ](queries.kiosk, kiosk)
    if row is None:
        raise web.HTTPNotFound(text="404: no kiosk by that name has reported to this hall")
    before = (row.get("card_stock") or {}).get(str(face)) if isinstance(row.get("card_stock"), dict) else None
    reply, code = await kioskpages.send(request, row["hall"], kiosk, "load_cards", {"face_fen": face, "added": added})
    await request.app[WRITE](stock.record_load, row["hall"], kiosk, face, added, before, reply, request[PRINCIPAL].name)
    level = (reply.get("result") or {}).get("stock") if reply.get("ok") else ""
    raise web.HTTPSeeOther("/stock?" + urllib.parse.urlencode({"did": kiosk, "ok": "1" if reply.get("ok") else "0",
                                                               "code": code, "level": "" if level is None else level}))

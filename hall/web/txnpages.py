"""Transaction search (`/txns`) and one transaction (`/txn?kiosk=K&txn=T`: kiosk names may hold any
character, so they travel in the query string, not in the path)."""
from __future__ import annotations

import urllib.parse

from aiohttp import web

from .. import queries, reports, txnsearch
from . import READ, render

routes = web.RouteTableDef()


@routes.get("/txns")
async def txns_page(request: web.Request) -> web.Response:
    try:
        s = txnsearch.Search.parse(request.query)
        error = ""
    except ValueError as exc:
        s, error = txnsearch.Search(), str(exc)
    rows, more = await request.app[READ](txnsearch.search, s) if not error else ([], False)
    count, fen = await request.app[READ](txnsearch.totals, s) if not error else (0, 0)
    halls = await request.app[READ](queries.halls)
    return render(request, "txns.html", status=400 if error else 200, rows=rows, more=more, count=count, fen=fen,
                  s=s, q=s.query(page=""), error=error, states=txnsearch.STATES, halls=halls,
                  services=reports.SERVICE_NAMES, qs=lambda **c: urllib.parse.urlencode(s.query(**c)))


@routes.get("/txn")
async def txn_page(request: web.Request) -> web.Response:
    row = await request.app[READ](txnsearch.detail, request.query.get("kiosk", ""), request.query.get("txn", ""))
    if row is None:
        raise web.HTTPNotFound(text="404: no such transaction")
    return render(request, "txn.html", x=row, services=reports.SERVICE_NAMES)

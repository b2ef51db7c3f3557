"""Transaction search (`/txns`) and one transaction (`/txn?kiosk=K&txn=T`: kiosk names may hold any
character, so they travel in the query string, not in the path)."""
from __future__ import annotations

import asyncio
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


@routes.get("/txns.{fmt}")
async def txns_export(request: web.Request) -> web.Response:
    """The search's matches as CSV (UTF-8 with BOM) or XLSX, at most txnsearch.EXPORT_MAX rows (the
    newest; `X-Truncated: 1` says there were more); formula-like cells neutralised (hall.reports)."""
    fmt = request.match_info["fmt"]
    if fmt not in ("csv", "xlsx"):
        raise web.HTTPNotFound(text="404: csv or xlsx")
    try:
        s = txnsearch.Search.parse(request.query)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"400: {exc}") from None
    table = await request.app[READ](txnsearch.export, s)
    count, _ = await request.app[READ](txnsearch.totals, s)
    if fmt == "csv":
        body, ctype = reports.to_csv(table), "text/csv"
    else:
        body = await asyncio.to_thread(reports.to_xlsx, table, "交易 transactions")
        ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = web.Response(body=body, content_type=ctype)
    response.headers["Content-Disposition"] = f'attachment; filename="transactions.{fmt}"'
    response.headers["X-Truncated"] = "1" if count > len(table["rows"]) else "0"
    return response

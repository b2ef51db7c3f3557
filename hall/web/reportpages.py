"""The report pages: each family's filters, table, charts (ECharts, static/reports.js) and exports."""
from __future__ import annotations

import urllib.parse

from aiohttp import web

from .. import queries, reports
from ..auth import requires
from . import READ, lang_of, render

routes = web.RouteTableDef()


def _filter(request: web.Request) -> reports.Filter:
    try:
        return reports.Filter.parse(request.query)
    except ValueError:
        raise web.HTTPBadRequest(text="400: dates are YYYY-MM-DD") from None


def _family(request: web.Request) -> str:
    family = request.match_info["family"]
    if family not in reports.FAMILIES:
        raise web.HTTPNotFound(text="404: no such report")
    return family


def _page(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", 1)), 100000))
    except ValueError:
        return 1


@routes.get("/reports")
async def reports_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/reports/daily")


@routes.get("/reports/{family}")
@requires("read")
async def report_page(request: web.Request) -> web.Response:
    family, f = _family(request), _filter(request)
    report = await request.app[READ](reports.run, family, f, _page(request))
    halls = await request.app[READ](queries.halls)
    lang = lang_of(request)
    labels = {s: reports.service_label(s, lang) for s in reports.SERVICE_NAMES}
    data = {"family": family, "report": report, "labels": labels, "lang": lang}
    qs = urllib.parse.urlencode(f.query())
    return render(request, "report.html", family=family, families=reports.FAMILIES, f=f, report=report,
                  halls=halls, labels=labels, qs=qs, data=data,
                  page=_page(request))


@routes.get("/reports/{family}/export.{fmt}")
@requires("read")
async def report_export(request: web.Request) -> web.Response:
    family, f = _family(request), _filter(request)
    fmt = request.match_info["fmt"]
    if fmt not in ("csv", "xlsx"):
        raise web.HTTPNotFound(text="404: csv or xlsx")
    report = await request.app[READ](reports.run, family, f, 1, True)
    name = f"{family}-{f.start.isoformat()}-{f.end.isoformat()}.{fmt}"
    if fmt == "csv":
        body, ctype = reports.to_csv(report), "text/csv"
    else:
        body = reports.to_xlsx(report, reports.FAMILIES[family][0].replace("/", "-"))
        ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return web.Response(body=body, content_type=ctype,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


@routes.get("/api/reports/{family}")
@requires("read")
async def report_api(request: web.Request) -> web.Response:
    family, f = _family(request), _filter(request)
    report = await request.app[READ](reports.run, family, f, _page(request))
    return web.json_response({"filter": f.query(), **report})

"""The hall console: server-rendered pages for hall staff (Jinja2, autoescaped) on halld's aiohttp app.

`install(app, ...)` adds the login, the pages, the console's JSON endpoints and the static files
(hall/web/static: the console's CSS and JS and the vendored Apache ECharts) to the app that
hall/api.py made, and puts `hall.auth`'s middleware in front of all of it, the old JSON API
included. Labels are Chinese first with an English toggle (`?lang=en`, kept in a cookie).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ..auth import AUTH, PRINCIPAL, Auth

_key = (lambda name: web.AppKey(name, object)) if hasattr(web, "AppKey") else (lambda name: name)
READ, WRITE, COMMANDS, BOSS = _key("read"), _key("write"), _key("commands"), _key("boss")

HERE = Path(__file__).parent
LANGS = ("zh", "en")

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                          autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _yuan(fen: Any) -> str:
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(int(fen)) // 100}.{abs(int(fen)) % 100:02d}"


def _when(ts: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    import time

    return time.strftime(fmt, time.localtime(ts)) if ts else "-"


def _pretty(value: Any) -> str:
    """JSON for people (Chinese as written); autoescape makes it safe in the page."""
    import json

    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


_env.filters["yuan"] = _yuan
_env.filters["pretty"] = _pretty
_env.filters["when"] = _when


def lang_of(request: web.Request) -> str:
    lang = request.query.get("lang") or request.cookies.get("lang") or "zh"
    return lang if lang in LANGS else "zh"


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    lang = lang_of(request)

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    principal = request.get(PRINCIPAL)
    html = _env.get_template(template).render(t=t, lang=lang, me=principal, request=request,
                                              path=request.path, **context)
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                                   "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.query.get("lang") in LANGS:
        response.set_cookie("lang", lang, samesite="Strict", httponly=True, path="/", max_age=365 * 86400)
    return response


def prepare(db: Any) -> None:
    """The console's tables and indexes, in a write transaction at halld's start."""
    from .. import auth, cashcount, commission, reconcile, refunds, reports, reversals, settings, stock

    auth.create_schema(db)
    cashcount.create_schema(db)
    refunds.create_schema(db)
    reversals.create_schema(db)
    reconcile.create_schema(db)
    commission.create_schema(db)
    stock.create_schema(db)
    settings.create_schema(db)
    reports.create_index(db)


def install(app: web.Application, read: Any, write: Any, commands: Any = None, boss: Any = None) -> Auth:
    """Put the console and the login in front of `app` (before it starts). `boss`: hall.bossdesk.BossDesk
    for the back office's own BOSS calls (reconciliation, reversal, commission), None without a BOSS."""
    from . import backoffice, kioskpages, pages, refundpages, reportpages, settingspages, stockpages, txnpages

    auth = Auth(read, write)
    app.middlewares.append(auth.middleware)
    app[AUTH] = auth
    app[READ], app[WRITE], app[COMMANDS], app[BOSS] = read, write, commands, boss
    app.add_routes(pages.routes)
    app.add_routes(reportpages.routes)
    app.add_routes(kioskpages.routes)
    app.add_routes(txnpages.routes)
    app.add_routes(refundpages.routes)
    app.add_routes(backoffice.routes)
    app.add_routes(stockpages.routes)
    app.add_routes(settingspages.routes)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    return auth

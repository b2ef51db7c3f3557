"""halld's JSON HTTP API for hall staff tools and the CLI (docs/hall.md has the table).

Reads go through their own connection on a worker thread (never the writer's, never the event
loop); `POST /api/kiosks/{kiosk}/cmd/{name}` sends a command and answers with the kiosk's reply.
Who may call what is hall/auth.py's middleware, which hall/web's `install` puts in front of every
route (halld.py wires it): a session or an API token, or 401; a role without the permission, 403.
What every request must pass before that (Host, Origin, and JSON for the API's state changes: a
web page in the hall's browser cannot use it) is hall/web_guard.py, the first middleware.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import queries
from .commands import CommandError, Commands
from .db import Database, connect
from .web_guard import Guard

STATUS_OF = {"timeout": 504, "unavailable": 503, "bad_request": 400, "not_found": 404}


class Reader:
    """One read connection used from worker threads, one query at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db: Database | None = None

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            with self._lock():
                return fn(self.db, *args)

        return await asyncio.to_thread(run)

    def _lock(self):
        if self.db is None:
            self.db = connect(self.url, schema=False)
        return self.db.lock

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def _int_arg(request: web.Request, name: str, default: int, most: int = 1000) -> int:
    try:
        return max(1, min(int(request.query.get(name, default)), most))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"ok": False, "code": "bad_request", "message": f"{name} must be an integer"}),
                                 content_type="application/json") from None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def make_app(reader: Reader, commands: Commands | None, stats: Callable[[], dict[str, Any]],
             guard: Guard | None = None) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/api/fleet")
    async def fleet(request: web.Request) -> web.Response:
        return _json(await reader(queries.fleet, request.query.get("hall")))

    @routes.get("/api/kiosks/{kiosk}")
    async def kiosk(request: web.Request) -> web.Response:
        row = await reader(queries.kiosk, request.match_info["kiosk"])
        return _json(row) if row else _json({"ok": False, "code": "not_found", "message": "no such kiosk"}, 404)

    @routes.get("/api/txns")
    async def txns(request: web.Request) -> web.Response:
        return _json(await reader(queries.txns, request.query.get("kiosk"), _int_arg(request, "limit", 20)))

    @routes.get("/api/events")
    async def events(request: web.Request) -> web.Response:
        return _json(await reader(queries.events, request.query.get("kiosk"), _int_arg(request, "limit", 50),
                                  request.query.get("kind")))

    @routes.get("/api/refunds")
    async def refunds(request: web.Request) -> web.Response:
        return _json(await reader(queries.refunds, request.query.get("state"), request.query.get("kiosk")))

    @routes.get("/api/reviews")
    async def reviews(request: web.Request) -> web.Response:
        return _json(await reader(queries.reviews, request.query.get("state"), request.query.get("kiosk")))

    @routes.get("/api/commands")
    async def commands_log(request: web.Request) -> web.Response:
        return _json(await reader(queries.commands, request.query.get("kiosk"), _int_arg(request, "limit", 20)))

    @routes.get("/api/quarantine")
    async def quarantine(request: web.Request) -> web.Response:
        return _json(await reader(queries.quarantine, request.query.get("kiosk"), _int_arg(request, "limit", 50)))

    @routes.get("/api/stats")
    async def stats_(request: web.Request) -> web.Response:
        return _json(stats())

    @routes.post("/api/kiosks/{kiosk}/cmd/{name}")
    async def command(request: web.Request) -> web.Response:
        """Body `{"args": {...}, "timeout": 10, "hall": "H", "key": "..."}` (all optional; `key` makes a
        retry idempotent: the kiosk runs one key once); answers the kiosk's
        reply envelope, or `{"ok": false, "code": "timeout"|"unavailable"|...}` with 504/503/..."""
        kiosk_id, name = request.match_info["kiosk"], request.match_info["name"]
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            timeout = float(body.get("timeout", 10.0))
        except ValueError as exc:
            return _json({"ok": False, "code": "bad_request", "message": str(exc)[:200]}, 400)
        except RecursionError:
            return _json({"ok": False, "code": "bad_request", "message": "JSON nested too deep"}, 400)
        except web.HTTPRequestEntityTooLarge as exc:
            return _json({"ok": False, "code": "too_large", "message": exc.text or "body too large"}, 413)
        if commands is None:
            return _json({"ok": False, "code": "unavailable", "message": "commands are not enabled"}, 503)
        hall = body.get("hall") or await reader(queries.hall_of, kiosk_id)
        if hall is None:
            return _json({"ok": False, "code": "not_found", "message": f"kiosk {kiosk_id} has never said hello"}, 404)
        try:
            reply = await commands.send(hall, kiosk_id, name, body.get("args", {}), timeout=min(timeout, 120.0),
                                        key=body.get("key"))
        except CommandError as exc:
            return _json({"ok": False, "code": exc.code, "message": exc.message}, STATUS_OF.get(exc.code, 500))
        return _json(reply)

    guard = guard or Guard()
    app = web.Application(middlewares=[guard.middleware], client_max_size=64 * 1024)
    app.add_routes(routes)
    return app


async def start_api(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, site._server.sockets[0].getsockname()[1]

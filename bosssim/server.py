"""The simulator's HTTP face: the BOSS API under /boss/v1/, and /control/ for tests and the demo.

Faults are queued with ``POST /control/fault`` ``{"op": "credit" | "*", "mode": ..., "times": 1,
"delay": 0.5, "code": "..."}`` and each matching request uses one up. Modes:
- ``timeout``: hold the request ``delay`` s (default 60), apply nothing, then answer ``timeout``.
- ``drop_reply``: apply the request, then hold the answer ``delay`` s (the reply is "lost";
  the caller times out while the write *was* applied — the case recovery must get right).
- ``refuse``: answer ``{"ok": false, "code": code}`` without applying.
- ``slow``: wait ``delay`` s, then serve normally.
- ``duplicate``: serve the request twice (a duplicated delivery) and answer with the second reply;
  idempotency keys must make both replies the same and the effect single.
- ``down``: close the connection without an answer (an unreachable BOSS looks like this to HTTP).
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .state import BACKOFFICE_READS, BACKOFFICE_WRITES, READS, WRITES, Books, Refused

FAULT_MODES = {"timeout", "drop_reply", "refuse", "slow", "duplicate", "down"}


class Simulator:
    def __init__(self, db: str) -> None:
        self.books = Books(db)
        self.faults: list[dict[str, Any]] = []
        self.requests: list[str] = []  # ops served, in order (tests count calls)

    def _serve(self, op: str, params: dict) -> dict:
        try:
            if op == "ping":
                result = {"pong": True}
            elif op in WRITES or op in BACKOFFICE_WRITES:
                result = self.books.keyed(op, params)
            elif op in READS or op in BACKOFFICE_READS:
                result = getattr(self.books, op)(**params)
            else:
                return {"ok": False, "code": "unknown_op", "message": op}
        except Refused as exc:
            return {"ok": False, "code": exc.code, "message": exc.message}
        except TypeError as exc:  # wrong or missing parameters
            return {"ok": False, "code": "bad_request", "message": str(exc)}
        return {"ok": True, "result": result}

    def _take_fault(self, op: str) -> dict | None:
        for fault in self.faults:
            if fault["op"] in (op, "*"):
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def api(self, request: web.Request) -> web.StreamResponse:
        op = request.match_info["op"]
        try:
            params = await request.json()
            if not isinstance(params, dict):
                raise ValueError
        except ValueError:
            return web.json_response({"ok": False, "code": "bad_request", "message": "body must be a JSON object"})
        self.requests.append(op)
        fault = self._take_fault(op)
        mode = fault["mode"] if fault else None
        if mode == "down":
            request.transport.close()
            return web.Response(status=503)
        if mode == "timeout":
            await asyncio.sleep(fault.get("delay", 60))
            return web.json_response({"ok": False, "code": "timeout", "message": "back end timed out"})
        if mode == "refuse":
            return web.json_response({"ok": False, "code": fault.get("code", "refused"), "message": "injected"})
        if mode == "slow":
            await asyncio.sleep(fault.get("delay", 1.0))
        reply = self._serve(op, params)
        if mode == "duplicate":
            reply = self._serve(op, params)
        if mode == "drop_reply":
            await asyncio.sleep(fault.get("delay", 60))
        return web.json_response(reply)

    async def control_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("mode") not in FAULT_MODES:
            return web.json_response({"ok": False, "message": f"mode must be one of {sorted(FAULT_MODES)}"}, status=400)
        self.faults.append({"op": body.get("op", "*"), "mode": body["mode"], "times": int(body.get("times", 1)),
                            "delay": float(body.get("delay", 60 if body["mode"] in ("timeout", "drop_reply") else 1.0)),
                            "code": body.get("code", "refused")})
        return web.json_response({"ok": True, "queued": len(self.faults)})

    async def control_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})

    async def control_ledger(self, request: web.Request) -> web.Response:
        return web.json_response({**self.books.ledger(), "requests": self.requests})

    async def control_age(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"ok": self.books.age_op(str(body.get("key")), float(body.get("seconds", 0)))})

    async def control_config(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "reversal_window_s" in body:
            self.books.reversal_window_s = float(body["reversal_window_s"])
        return web.json_response({"ok": True, "reversal_window_s": self.books.reversal_window_s})

    async def control_sms(self, request: web.Request) -> web.Response:
        return web.json_response({"code": self.books.last_sms_code(request.match_info["phone"])})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/boss/v1/{op}", self.api)
        app.router.add_post("/control/fault", self.control_fault)
        app.router.add_post("/control/clear", self.control_clear)
        app.router.add_get("/control/ledger", self.control_ledger)
        app.router.add_get("/control/sms/{phone}", self.control_sms)
        app.router.add_post("/control/age", self.control_age)
        app.router.add_post("/control/config", self.control_config)
        return app


async def start(db: str, port: int = 0, host: str = "127.0.0.1") -> tuple[web.AppRunner, Simulator, int]:
    """Serve in the running loop; returns (runner, simulator, bound port). ``await runner.cleanup()`` stops."""
    sim = Simulator(db)
    runner = web.AppRunner(sim.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    return runner, sim, bound

"""The back-office pages that go through the BOSS: 交易对账 reconciliation (`/reconcile`), 充值冲正
reversal (`/reversals`) and 佣金转钱包 commission (`/commission`). Each state change is a form POST
(CSRF, role checked by hall.auth), audited by the module that does it (hall.reconcile,
hall.reversals, hall.commission), and answered with a redirect back (a reload sends nothing again).
"""
from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from typing import Any

from aiohttp import web

from .. import commission, reconcile, reversals
from ..auth import PRINCIPAL, audited, requires
from ..cashcount import parse_yuan
from . import BOSS, READ, WRITE, render

routes = web.RouteTableDef()


def _page(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", 1)), 100000))
    except ValueError:
        return 1


def _result(request: web.Request, *keys: str) -> dict[str, str]:
    return {k: request.query.get(k, "")[:300] for k in ("did", "ok", "code", *keys)}


def _desk(request: web.Request) -> Any:
    desk = request.app[BOSS]
    if desk is None:
        raise web.HTTPServiceUnavailable(text="503: this halld has no BOSS configured (halld serve --boss URL)")
    return desk


# -- 交易对账 reconciliation ----------------------------------------------------------------------

def _date(value: str | None) -> dt.date:
    if not value:
        return reconcile.boss_day(time.time()) - dt.timedelta(days=1)  # yesterday: a closed day
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(text="400: date is YYYY-MM-DD") from None
    if not dt.date(2000, 1, 1) <= day <= reconcile.boss_day(time.time()):
        raise web.HTTPBadRequest(text="400: date must be a past or present business day")
    return day


@routes.get("/reconcile")
async def reconcile_page(request: web.Request) -> web.Response:
    day, page = _date(request.query.get("date")), _page(request)
    found = await request.app[READ](reconcile.result, day, page)
    return render(request, "reconcile.html", day=day, page=page, **found, resolutions=reconcile.RESOLUTIONS,
                  has_boss=request.app[BOSS] is not None, result=_result(request))


@routes.post("/reconcile")
@requires("operate")
@audited  # reconcile.store audits the run
async def reconcile_run(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    day = _date(str(form.get("date") or ""))
    from transactions.boss import BossError

    back = f"/reconcile?date={day.isoformat()}&"
    try:
        summary = await reconcile.run(request.app[READ], request.app[WRITE], _desk(request), day, request[PRINCIPAL].name)
    except BossError as exc:
        raise web.HTTPSeeOther(back + urllib.parse.urlencode({"did": "run", "ok": "0", "code": exc.code}))
    raise web.HTTPSeeOther(back + urllib.parse.urlencode({"did": "run", "ok": "1", "code": str(summary["mismatches"])}))


@routes.post("/reconcile/resolve")
@requires("operate")
@audited  # reconcile.resolve audits the item before and after
async def reconcile_resolve(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    day = _date(str(form.get("date") or ""))
    resolution, note = str(form.get("resolution") or ""), str(form.get("note") or "").strip()
    try:
        item_id = int(str(form.get("id") or ""))
    except ValueError:
        raise web.HTTPBadRequest(text="400: id") from None
    if resolution not in reconcile.RESOLUTIONS:
        raise web.HTTPBadRequest(text=f"400: resolution is one of {', '.join(reconcile.RESOLUTIONS)}")
    done = await request.app[WRITE](reconcile.resolve, item_id, resolution, note, request[PRINCIPAL].name)
    raise web.HTTPSeeOther(f"/reconcile?date={day.isoformat()}&" + urllib.parse.urlencode(
        {"did": "resolve", "ok": "1" if done else "0", "code": "" if done else "not_open"}))


# -- 充值冲正 reversal -----------------------------------------------------------------------------

@routes.get("/reversals")
async def reversals_page(request: web.Request) -> web.Response:
    page = _page(request)
    rows, more = await request.app[READ](reversals.candidates, time.time(), page)
    return render(request, "reversals.html", rows=rows, more=more, page=page,
                  done=await request.app[READ](reversals.recent, 50), has_boss=request.app[BOSS] is not None,
                  result=_result(request, "fen"))


@routes.post("/reversals")
@requires("operate")
@audited  # reversals.ask and reversals.answered audit the intent and the outcome
async def reversal_ask(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    kiosk, txn = str(form.get("kiosk") or "")[:128], str(form.get("txn") or "")[:128]
    reason = str(form.get("reason") or "").strip()[:reversals.REASON_MAX]
    who = request[PRINCIPAL].name

    def back(**result: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther("/reversals?" + urllib.parse.urlencode({"did": txn, **result}))

    desk = _desk(request)
    if not reason:
        raise back(ok="0", code="reason_needed")
    try:
        rec = await request.app[WRITE](reversals.ask, kiosk, txn, reason, who)  # the intent, committed first
    except reversals.NotReversible as exc:
        raise back(ok="0", code=str(exc)) from None
    state, code, message, result = await _outcome(desk.call("reverse_credit", **rec["request"]))
    await request.app[WRITE](reversals.answered, kiosk, txn, state, code, message, result, who)
    if state == "done":
        raise back(ok="1", fen=str(result.get("fen") if type(result.get("fen")) is int else rec["fen"]))
    raise back(ok="0", code=code or state)


# -- 佣金转钱包 commission ----------------------------------------------------------------------

async def _outcome(call: Any) -> tuple[str, str, str, dict[str, Any]]:
    """(state, code, message, result) of one BOSS write: done | refused | unknown | failed."""
    from transactions.boss import BossError, BossRefused, BossTimeout, BossUnavailable

    try:
        return "done", "", "", await call
    except BossTimeout as exc:
        return "unknown", exc.code, exc.message, {}
    except BossRefused as exc:
        return "refused", exc.code, exc.message, {}
    except BossUnavailable as exc:
        return "failed", exc.code, exc.message, {}
    except BossError as exc:  # an unreadable answer: as unknown as none
        return "unknown", exc.code, exc.message, {}


def _month(value: str | None) -> str:
    if not value:
        return reconcile.boss_day(time.time()).isoformat()[:7]
    try:
        dt.date.fromisoformat(value + "-01")
    except ValueError:
        raise web.HTTPBadRequest(text="400: month is YYYY-MM") from None
    return value


@routes.get("/commission")
async def commission_page(request: web.Request) -> web.Response:
    import secrets

    from transactions.boss import BossError

    month, statement, error = _month(request.query.get("month")), None, ""
    if request.app[BOSS] is None:
        error = "no_boss"
    else:
        try:
            statement = await request.app[BOSS].call("commission_statement", month=month)
        except BossError as exc:
            error = exc.code
    return render(request, "commission.html", month=month, statement=statement, error=error,
                  key=f"cm-{secrets.token_hex(8)}", transfers=await request.app[READ](commission.transfers, 50),
                  result=_result(request, "fen"))


@routes.post("/commission/transfer")
@requires("admin")  # the hall's own money: a manager's decision
@audited  # commission.ask and commission.answered audit the intent and the outcome
async def commission_transfer(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    key = str(form.get("key") or "")
    month = _month(str(form.get("month") or "") or None)

    def back(**result: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(f"/commission?month={month}&" + urllib.parse.urlencode({"did": "transfer", **result}))

    desk = _desk(request)
    if not commission.KEY_RE.fullmatch(key):
        raise web.HTTPBadRequest(text="400: reload the page (the form's key is missing or malformed)")
    try:
        fen = parse_yuan(str(form.get("amount") or ""))
    except ValueError:
        raise back(ok="0", code="bad_amount") from None
    if fen <= 0:
        raise back(ok="0", code="bad_amount")
    state, code, message, before = await _outcome(desk.call("commission_statement", month=month))
    who = request[PRINCIPAL].name
    try:
        await request.app[WRITE](commission.ask, key, fen, {k: before.get(k) for k in
                                                             ("available_fen", "transferred_fen", "wallet_fen")}, who)
    except commission.NotAgain as exc:
        raise back(ok="0", code=str(exc)) from None
    state, code, message, result = await _outcome(desk.call("commission_transfer", fen=fen, key=key))
    await request.app[WRITE](commission.answered, key, state, code, message, result, who)
    raise back(ok="1", fen=str(fen)) if state == "done" else back(ok="0", code=code or state)

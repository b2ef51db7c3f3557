"""退卡退款 / The review queue page (`/refunds`) and the operator's decision on one item (hall.refunds)."""
from __future__ import annotations

import urllib.parse

from aiohttp import web

from .. import refunds, reports
from ..auth import PRINCIPAL, audited, requires
from . import READ, WRITE, kioskpages, render

routes = web.RouteTableDef()


def _page(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", 1)), 100000))
    except ValueError:
        return 1


@routes.get("/refunds")
async def refunds_page(request: web.Request) -> web.Response:
    page = _page(request)
    rows, more, count, fen = await request.app[READ](refunds.queue, page)
    return render(request, "refunds.html", rows=rows, more=more, count=count, fen=fen, page=page,
                  done=await request.app[READ](refunds.decided, 20), services=reports.SERVICE_NAMES,
                  rejections=refunds.REJECTIONS,
                  result={k: request.query.get(k, "")[:200] for k in ("did", "ok", "code", "voucher", "fen")})


def _back(**result: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/refunds?" + urllib.parse.urlencode(result))


@routes.post("/refunds/decide")
@requires("operate")
@audited  # refunds.record writes the entry with the desk's record, once the kiosk agreed
async def refunds_decide(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    kind, kiosk, ref = (str(form.get(k) or "")[:128] for k in ("kind", "kiosk", "ref"))
    action, reason = str(form.get("action") or ""), str(form.get("reason") or "").strip()[:refunds.REASON_MAX]
    if action not in ("pay", "reject"):
        raise web.HTTPBadRequest(text="400: action is pay or reject")
    before = await request.app[READ](refunds.item, kind, kiosk, ref)
    if before is None:
        raise _back(did=action, ok="0", code="not_open")  # decided meanwhile, or never in the queue
    if action == "pay":
        decision, resolution = "paid", "refunded" if kind == "review" else "paid"
    else:
        resolution = str(form.get("resolution") or "")
        if kind != "review" or resolution not in refunds.REJECTIONS or not reason:
            raise _back(did=action, ok="0", code="reason_needed" if not reason else "bad_rejection")
        decision = "rejected"
    note = f"{request[PRINCIPAL].name}: {reason}" if reason else request[PRINCIPAL].name
    name, args = (("resolve_review", {"txn": ref, "resolution": resolution, "note": note}) if kind == "review" else
                  ("resolve_refund", {"claim": ref, "resolution": "paid", "note": note}))
    reply, code = await kioskpages.send(request, before["hall"], before["kiosk"], name, args)
    if not reply.get("ok"):
        from ..auth import audit

        await request.app[WRITE](audit, request[PRINCIPAL].name, f"refund.{decision}.refused",
                                 f"{before['hall']}/{before['kiosk']}/{ref}", before, {"args": args, "reply": reply})
        raise _back(did=action, ok="0", code=code)
    rec = await request.app[WRITE](refunds.record, before, decision, resolution, reason, request[PRINCIPAL].name, reply)
    raise _back(did=action, ok="1", voucher=rec["voucher"] or "", fen=str(rec["fen"] or 0) if decision == "paid" else "")

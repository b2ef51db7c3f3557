"""The console's pages and its own JSON endpoints: login, fleet, staff accounts, audit log."""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from aiohttp import web

from .. import auth, queries
from ..auth import AUTH, LOGIN_COOKIE, PRINCIPAL, SESSION_COOKIE, AuthError, audited, requires
from . import READ, WRITE, render

routes = web.RouteTableDef()


def _safe_next(value: str | None) -> str:
    """Only a path on this server: never `//elsewhere` or `https://elsewhere` (open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))


# -- login -------------------------------------------------------------------------------------

def _login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    # the browser's own token when it has one: a second GET /login (a favicon's redirect, another
    # tab) must not orphan the form already shown
    kept = request.cookies.get(LOGIN_COOKIE, "")
    token = kept if 24 <= len(kept) <= 64 else secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, error=error, login_csrf=token,
                      next=_safe_next(request.query.get("next")))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login",
                        secure=auth.is_secure(request))
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    sent, kept = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
    if not isinstance(sent, str) or not kept or not secrets.compare_digest(sent, kept):
        return web.Response(status=403, text="403: missing or wrong CSRF token (reload the login page)")
    name, password = str(form.get("name") or "")[:64], str(form.get("password") or "")[:1024]
    try:
        session, _csrf = await request.app[AUTH].login(name, password, request.cookies.get(SESSION_COOKIE),
                                                         request.remote or "")
    except auth.LoginRefused as exc:
        if exc.locked_until:
            until = time.strftime("%H:%M", time.localtime(exc.locked_until))
            message = f"账户已锁定至 {until} / Account locked until {until}"
        else:
            message = "用户名或密码错误 / Wrong name or password"
        return _login_page(request, message, status=401)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next") or "")))
    auth.set_session_cookie(response, request, session)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[AUTH].logout(request[PRINCIPAL])
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
logout.audited = True  # type: ignore[attr-defined]  (auth._logout writes its entry)
logout.permission = "read"  # type: ignore[attr-defined]  (anyone logged in may leave)


# -- fleet -------------------------------------------------------------------------------------

@routes.get("/")
async def fleet_page(request: web.Request) -> web.Response:
    hall = request.query.get("hall") or None
    rows = await request.app[READ](queries.fleet, hall)
    halls = await request.app[READ](queries.halls)
    from ..stock import LOW_CARDS

    return render(request, "fleet.html", rows=rows, halls=halls, hall=hall, now=time.time(), low_cards=LOW_CARDS)


# -- staff accounts ----------------------------------------------------------------------------

@routes.get("/users")
@requires("admin")
async def users_page(request: web.Request) -> web.Response:
    return render(request, "users.html", users=await request.app[READ](auth.users), roles=list(auth.ROLES),
                  error=request.query.get("error", ""), token=None)


async def _add_user(request: web.Request, name: str, role: str, password: str) -> None:
    pw_hash = await asyncio.to_thread(auth.hash_password, password)
    await request.app[WRITE](auth.add_user, name, role, pw_hash, request[PRINCIPAL].name)


@routes.post("/users")
@requires("admin")
@audited
async def users_add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    try:
        await _add_user(request, str(form.get("name") or ""), str(form.get("role") or ""),
                        str(form.get("password") or ""))
    except AuthError as exc:
        return render(request, "users.html", status=400, users=await request.app[READ](auth.users),
                      roles=list(auth.ROLES), error=str(exc), token=None)
    raise web.HTTPSeeOther("/users")


@routes.post("/users/{name}")
@requires("admin")
@audited
async def users_change(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name, who = request.match_info["name"], request[PRINCIPAL].name
    try:
        if form.get("action") == "token":
            token = await request.app[WRITE](auth.new_token, name, "console", who)
            return render(request, "users.html", users=await request.app[READ](auth.users),
                          roles=list(auth.ROLES), error="", token={"name": name, "token": token})
        if form.get("action") == "revoke":
            await request.app[WRITE](auth.revoke_tokens, name, who)
        elif form.get("action") in ("disable", "enable"):
            if name == who:
                raise AuthError("you cannot disable your own account")
            await request.app[WRITE](auth.set_user, name, who, None, None, form.get("action") == "disable")
        elif form.get("action") == "role":
            await request.app[WRITE](auth.set_user, name, who, str(form.get("role") or ""))
        else:
            raise AuthError("unknown action")
    except AuthError as exc:
        return render(request, "users.html", status=400, users=await request.app[READ](auth.users),
                      roles=list(auth.ROLES), error=str(exc), token=None)
    raise web.HTTPSeeOther("/users")


@routes.get("/api/users")
@requires("admin")
async def users_api(request: web.Request) -> web.Response:
    return _json(await request.app[READ](auth.users))


@routes.post("/api/users")
@requires("admin")
@audited
async def users_api_add(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        await _add_user(request, str(body.get("name") or ""), str(body.get("role") or ""),
                        str(body.get("password") or ""))
    except (ValueError, AttributeError) as exc:
        return _json({"ok": False, "code": "bad_request", "message": str(exc)}, 400)
    return _json({"ok": True})


@routes.get("/api/me")
@requires("read")
async def me(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    return _json({"name": p.name, "role": p.role, "via": p.via, "permissions": sorted(auth.ROLES[p.role])})


# -- audit log ---------------------------------------------------------------------------------

def _page_args(request: web.Request, size: int = 100) -> tuple[int, int]:
    try:
        page = max(1, min(int(request.query.get("page", 1)), 100000))
    except ValueError:
        page = 1
    return page, size


@routes.get("/audit")
@requires("audit")
async def audit_page(request: web.Request) -> web.Response:
    page, size = _page_args(request)
    rows = await request.app[READ](auth.audit_entries, size + 1, request.query.get("who") or None, (page - 1) * size)
    return render(request, "audit.html", rows=rows[:size], page=page, more=len(rows) > size,
                  who=request.query.get("who", ""))


@routes.get("/api/audit")
@requires("audit")
async def audit_api(request: web.Request) -> web.Response:
    page, size = _page_args(request, 200)
    return _json(await request.app[READ](auth.audit_entries, size, request.query.get("who") or None,
                                           (page - 1) * size))

"""Staff logins, roles, sessions, CSRF, lockout, API tokens and the audit log (hall/auth.py) on a real halld."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp

from hall import auth

from .conftest import PASSWORD


def _every_route(halld) -> list[tuple[str, str]]:
    """(method, path) of every route the running app serves, {params} filled in."""
    app = halld._api.app
    out = []
    for route in app.router.routes():
        if route.method == "*":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        for name in ("kiosk", "name", "txn", "claim", "family"):
            path = path.replace("{" + name + "}", "K1")
        out.append((route.method, path))
    return out


async def test_every_route_but_the_login_and_static_files_asks_who_is_calling(console):
    routes = _every_route(console.halld)
    assert ("GET", "/api/fleet") in routes and ("POST", "/api/kiosks/K1/cmd/K1") in routes and ("GET", "/") in routes
    checked = 0
    async with aiohttp.ClientSession() as http:
        for method, path in routes:
            if path in ("/login",) or path.startswith("/static"):
                continue
            headers = {"Authorization": "Bearer hd_not-a-token"} if checked % 2 else {}
            if method not in ("GET", "HEAD"):  # as API clients send it (hall/web_guard.py refuses others first)
                headers["Content-Type"] = "application/json"
            async with http.request(method, console.url + path, allow_redirects=False, headers=headers) as r:
                if path.startswith("/api/"):
                    assert r.status == 401, (method, path, r.status)
                    if method != "HEAD":
                        assert (await r.json())["code"] == "unauthorized"
                else:
                    assert (r.status, r.headers.get("Location")) == (303, "/login"), (method, path)
            checked += 1
    assert checked >= 15


async def test_a_role_without_the_permission_is_403(console):
    viewer, operator = await console.token("viewer"), await console.token("operator")
    async with aiohttp.ClientSession() as http:
        async def status(method, path, token):
            async with http.request(method, console.url + path, json={},
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status, (await r.json()).get("code") if r.status >= 400 else None
        assert await status("GET", "/api/fleet", viewer) == (200, None)
        assert await status("POST", "/api/kiosks/K1/cmd/restart", viewer) == (403, "forbidden")
        assert await status("GET", "/api/users", operator) == (403, "forbidden")
        assert await status("GET", "/api/audit", operator) == (403, "forbidden")
        assert (await status("POST", "/api/kiosks/K1/cmd/restart", operator))[0] == 404  # allowed: no such kiosk
    entries = await console.audit()
    assert any(e["action"] == "POST /api/kiosks/{kiosk}/cmd/{name}" and e["after"]["status"] == 404 for e in entries)


async def test_login_makes_a_new_httponly_strict_session_and_an_id_planted_before_is_never_promoted(console):
    name = await console.user("operator")
    async with console.browser() as b:
        planted = "attacker-chose-this-session-id"
        b.http.cookie_jar.update_cookies({auth.SESSION_COOKIE: planted}, aiohttp.client.URL(console.url))
        r = await b.login(name)
        assert r.status == 303
        set_cookie = [v for v in r.headers.getall("Set-Cookie") if v.startswith(auth.SESSION_COOKIE + "=")][0]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Secure" not in set_cookie
        first = b.session_cookie()
        assert first and first != planted and len(first) >= 40
        async with b.http.get(f"{console.url}/api/me") as me:
            assert (await me.json())["name"] == name
        await b.login(name)  # again: yet another id, and the first one is over
        assert b.session_cookie() not in (first, planted)
        async with aiohttp.ClientSession(cookies={auth.SESSION_COOKIE: first}) as old:
            async with old.get(f"{console.url}/api/me") as r:
                assert r.status == 401


async def test_the_session_cookie_is_secure_behind_a_local_tls_proxy(console):
    name = await console.user("viewer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     headers={"X-Forwarded-Proto": "https"}) as http:
        async with http.get(f"{console.url}/login") as r:
            import re
            csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
            login_cookie = r.cookies[auth.LOGIN_COOKIE].value
        async with http.post(f"{console.url}/login", data={"name": name, "password": PASSWORD, "csrf": csrf},
                             cookies={auth.LOGIN_COOKIE: login_cookie}, allow_redirects=False) as r:
            assert r.status == 303
            assert "Secure" in [v for v in r.headers.getall("Set-Cookie") if v.startswith(auth.SESSION_COOKIE)][0]


async def test_a_state_change_without_its_csrf_token_is_refused(console):
    name = await console.user("admin")
    async with console.browser() as b:
        await b.login(name)
        async with b.http.post(f"{console.url}/api/kiosks/K1/cmd/restart", json={}) as r:
            assert (r.status, (await r.json())["code"]) == (403, "csrf")
        async with b.http.post(f"{console.url}/api/kiosks/K1/cmd/restart", json={},
                               headers={"X-CSRF-Token": "wrong"}) as r:
            assert r.status == 403
        async with b.http.post(f"{console.url}/users", data={"name": "eve", "role": "admin",
                                                             "password": "12345678"}) as r:
            assert r.status == 403
        async with b.http.post(f"{console.url}/users", data={"name": "eve", "role": "admin", "password": "12345678",
                                                             "csrf": b.csrf}, allow_redirects=False) as r:
            assert r.status == 303
        async with b.http.post(f"{console.url}/api/kiosks/K1/cmd/restart", json={},
                               headers={"X-CSRF-Token": b.csrf}) as r:
            assert r.status == 404  # through: no kiosk K1 has said hello
    assert [u["name"] for u in await console.halld._reader(auth.users) if u["name"] == "eve"] == ["eve"]
    async with console.browser() as b:  # the login form has its own token
        async with b.http.post(f"{console.url}/login", data={"name": name, "password": PASSWORD},
                               allow_redirects=False) as r:
            assert r.status == 403 and b.session_cookie() is None


async def test_repeated_wrong_passwords_lock_the_account_even_against_the_right_one(console):
    name = await console.user("operator")
    async with console.browser() as b:
        for _ in range(auth.MAX_FAILURES):
            assert (await b.login(name, "wrong password")).status == 401
        r = await b.login(name)
        assert r.status == 401 and b.session_cookie() is None
        async with b.http.get(f"{console.url}/login") as page:
            pass
    actions = [e["action"] for e in await console.audit() if e["who"] == name]
    assert actions.count("login.failed") == auth.MAX_FAILURES - 1 and "login.locked" in actions
    assert "login.refused" in actions and "login" not in actions
    [row] = [u for u in await console.halld._reader(auth.users) if u["name"] == name]
    assert row["locked"]


async def test_a_disabled_account_s_token_stops_working(console):
    name = await console.user("operator")
    token = await console.halld._writer.call(auth.new_token, name, "test", "test")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{console.url}/api/fleet") as r:
            assert r.status == 200
        await console.halld._writer.call(auth.set_user, name, "test", None, None, True)
        async with http.get(f"{console.url}/api/fleet") as r:
            assert r.status == 401


async def test_halld_user_add_makes_the_first_admin_and_halld_cmd_needs_a_token(console, tmp_path):
    db = console.halld.config.db
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "hall.halld", *a], capture_output=True, text=True,
                                          timeout=60, **kw)
    out = await asyncio.to_thread(run, "user", "add", "boss", "--role", "admin", "--password-stdin", "--db", db,
                                  input="a long password\n")
    assert out.returncode == 0, out.stderr
    async with console.browser() as b:
        assert (await b.login("boss", "a long password")).status == 303
    out = await asyncio.to_thread(run, "user", "add", "short", "--role", "admin", "--password-stdin", "--db", db,
                                  input="1234\n")
    assert out.returncode == 2 and "8 characters" in out.stderr
    api = ["--api", console.url]
    env = {k: v for k, v in os.environ.items() if k != "HALLD_TOKEN"}
    out = await asyncio.to_thread(run, "cmd", "K1", "restart", *api, env=env)
    assert out.returncode == 4 and "HALLD_TOKEN" in out.stderr
    token = (await asyncio.to_thread(run, "user", "token", "boss", "--db", db)).stdout.strip()
    out = await asyncio.to_thread(run, "cmd", "K1", "restart", *api, env={**env, "HALLD_TOKEN": token})
    assert out.returncode == 1 and json.loads(out.stdout)["code"] == "not_found"  # let through: no such kiosk
    entries = await console.audit()
    assert any(e["who"].startswith("cli:") and e["action"] == "user.add" and e["target"] == "boss"
               and e["after"] == {"role": "admin"} for e in entries)


async def test_the_audit_log_is_a_page_for_admins_and_auditors_only(console):
    admin, viewer = await console.user("admin"), await console.user("viewer")
    async with console.browser() as b:
        await b.login(viewer)
        async with b.http.get(f"{console.url}/audit") as r:
            assert r.status == 403
    async with console.browser() as b:
        await b.login(admin)
        async with b.http.get(f"{console.url}/audit") as r:
            page = await r.text()
        assert r.status == 200 and f"<td>{viewer}</td><td>login</td>" in page

"""Who may do what at the hall: staff accounts, sessions, API tokens, roles, lockout, audit log.

Every request to halld's HTTP side (the JSON API and the console's pages) passes `Auth.middleware`:
a session cookie (the console) or `Authorization: Bearer TOKEN` (the CLI, scripts) names a staff
account; none is 401 (a page redirects to /login), a role without the permission is 403. The
permission a route needs is the handler's `permission` attribute (`requires(...)`); a handler
without one needs "read" for GET/HEAD and "operate" for anything else, so an endpoint added later
is never open by accident.

Passwords are argon2id hashes (argon2-cffi's defaults, hashed on a worker thread). Session ids and
tokens are 256-bit random strings of which only the SHA-256 is stored: a copy of the database
opens no session. A new session id is made at every login (an id planted before login is never
promoted: no session fixation). A session-authenticated state change carries its CSRF token (the
`X-CSRF-Token` header or a `csrf` form field); a bearer token is not sent by the browser on its own,
so it needs none. MAX_FAILURES wrong passwords in a row lock the account for LOCK_S.

Every state change is written to `audit_log` (who, what, target, before -> after, when) in the same
write transaction as the change where the handler records it itself (`audited`), otherwise by the
middleware after the handler answered (the request and the answer).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "operate"}),  # refunds, commands, card stock, cash collection
    "admin": frozenset({"read", "operate", "admin", "audit"}),  # users, settings
    "auditor": frozenset({"read", "audit", "pii"}),  # may open sealed real-name data
}
MAX_FAILURES = 5
LOCK_S = 15 * 60
SESSION_S = 12 * 3600
SESSION_COOKIE = "halld_session"
LOGIN_COOKIE = "halld_login"  # the login form's own CSRF pair (double submit)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PUBLIC_PATHS = ("/login", "/static/")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")

SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL, failures BIGINT NOT NULL DEFAULT 0,
    locked_until DOUBLE PRECISION NOT NULL DEFAULT 0, disabled BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS staff_sessions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL, created_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS staff_tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, label TEXT, created_at DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS audit_log (
    id {serial}, at DOUBLE PRECISION, who TEXT, action TEXT, target TEXT, before TEXT, after TEXT);
"""


class AuthError(ValueError):
    pass


def create_schema(db: Any) -> None:
    """In the caller's transaction; two workers starting together on PostgreSQL take turns."""
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    if db.postgres:
        db.execute("SELECT pg_advisory_xact_lock(4243)")
    for statement in SCHEMA.format(serial=serial).split(";"):
        if statement.strip():
            db.execute(statement)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AuthError("a password needs at least 8 characters")
    return _hasher().hash(password)


def check_password(pw_hash: str, password: str) -> bool:
    from argon2.exceptions import VerificationError, InvalidHashError

    try:
        return _hasher().verify(pw_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    """Checked against for an unknown name, so its answer takes as long as a wrong password's."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_hasher().hash(secrets.token_hex(16)))
    return _DUMMY_HASH[0]


# -- audit -------------------------------------------------------------------------------------

def audit(db: Any, who: str, action: str, target: str = "", before: Any = None, after: Any = None,
          now: float | None = None) -> None:
    db.execute("INSERT INTO audit_log (at, who, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?)",
               (now or time.time(), who, action, target,
                None if before is None else json.dumps(before, ensure_ascii=False, default=str),
                None if after is None else json.dumps(after, ensure_ascii=False, default=str)))


def audit_entries(db: Any, limit: int = 200, who: str | None = None, offset: int = 0) -> list[dict[str, Any]]:
    where, params = (" WHERE who = ?", [who]) if who else ("", [])
    rows = db.dicts(f"SELECT id, at, who, action, target, before, after FROM audit_log{where}"
                    " ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
    for row in rows:
        for key in ("before", "after"):
            if row[key] is not None:
                try:
                    row[key] = json.loads(row[key])
                except ValueError:
                    pass
    return rows


# -- accounts and tokens (plain functions of a Database, run in a write transaction) ------------

def check_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise AuthError("a staff name is 1-64 of letters, digits and _ . - @")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    return role


def add_user(db: Any, name: str, role: str, pw_hash: str, who: str) -> None:
    check_name(name), check_role(role)
    if db.one("SELECT 1 FROM staff_users WHERE name = ?", (name,)):
        raise AuthError(f"staff account {name} exists")
    db.execute("INSERT INTO staff_users (name, role, pw_hash, created_at) VALUES (?, ?, ?, ?)",
               (name, role, pw_hash, time.time()))
    audit(db, who, "user.add", name, None, {"role": role})


def set_user(db: Any, name: str, who: str, role: str | None = None, pw_hash: str | None = None,
             disabled: bool | None = None) -> None:
    row = db.one("SELECT role, disabled FROM staff_users WHERE name = ?", (name,))
    if row is None:
        raise AuthError(f"no staff account {name}")
    before, after = {"role": row[0], "disabled": bool(row[1])}, {}
    if role is not None:
        db.execute("UPDATE staff_users SET role = ? WHERE name = ?", (check_role(role), name))
        after["role"] = role
    if disabled is not None:
        db.execute("UPDATE staff_users SET disabled = ? WHERE name = ?", (int(disabled), name))
        after["disabled"] = disabled
    if pw_hash is not None:
        db.execute("UPDATE staff_users SET pw_hash = ?, failures = 0, locked_until = 0 WHERE name = ?", (pw_hash, name))
        after["password"] = "changed"
    if role is not None or disabled or pw_hash is not None:  # a changed account starts again from a login
        db.execute("DELETE FROM staff_sessions WHERE name = ?", (name,))
    audit(db, who, "user.change", name, before, after)


def users(db: Any) -> list[dict[str, Any]]:
    rows = db.dicts("SELECT name, role, failures, locked_until, disabled, created_at FROM staff_users ORDER BY name")
    for row in rows:
        row["disabled"] = bool(row["disabled"])
        row["locked"] = row["locked_until"] > time.time()
    return rows


def new_token(db: Any, name: str, label: str, who: str) -> str:
    """A per-user API token for the CLI; only its SHA-256 is kept, so it is shown once."""
    if db.one("SELECT 1 FROM staff_users WHERE name = ?", (name,)) is None:
        raise AuthError(f"no staff account {name}")
    token = "hd_" + secrets.token_urlsafe(32)
    db.execute("INSERT INTO staff_tokens (id, name, label, created_at) VALUES (?, ?, ?, ?)",
               (_digest(token), name, label, time.time()))
    audit(db, who, "token.add", name, None, {"label": label})
    return token


def revoke_tokens(db: Any, name: str, who: str) -> int:
    n = db.execute("DELETE FROM staff_tokens WHERE name = ?", (name,)).rowcount
    audit(db, who, "token.revoke", name, None, {"revoked": n})
    return n


# -- login -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "session" | "token"
    csrf: str = ""
    session: str = ""  # the stored digest of the session id

    def may(self, permission: str) -> bool:
        return permission in ROLES.get(self.role, ())


def _account(db: Any, name: str) -> dict[str, Any] | None:
    rows = db.dicts("SELECT name, role, pw_hash, failures, locked_until, disabled FROM staff_users WHERE name = ?",
                    (name,))
    return rows[0] if rows else None


def _login_failed(db: Any, name: str, remote: str, now: float) -> float:
    """Count a wrong password; returns the time the account is locked until (0: not locked)."""
    row = db.one(f"SELECT failures FROM staff_users WHERE name = ?{db.for_update}", (name,))
    if row is None:
        audit(db, name, "login.failed", name, None, {"remote": remote, "why": "no such account"}, now)
        return 0.0
    failures = row[0] + 1
    until = now + LOCK_S if failures >= MAX_FAILURES else 0.0
    db.execute("UPDATE staff_users SET failures = ?, locked_until = ? WHERE name = ?",
               (0 if until else failures, until, name))
    audit(db, name, "login.locked" if until else "login.failed", name, {"failures": failures - 1},
          {"failures": failures, "remote": remote, **({"locked_until": until} if until else {})}, now)
    return until


def _login_ok(db: Any, name: str, session_digest: str, csrf: str, old_digest: str | None, remote: str,
              now: float) -> None:
    db.execute("DELETE FROM staff_sessions WHERE expires_at < ?", (now,))
    if old_digest:  # whatever session the browser came with ends here
        db.execute("DELETE FROM staff_sessions WHERE id = ?", (old_digest,))
    db.execute("UPDATE staff_users SET failures = 0, locked_until = 0 WHERE name = ?", (name,))
    db.execute("INSERT INTO staff_sessions (id, name, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
               (session_digest, name, csrf, now, now + SESSION_S))
    audit(db, name, "login", name, None, {"remote": remote}, now)


def _logout(db: Any, digest: str, name: str) -> None:
    db.execute("DELETE FROM staff_sessions WHERE id = ?", (digest,))
    audit(db, name, "logout", name)


def _principal(db: Any, kind: str, digest: str, now: float) -> dict[str, Any] | None:
    if kind == "session":
        rows = db.dicts("SELECT s.name, u.role, s.csrf FROM staff_sessions s JOIN staff_users u ON u.name = s.name"
                        " WHERE s.id = ? AND s.expires_at > ? AND u.disabled = 0", (digest, now))
    else:
        rows = db.dicts("SELECT t.name, u.role FROM staff_tokens t JOIN staff_users u ON u.name = t.name"
                        " WHERE t.id = ? AND u.disabled = 0", (digest,))
    return rows[0] if rows else None


# typed keys where aiohttp has them (3.12+), plain strings before
PRINCIPAL: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"
AUTH: Any = web.AppKey("auth", object) if hasattr(web, "AppKey") else "auth"


class LoginRefused(Exception):
    def __init__(self, message: str, locked_until: float = 0.0) -> None:
        super().__init__(message)
        self.locked_until = locked_until


def token_holder(db: Any, token: str | None, permission: str) -> str:
    """For a CLI that acts on the database itself (`halld pii open`): the account whose token
    this is, if its role has `permission`; AuthError otherwise."""
    row = _principal(db, "token", _digest(token), time.time()) if token else None
    if row is None:
        raise AuthError("a staff API token is needed (--token or HALLD_TOKEN; `halld user token NAME`)")
    if permission not in ROLES[row["role"]]:
        raise AuthError(f"{row['name']} is {row['role']}: only the auditor role may {permission}")
    return row["name"]


# -- the HTTP side -----------------------------------------------------------------------------

Read = Callable[..., Awaitable[Any]]  # hall.api.Reader: await read(fn, *args) -> fn(db, *args)
Write = Callable[..., Awaitable[Any]]  # hall.writer.Writer.call: fn(db, *args) in a write transaction


def requires(permission: str) -> Callable:
    """Mark a handler with the permission it needs (see ROLES)."""
    def mark(handler: Callable) -> Callable:
        handler.permission = permission  # type: ignore[attr-defined]
        return handler
    return mark


def audited(handler: Callable) -> Callable:
    """Mark a handler that writes its own audit entry (with the real before and after)."""
    handler.audited = True  # type: ignore[attr-defined]
    return handler


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "code": code, "message": message}, status=status)


def is_secure(request: web.Request) -> bool:
    """Served over TLS: directly, or by a TLS proxy on this machine that says so."""
    return request.secure or (request.headers.get("X-Forwarded-Proto") == "https"
                              and request.remote in ("127.0.0.1", "::1"))


class Auth:
    def __init__(self, read: Read, write: Write) -> None:
        self.read = read
        self.write = write

    async def login(self, name: str, password: str, old_session: str | None, remote: str) -> tuple[str, str]:
        """Check a password; returns a new (session id, csrf token). Raises LoginRefused."""
        now = time.time()
        account = await self.read(_account, name)
        if account is not None and account["locked_until"] > now:
            await self.write(audit, name, "login.refused", name, None, {"remote": remote, "why": "locked"}, now)
            raise LoginRefused("account locked", account["locked_until"])
        stored = account["pw_hash"] if account is not None and not account["disabled"] else None
        ok = await asyncio.to_thread(check_password, stored or _dummy_hash(), password)
        if not ok or stored is None:
            until = await self.write(_login_failed, name if account is not None else name[:64], remote, now)
            raise LoginRefused("wrong name or password", until)
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        await self.write(_login_ok, name, _digest(session), csrf, _digest(old_session) if old_session else None,
                         remote, now)
        return session, csrf

    async def logout(self, principal: Principal) -> None:
        if principal.via == "session":
            await self.write(_logout, principal.session, principal.name)

    async def identify(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[7:].strip()
            row = await self.read(_principal, "token", _digest(token), time.time()) if token else None
            return Principal(row["name"], row["role"], "token") if row else None
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return None
        digest = _digest(session)
        row = await self.read(_principal, "session", digest, time.time())
        return Principal(row["name"], row["role"], "session", row["csrf"], digest) if row else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path == "/login" or request.path.startswith("/static/"):
            return await handler(request)
        api = request.path.startswith("/api/")
        principal = await self.identify(request)
        if principal is None:
            if api:
                return _json_error(401, "unauthorized", "log in, or send Authorization: Bearer TOKEN "
                                                        "(halld user token NAME)")
            raise web.HTTPSeeOther("/login")
        route = request.match_info.handler
        default = "read" if request.method in SAFE_METHODS else "operate"
        permission = getattr(route, "permission", default)
        if not principal.may(permission):
            if api:
                return _json_error(403, "forbidden", f"{principal.role} may not {permission}")
            raise web.HTTPForbidden(text=f"403: the {principal.role} role may not do this ({permission})")
        if request.method not in SAFE_METHODS and principal.via == "session":
            sent = request.headers.get("X-CSRF-Token")
            if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                sent = (await request.post()).get("csrf")
            if not isinstance(sent, str) or not secrets.compare_digest(sent, principal.csrf):
                return _json_error(403, "csrf", "missing or wrong CSRF token") if api else \
                    web.Response(status=403, text="403: missing or wrong CSRF token (reload the page)")
        request[PRINCIPAL] = principal
        response = await handler(request)
        if request.method not in SAFE_METHODS and not getattr(route, "audited", False):
            await self._audit_request(request, principal, response)
        return response

    async def _audit_request(self, request: web.Request, principal: Principal, response: web.StreamResponse) -> None:
        """What was asked and what was answered, for a state change the handler did not audit itself."""
        asked: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                asked = json.loads(raw) if raw else None
            except ValueError:
                asked = raw[:500].decode(errors="replace")
        answer: Any = None
        body = getattr(response, "body", None)
        if isinstance(body, bytes):
            try:
                answer = json.loads(body)
            except ValueError:
                answer = body[:500].decode(errors="replace")
        resource = request.match_info.route.resource
        action = f"{request.method} {resource.canonical if resource is not None else request.path}"
        await self.write(audit, principal.name, action, request.path, _redacted(asked),
                         {"status": response.status, "answer": answer})


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if "password" in str(k).lower() or "token" in str(k).lower() else _redacted(v)
                for k, v in value.items()}
    return value

def set_session_cookie(response: web.StreamResponse, request: web.Request, session: str) -> None:
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Strict", secure=is_secure(request),
                        path="/", max_age=SESSION_S)

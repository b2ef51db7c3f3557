"""What halld's HTTP API checks before any handler runs, so that a web page in the hall's browser
cannot use it (issue 16: a `text/plain` cross-site POST from any page delivered
`inhibit_cash {"inhibit": false}` to a kiosk, and DNS rebinding did the same).

- **Host** must be an IP address, `localhost`, or a name halld was given (`halld serve
  --http-name`, e.g. the proxy's). DNS rebinding needs the attacker's own domain in Host, so any
  other name is refused (421), reads included (they would leak the fleet to the page).
- **Origin**, when a browser sends one, must be this very server (`http(s)://` + the Host it
  asked); `Sec-Fetch-Site: cross-site` is refused too (403). Tools (the CLI, curl) send neither.
- A request to the JSON API (`/api/`) that may change anything (any method but GET/HEAD) must say
  `Content-Type: application/json` (415): a browser sends that cross-site only after a CORS
  preflight, which halld never grants, while `text/plain` forms and fetches need none. The
  console's own forms carry a CSRF token instead (hall/auth.py).

Staff authentication (hall/auth.py, the console) is the next middleware, after this one.
"""
from __future__ import annotations

import ipaddress
import json

from aiohttp import web


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"ok": False, "code": code, "message": message}))


def _hostname(host: str) -> str:
    """`name:port`, `[v6]:port` or a bare name -> the name (lower case, IPv6 without brackets)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Guard:
    def __init__(self, names: list[str] | tuple[str, ...] = ()) -> None:
        self.names = {"localhost", *(_hostname(n.lower()) for n in names)}

    def host_ok(self, host: str) -> bool:
        name = _hostname(host.lower())
        return bool(name) and (name in self.names or _is_ip(name))

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not self.host_ok(host):
            return _error(421, "bad_host", f"Host {host[:100]!r} does not name this server (halld serve --http-name)")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return _error(403, "cross_origin", f"requests from {origin[:100]!r} are not accepted")
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return _error(403, "cross_origin", "cross-site requests are not accepted")
        if request.method not in ("GET", "HEAD") and request.path.startswith("/api/") \
                and request.content_type != "application/json":
            return _error(415, "bad_content_type", "send the body as application/json")
        return await handler(request)

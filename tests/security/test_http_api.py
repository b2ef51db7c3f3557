"""Case 4 of issue 16: a web page in the hall's browser cannot use halld's HTTP API — no
text/plain "simple" POST, no foreign Origin, no DNS-rebound Host — while the CLI and same-origin
callers work. Real halld, real kioskd over the TLS broker."""
from __future__ import annotations

import json

import aiohttp
import pytest

from tests.hall.kiosk_client import staff_headers

from .conftest import halld, online
from .test_command_deadline import runs


async def post(h, path: str, body: bytes, **headers) -> tuple[int, dict]:
    """As a logged-in operator's tools would (an API token): the guard refuses before the login counts."""
    async with aiohttp.ClientSession(headers=await staff_headers(h, "admin")) as http:
        async with http.post(f"http://127.0.0.1:{h.http_port}{path}", data=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def get(h, path: str, **headers) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=await staff_headers(h, "admin")) as http:
        async with http.get(f"http://127.0.0.1:{h.http_port}{path}", headers=headers) as r:
            return r.status, await r.json(content_type=None)


RELEASE = json.dumps({"args": {"inhibit": False}, "hall": "H1", "timeout": 10}).encode()


async def test_a_web_page_cannot_send_commands_or_read_the_fleet(hall_broker, pki, kioskd_k1, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db")) as h:
        kioskd_k1.start()
        await online(h)
        own = f"127.0.0.1:{h.http_port}"
        evil = f"evil.example:{h.http_port}"
        attacks = [
            # a cross-site form or fetch with text/plain needs no preflight
            ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),
            ({"Content-Type": "text/plain"}, 415),  # the same without Origin (an old browser, a redirect)
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
            ({"Content-Type": "application/json", "Origin": "null"}, 403),  # a sandboxed frame
            ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403),
            # DNS rebinding: the page's own name now points at halld, so it is "same origin"
            ({"Content-Type": "application/json", "Host": evil, "Origin": f"http://{evil}"}, 421),
            ({"Content-Type": "application/json", "Host": evil}, 421),
        ]
        for headers, status in attacks:
            got, reply = await post(h, "/api/kiosks/K1/cmd/inhibit_cash", RELEASE, **headers)
            assert (got, reply["ok"]) == (status, False), (headers, got, reply)
        assert (await get(h, "/api/fleet", Host=evil))[0] == 421  # no read through a rebound name either
        assert runs(kioskd_k1, "inhibit_cash") == 0

        # what the CLI sends, and the hall's own pages (same origin) still work
        got, reply = await post(h, "/api/kiosks/K1/cmd/inhibit_cash", RELEASE, **{"Content-Type": "application/json"})
        assert (got, reply["ok"]) == (200, True)
        got, reply = await post(h, "/api/kiosks/K1/cmd/inhibit_cash", RELEASE,
                                **{"Content-Type": "application/json; charset=utf-8", "Origin": f"http://{own}"})
        assert (got, reply["ok"]) == (200, True)
        got, fleet = await get(h, "/api/fleet", Host=f"localhost:{h.http_port}")
        assert got == 200 and [k["kiosk"] for k in fleet] == ["K1"]
        assert runs(kioskd_k1, "inhibit_cash") == 2


@pytest.mark.parametrize("body,status", [(b'{"args":' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400),  # too deep
                                         (b'{"args": {"x": "' + b"x" * 200_000 + b'"}}', 413)])  # too long
async def test_a_malformed_body_is_a_clear_error_and_the_api_carries_on(hall_broker, pki, tmp_path, body, status):
    async with halld(hall_broker, pki, str(tmp_path / "h.db")) as h:
        got, reply = await post(h, "/api/kiosks/K1/cmd/inhibit_cash", body, **{"Content-Type": "application/json"})
        assert got == status
        assert (reply["ok"], reply["code"]) == (False, {400: "bad_request", 413: "too_large"}[status])
        assert (await get(h, "/api/stats"))[0] == 200


async def test_a_proxy_name_is_accepted_once_named(hall_broker, pki, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db"), http_names=["hall.example"]) as h:
        assert (await get(h, "/api/stats", Host="hall.example"))[0] == 200
        assert (await get(h, "/api/stats", Host="hall.example.evil.test"))[0] == 421

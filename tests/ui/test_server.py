"""kioskd serves the screen: its files on loopback, one WebSocket of snapshots, and bad input refused.

Every refusal is checked three ways: the page is told (or the socket closed), kioskd logs an
error that says why, and the flow is exactly where it was (same question, same number) and
still answers a good request afterwards — nothing lost.
"""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import aiohttp
import pytest

from controller.config import ConfigError, load
from tests.ui.kiosk import write_config

TIMEOUT = 20


def http(kiosk, path, method="GET", headers=None, data=None):
    req = urllib.request.Request(kiosk.url.rstrip("/") + path, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Page:
    """The page's side of the WebSocket, as a test drives it."""

    def __init__(self, session, ws):
        self.session, self.ws = session, ws
        self.last = None

    @classmethod
    async def open(cls, kiosk, origin=None):
        session = aiohttp.ClientSession()
        origin = origin or f"http://127.0.0.1:{kiosk.ui_port}"
        ws = await session.ws_connect(kiosk.url + "ws", headers={"Origin": origin})
        return cls(session, ws)

    async def next(self, timeout=TIMEOUT):
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return msg
        data = json.loads(msg.data)
        if data.get("type") == "screen":
            self.last = data
        return data

    async def until(self, what, check, timeout=TIMEOUT):
        async with asyncio.timeout(timeout):
            while True:
                if self.last is not None and check(self.last):
                    return self.last
                await self.next(timeout)

    async def send(self, obj):
        await self.ws.send_str(json.dumps(obj) if not isinstance(obj, str) else obj)

    async def close(self):
        await self.ws.close()
        await self.session.close()


def question(screen, prompt=None):
    v = screen.get("visit") or {}
    q = v.get("question")
    return q if q and (prompt is None or q["prompt"] == prompt) else None


def shown(screen):
    return [s["key"] for s in (screen.get("visit") or {}).get("shown", [])]


def test_the_page_and_its_words_are_served_from_the_package(kiosk):
    status, headers, body = http(kiosk, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"app.js" in body and b"http" not in body.replace(b"http-equiv", b""), "no asset from elsewhere"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for path, kind in (("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, headers, body = http(kiosk, path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    status, _, body = http(kiosk, "/messages.json")
    words = json.loads(body)
    assert status == 200 and words["welcome"]["zh"].startswith("您好") and "ui_please_wait" in words
    assert http(kiosk, "/../controller/kiosk.py")[0] == 404
    assert http(kiosk, "/nothing.js")[0] == 404
    assert http(kiosk, "/", method="POST", data=b"x")[0] == 405


def test_a_request_naming_another_host_is_refused(kiosk):
    status, _, _ = http(kiosk, "/", headers={"Host": "attacker.example:80"})
    assert status == 421
    kiosk.wait("the refusal logged", lambda: "request for another host refused" in kiosk.log())


async def test_a_websocket_from_another_origin_is_refused_and_logged(kiosk):
    async with aiohttp.ClientSession() as session:
        for origin in ("http://evil.example", f"http://localhost:{kiosk.ui_port + 1}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(kiosk.url + "ws", headers={"Origin": origin})
            assert err.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):  # no Origin at all: not a browser page of ours
            await session.ws_connect(kiosk.url + "ws", headers={"Origin": ""})
    assert "WebSocket from a foreign origin refused" in kiosk.log() and "evil.example" in kiosk.log()


async def test_the_page_gets_a_snapshot_at_once_and_after_every_change(kiosk):
    page = await Page.open(kiosk)
    try:
        first = await page.next()
        assert first["type"] == "screen" and first["kiosk"] == "UI-TEST-1" and first["mode"] == "ready"
        assert set(first["services"]) >= {"topup", "card_sale", "bill_pay", "balance_query", "statement",
                                           "invoice", "plan_change", "loss_report"}
        assert first["notices"] == ["今日营业至 18:00 / Open until 18:00 today"]
        await page.until("the menu asked of the flows", lambda s: s["services"]["card_sale"])
        await page.send({"type": "begin", "service": "card_sale", "id": 1})
        q = question(await page.until("the card question", lambda s: question(s, "choose_card")), "choose_card")
        assert q["options"] == ["3000", "5000", "10000"] and q["idle_left_s"] > 0
        await page.send({"type": "answer", "n": q["n"], "value": "3000"})
        await page.until("the insert-cash screen", lambda s: "insert_cash" in shown(s))
        kiosk.emu("cctalk", "insert_coin", value=100)
        s = await page.until("the coin on screen", lambda s: "paid_so_far" in shown(s))
        last = s["visit"]["shown"][-1]
        assert last == {"n": last["n"], "key": "paid_so_far", "fmt": {"paid": "1.00", "due": "30.00"}}
        await page.send({"type": "cancel"})
        done = await page.until("the visit over", lambda s: s["visit"]["last"] is not None)
        assert done["visit"]["last"]["state"] in ("refunded", "done") and "cancel_refund" in shown(done)
    finally:
        await page.close()


async def test_bad_messages_are_refused_and_the_question_stays(kiosk):
    page = await Page.open(kiosk)
    try:
        await page.until("the menu", lambda s: s["services"]["card_sale"])
        await page.send({"type": "begin", "service": "card_sale"})
        q = question(await page.until("the card question", lambda s: question(s, "choose_card")))
        bad = [
            ("{not json", "not JSON"),
            ("[1, 2]", 'expected an object with a string "type"'),
            ({"type": "frobnicate"}, "unknown type 'frobnicate'"),
            ({"type": "answer", "n": q["n"] + 7, "value": "3000"}, f"question {q['n'] + 7} is gone"),
            ({"type": "answer", "n": q["n"], "value": "123"}, "is not one of"),
            ({"type": "answer", "n": q["n"], "value": 3000}, 'string "value"'),
            ({"type": "begin", "service": "topup"}, "a customer is being served"),
        ]
        for request, reason in bad:
            await page.send(request)
            reply = await page.next()
            while reply.get("type") == "screen":
                reply = await page.next()
            assert reply["type"] == "refused" and reason in reply["error"], (request, reply)
        assert kiosk.log().count("customer screen: request refused") >= len(bad)
        screen = kiosk.api("screen")
        assert screen["busy"] and screen["question"]["n"] == q["n"] and screen["question"]["prompt"] == "choose_card"
        await page.send({"type": "answer", "n": q["n"], "value": "3000"})  # nothing lost: the good answer works
        await page.until("the insert-cash screen", lambda s: "insert_cash" in shown(s))
        await page.send({"type": "cancel"})
        await page.until("the visit over", lambda s: s["visit"]["last"] is not None)
    finally:
        await page.close()


@pytest.mark.parametrize("how", ["oversized", "binary"])
async def test_an_oversized_or_binary_message_closes_that_socket_only(kiosk, how):
    page = await Page.open(kiosk)
    other = await Page.open(kiosk)
    try:
        await page.until("the menu", lambda s: s["services"]["card_sale"])
        await page.send({"type": "begin", "service": "card_sale"})
        q = question(await page.until("the card question", lambda s: question(s, "choose_card")))
        if how == "oversized":
            await page.send({"type": "answer", "n": q["n"], "value": "3000", "pad": "x" * 10000})
        else:
            await page.ws.send_bytes(b"\x00\x01")
        while True:
            msg = await page.next()
            if isinstance(msg, aiohttp.WSMessage):
                break
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert page.ws.close_code == (1009 if how == "oversized" else 1003)
        assert ("oversized message refused" if how == "oversized" else "binary message refused") in kiosk.log()
        s = await other.until("the other page still fed", lambda s: question(s, "choose_card"))
        assert question(s)["n"] == q["n"], "the flow did not move"
        await other.send({"type": "cancel"})
        await other.until("the visit over", lambda s: s["visit"]["last"] is not None)
    finally:
        await page.close()
        await other.close()


def test_the_screen_is_served_on_loopback_only_unless_the_config_says_so(tmp_path):
    path = write_config(tmp_path, mqtt_port=1883, ui_port=8080)
    assert load(path).ui.listen == "127.0.0.1:8080"
    text = path.read_text()
    for listen in ("0.0.0.0:8080", "192.168.1.20:8080", "kiosk.local:8080"):
        path.write_text(text.replace('listen = "127.0.0.1:8080"', f'listen = "{listen}"'))
        with pytest.raises(ConfigError) as err:
            load(path)
        assert err.value.key == "ui.listen" and "loopback" in err.value.problem
    path.write_text(text.replace('listen = "127.0.0.1:8080"', 'listen = "0.0.0.0:8080"\nallow_remote = true'))
    assert load(path).ui.allow_remote
    for bad in ("8080", "127.0.0.1:http", "127.0.0.1:70000"):
        path.write_text(text.replace('listen = "127.0.0.1:8080"', f'listen = "{bad}"'))
        with pytest.raises(ConfigError, match="ui.listen: expected host:port"):
            load(path)
    path.write_text(text.replace('listen = "127.0.0.1:8080"', 'listen = "[::1]:8080"'))
    assert load(path).ui.listen == "[::1]:8080"


def test_a_taken_port_is_said_and_retried_and_status_names_the_page_once_served(tmp_path, broker, bosssim):
    """Two kiosks from one config contend for one port: the second says so, runs on, keeps trying,
    and `status` tells where (or whether) its page is served."""
    import socket

    from tests.ui.kiosk import SimKiosk

    kiosk = SimKiosk(tmp_path, broker.port, bosssim.url)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", kiosk.ui_port))
    squatter.listen()
    try:
        kiosk.start()
        assert kiosk.api("status")["screen"] is None
        assert "customer screen not served yet: cannot listen; retrying" in kiosk.log()
    finally:
        squatter.close()
    try:
        kiosk.wait("the page served once the port is free", lambda: kiosk.api("status")["screen"] == kiosk.url)
        assert http(kiosk, "/")[0] == 200
    finally:
        assert kiosk.stop() == 0, kiosk.log()[-3000:]

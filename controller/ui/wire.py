"""HTTP/1.1 and the one WebSocket, on asyncio streams, with h11 and wsproto (sans-I/O, like our codecs).

The page's files come from ``static/`` beside this module (shipped as package data) and the
message catalogue from transactions/messages.json; nothing else is served. Refused, each with a
logged error and nothing changed: a Host that is not this server's (DNS rebinding), a WebSocket
whose Origin is not the page's own, a request head over 16 KiB, a message over MAX_MESSAGE, a
binary message, JSON that is not an object with a "type", and requests the flow refuses
(an answer to a question not on the screen).
"""
from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from importlib import resources
from typing import Any

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from ..logs import fields

log = logging.getLogger("kioskd.ui")

MAX_HEAD = 16 * 1024
MAX_MESSAGE = 4096  # characters; the page's largest request is well under 200
IDLE_HTTP_S = 30.0  # a keep-alive connection with no request for this long is closed
MAX_BUFFERED = 1 << 20  # a page this far behind on snapshots is dropped; it reconnects to the current one

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".json": "application/json; charset=utf-8"}
SECURITY_HEADERS = [
    (b"Cache-Control", b"no-store"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Content-Security-Policy", b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]


@lru_cache(maxsize=None)
def asset(path: str) -> tuple[bytes, str] | None:
    """The page's files by URL path: ``/`` is index.html; only files in static/ exist."""
    if path == "/messages.json":
        from transactions.messages import catalogue

        return json.dumps(catalogue(), ensure_ascii=False).encode(), TYPES[".json"]
    name = "index.html" if path == "/" else path.lstrip("/")
    if not name or "/" in name or name.startswith("."):
        return None
    f = resources.files(__package__).joinpath("static", name)
    if not f.is_file():
        return None
    suffix = name[name.rfind("."):]
    return f.read_bytes(), TYPES.get(suffix, "application/octet-stream")


def _header(req: Any, name: bytes) -> str | None:
    for k, v in req.headers:
        if k == name:
            return v.decode("latin-1")
    return None


class _Http:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(65536), IDLE_HTTP_S)
            self.conn.receive_data(data)

    def send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.writer.write(data)

    def respond(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                head_only: bool = False, close: bool = False) -> None:
        headers = [(b"Content-Type", content_type.encode()), (b"Content-Length", str(len(body)).encode()),
                   *SECURITY_HEADERS]
        if close:
            headers.append((b"Connection", b"close"))
        self.send(h11.Response(status_code=status, headers=headers))
        if body and not head_only:
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())


async def serve_connection(server: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    http = _Http(reader, writer)
    peer = writer.get_extra_info("peername")
    while True:
        try:
            event = await http.next_event()
        except (TimeoutError, ConnectionError):
            return
        except h11.RemoteProtocolError as exc:
            log.error("customer screen: bad HTTP request refused", extra=fields(peer=peer, error=str(exc)))
            if http.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                http.respond(exc.error_status_hint, b"bad request\n", close=True)
                await writer.drain()
            return
        if isinstance(event, h11.ConnectionClosed):
            return
        if isinstance(event, h11.Request):
            upgrade = await _request(server, http, event, peer)
            if upgrade is not None:
                await _websocket(server, http, upgrade, peer)
                return
            await writer.drain()
        if http.conn.our_state is h11.MUST_CLOSE or http.conn.their_state is h11.MUST_CLOSE:
            return
        if http.conn.our_state is h11.DONE and http.conn.their_state is h11.DONE:
            http.conn.start_next_cycle()


async def _request(server: Any, http: _Http, req: Any, peer: Any) -> bytes | None:
    """Answer one plain request; for an acceptable WebSocket upgrade return its key instead."""
    target = req.target.decode("latin-1").split("?", 1)[0]
    method = req.method.decode("latin-1")
    host = _header(req, b"host") or ""
    allowed = server.allowed_hosts()
    if allowed is not None and host not in allowed:
        log.error("customer screen: request for another host refused", extra=fields(peer=peer, host=host))
        http.respond(421, b"not this kiosk's screen\n", close=True)
        return None
    if target == "/ws":
        key = _header(req, b"sec-websocket-key")
        origin = _header(req, b"origin")
        if (_header(req, b"upgrade") or "").lower() != "websocket" or not key:
            http.respond(400, b"a WebSocket upgrade is expected here\n", close=True)
            return None
        if origin != f"http://{host}":
            log.error("customer screen: WebSocket from a foreign origin refused",
                      extra=fields(peer=peer, origin=origin, host=host))
            http.respond(403, b"origin refused\n", close=True)
            return None
        return key.encode("latin-1")
    if method not in ("GET", "HEAD"):
        http.respond(405, b"method not allowed\n")
        return None
    found = asset(target)
    if found is None:
        http.respond(404, b"not found\n")
        return None
    body, content_type = found
    http.respond(200, body, content_type, head_only=method == "HEAD")
    return None


class Session:
    """One page's WebSocket: snapshots out, requests in."""

    def __init__(self, server: Any, writer: asyncio.StreamWriter, ws: Connection, peer: Any) -> None:
        self.server, self.writer, self.ws, self.peer = server, writer, ws, peer
        self.open = True

    def send_text(self, text: str) -> None:
        if not self.open:
            return
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            log.warning("customer screen: page not reading its snapshots, dropped", extra=fields(peer=self.peer))
            self.close(1008, "not reading")
            return
        self.writer.write(self.ws.send(TextMessage(data=text)))

    def close(self, code: int, reason: str) -> None:
        if self.open:
            self.open = False
            self.server.closed(self)
            try:
                self.writer.write(self.ws.send(CloseConnection(code=code, reason=reason)))
            except Exception:  # already closing from the other side
                pass
            self.writer.close()

    def refuse(self, reason: str, msg: Any = None) -> None:
        log.error("customer screen: request refused", extra=fields(peer=self.peer, reason=reason,
                                                                  request=str(msg)[:200] if msg is not None else None))
        reply: dict[str, Any] = {"type": "refused", "error": reason}
        if isinstance(msg, dict) and isinstance(msg.get("id"), (int, str)):
            reply["id"] = msg["id"]
        self.send_text(json.dumps(reply, ensure_ascii=False))

    async def request(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError as exc:
            self.refuse(f"not JSON: {exc}", text)
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.refuse('expected an object with a string "type"', msg)
            return
        try:
            await self.server.handle(msg)
        except ValueError as exc:
            self.refuse(str(exc), msg)
            return
        if isinstance(msg.get("id"), (int, str)):
            self.send_text(json.dumps({"type": "ok", "id": msg["id"]}))


async def _websocket(server: Any, http: _Http, key: bytes, peer: Any) -> None:
    while True:  # the upgrade request's end; then h11 pauses, waiting for our 101
        event = await http.next_event()
        if event is h11.PAUSED:
            break
    http.send(h11.InformationalResponse(status_code=101, headers=[
        (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Accept", generate_accept_token(key))]))
    trailing, _ = http.conn.trailing_data
    ws = Connection(ConnectionType.SERVER, trailing_data=trailing)
    session = Session(server, http.writer, ws, peer)
    log.info("customer screen connected", extra=fields(peer=peer))
    server.opened(session)
    parts: list[str] = []
    size = 0
    try:
        while session.open:
            for event in ws.events():
                if isinstance(event, TextMessage):
                    size += len(event.data)
                    if size > MAX_MESSAGE:
                        log.error("customer screen: oversized message refused, connection closed",
                                  extra=fields(peer=peer, limit=MAX_MESSAGE))
                        session.close(1009, f"message over {MAX_MESSAGE} characters")
                        return
                    parts.append(event.data)
                    if event.message_finished:
                        text, parts, size = "".join(parts), [], 0
                        await session.request(text)
                elif isinstance(event, BytesMessage):
                    log.error("customer screen: binary message refused, connection closed", extra=fields(peer=peer))
                    session.close(1003, "text messages only")
                    return
                elif isinstance(event, Ping):
                    http.writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if event.code not in (1000, 1001, 1005, 1006):
                        log.error("customer screen: bad WebSocket frame", extra=fields(peer=peer, code=event.code,
                                                                                       reason=event.reason))
                    session.close(1000 if event.code in (1000, 1001, 1005, 1006) else event.code, "")
                    return
            if not session.open:
                return
            try:
                data = await http.reader.read(65536)
            except ConnectionError:
                data = b""
            ws.receive_data(data or None)
    finally:
        session.open = False
        server.closed(session)
        log.info("customer screen disconnected", extra=fields(peer=peer))

"""The control socket every emulator (and kioskd's local API) speaks: JSON lines over a unix socket (docs/emulators.md).

Request:  {"cmd": "insert_coin", "value": 100}
Reply:    {"ok": true, "result": ...}   or   {"ok": false, "error": "..."}

The socket is a unix socket path, or ``tcp://HOST:PORT`` when the emulator runs on another machine
of the hardware rig (docs/rig.md; a bench network only: the protocol has no authentication).

One reply per line, whatever the line holds: a line over MAX_LINE bytes, JSON nested too deep, or
a handler that fails all get an error reply, and the connection stays open for the next line
(issue 16: they raised in the connection callback, dropped the connection and left no answer).
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
from typing import Any, Callable

from .model import ControlError

log = logging.getLogger("control")

Handler = Callable[[str, dict[str, Any]], Any]
MAX_LINE = 1 << 16  # a request line; the longest real one is well under 1 KiB


async def _answer(handler: Handler, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError as exc:
        return {"ok": False, "error": f"not JSON: {str(exc)[:120]}"}
    except RecursionError:
        return {"ok": False, "error": "not accepted: JSON nested too deep"}
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": 'expected an object with a string "cmd"'}
    cmd = request.pop("cmd")
    try:
        result = handler(cmd, request)
        if inspect.isawaitable(result):  # kioskd's local API has async commands
            result = await result
        return {"ok": True, "result": result}
    except ControlError as exc:
        return {"ok": False, "error": str(exc)}
    except (TypeError, ValueError, KeyError) as exc:
        return {"ok": False, "error": f"{cmd}: bad arguments: {exc}"}


async def _reply(handler: Handler, line: bytes) -> bytes:
    try:
        reply = await _answer(handler, line)
        return json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n"
    except Exception as exc:  # a handler's bug or a result that cannot be encoded: an answer, not a drop
        log.exception("control request failed")
        return json.dumps({"ok": False, "error": f"failed: {type(exc).__name__}"}).encode() + b"\n"


async def _lines(reader: asyncio.StreamReader):
    """Request lines, framed here (not readline, which raises on a long line and cannot resync):
    a line over MAX_LINE comes out as None, once, and its bytes are skipped up to its newline."""
    buf, skipping = bytearray(), False
    while chunk := await reader.read(MAX_LINE):
        buf += chunk
        while (nl := buf.find(b"\n")) >= 0:
            line = bytes(buf[:nl])
            del buf[:nl + 1]
            if skipping:
                skipping = False
            else:
                yield None if len(line) > MAX_LINE else line
        if len(buf) > MAX_LINE:
            if not skipping:
                yield None
            skipping = True
            buf.clear()
    if buf and not skipping:
        yield bytes(buf)


async def serve_control(path: str, handler: Handler) -> asyncio.AbstractServer:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async for line in _lines(reader):
                if line is None:
                    out = json.dumps({"ok": False, "error": f"line longer than {MAX_LINE} bytes"}).encode() + b"\n"
                else:
                    out = await _reply(handler, line)
                writer.write(out)
                await writer.drain()
        except ConnectionError:
            pass
        except asyncio.CancelledError:  # the loop ending with a client connected (kioskd stopping):
            pass  # end quietly; Python 3.11's start_server logs a cancelled handler as an error with a traceback
        finally:
            writer.close()

    if path.startswith("tcp://"):
        host, _, port = path[6:].rpartition(":")
        return await asyncio.start_server(client, host or "127.0.0.1", int(port))
    if os.path.exists(path):
        os.unlink(path)
    return await asyncio.start_unix_server(client, path)


def _tcp(path: str) -> tuple[str, int] | None:
    if not path.startswith("tcp://"):
        return None
    host, _, port = path[6:].rpartition(":")
    return host or "127.0.0.1", int(port)


async def call(path: str, cmd: str, /, **args: Any) -> Any:
    """Send one command; returns the result or raises ControlError with the emulator's words."""
    tcp = _tcp(path)
    reader, writer = await (asyncio.open_connection(*tcp) if tcp else asyncio.open_unix_connection(path))
    try:
        writer.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        reply = json.loads(await reader.readline())
    finally:
        writer.close()
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "unknown error"))
    return reply.get("result")


def call_sync(path: str, cmd: str, /, **args: Any) -> Any:
    """The same, for scripts and threads outside any event loop."""
    tcp = _tcp(path)
    with (socket.create_connection(tcp) if tcp else socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        if not tcp:
            sock.connect(path)
        sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "unknown error"))
    return reply.get("result")

"""The control socket every emulator (and kioskd's local API) speaks: JSON lines over a unix socket (docs/emulators.md).

Request:  {"cmd": "insert_coin", "value": 100}
Reply:    {"ok": true, "result": ...}   or   {"ok": false, "error": "..."}
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
from typing import Any, Callable

from .model import ControlError

Handler = Callable[[str, dict[str, Any]], Any]


async def _answer(handler: Handler, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
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


async def serve_control(path: str, handler: Handler) -> asyncio.AbstractServer:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await _answer(handler, line)
                writer.write(json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    if os.path.exists(path):
        os.unlink(path)
    return await asyncio.start_unix_server(client, path)


async def call(path: str, cmd: str, /, **args: Any) -> Any:
    """Send one command; returns the result or raises ControlError with the emulator's words."""
    reader, writer = await asyncio.open_unix_connection(path)
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
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
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

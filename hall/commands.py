"""Hall -> kiosk commands: `cmd/{name}` with a response topic and correlation data, await the reply.

docs/mqtt.md "Commands". Each command gets an id `{worker}-{random}`, sent as the correlation
data; the response topic is `kiosk/v1/H/K/cmdresp/{worker}`, which each worker subscribes to for
itself, so the reply reaches the worker that waits for it. One fixed topic per worker (not one per
command) is what the broker's ACL grants a kiosk: it can leave at most one retained message there. Each command and its reply are
logged in the `commands` table.

Every command carries its deadline three ways (issue 16: a command staff saw time out ran when the
kiosk came back hours later): the MQTT message expiry (the broker drops it from the kiosk's
session queue), `deadline` in the payload (kioskd refuses it as `expired`, whatever path it took),
and the wait here. `id` is the idempotency key: kioskd runs one id once and answers a repeat with
the first reply; a caller retrying passes the same `key` (HTTP API body `key`), or gets a fresh one.
A successful `resolve_review` / `resolve_refund` also closes the
hall's own review / refund row, so the hall's lists agree with the kiosk at once.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .db import Database
from .store import Store

log = logging.getLogger("halld.commands")

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # one topic level: no '/', '+' or '#'
DEFAULT_TIMEOUT_S = 10.0

KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # what kioskd accepts as a command id
MAX_TIMEOUT_S = 120.0

# publish(topic, payload, response_topic, correlation_data, expiry_s)
Publish = Callable[[str, bytes, str, bytes, int], Awaitable[None]]


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Commands:
    def __init__(self, worker: str, publish: Publish, log_write: Callable[..., Awaitable[Any]]) -> None:
        self.worker = worker
        self.publish = publish
        self.log_write = log_write  # Writer.call
        self._waiting: dict[bytes, asyncio.Future] = {}

    async def send(self, hall: str, kiosk: str, name: str, args: dict[str, Any],
                   timeout: float = DEFAULT_TIMEOUT_S, key: str | None = None) -> dict[str, Any]:
        """Send and wait; returns the kiosk's reply envelope (`ok` true or false). Raises
        CommandError("timeout"| "bad_request"| "unavailable") when there is no reply to give.
        `key`: the idempotency key of a retry (the kiosk runs one key once); None: a new command."""
        for level in (hall, kiosk, name):
            if not NAME_RE.fullmatch(level or ""):
                raise CommandError("bad_request", f"{level!r} cannot be a topic level")
        if not isinstance(args, dict):
            raise CommandError("bad_request", "args must be a JSON object")
        if key is not None and not (isinstance(key, str) and KEY_RE.fullmatch(key)):
            raise CommandError("bad_request", "key: letters, digits, _ . : - (at most 128)")
        if not (isinstance(timeout, (int, float)) and 0 < timeout <= MAX_TIMEOUT_S):
            raise CommandError("bad_request", f"timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} s")
        cid = f"{self.worker}-{secrets.token_hex(8)}"
        key = key or cid
        deadline = time.time() + timeout
        base = f"kiosk/v1/{hall}/{kiosk}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[cid.encode()] = future
        await self.log_write(_log_sent, cid, hall, kiosk, name, args, time.time())
        try:
            try:
                body = {"schema": 1, "id": key, "deadline": round(deadline, 3), "args": args}
                await self.publish(f"{base}/cmd/{name}", json.dumps(body, ensure_ascii=False).encode(),
                                   f"{base}/cmdresp/{self.worker}", cid.encode(), max(1, math.ceil(timeout)))
            except Exception as exc:
                raise CommandError("unavailable", f"not connected to the broker: {exc}") from None
            try:
                async with asyncio.timeout(timeout):
                    reply = await future
            except TimeoutError:
                raise CommandError("timeout", f"{kiosk} did not answer {name} within {timeout:g} s") from None
        finally:
            self._waiting.pop(cid.encode(), None)
        await self.log_write(_log_reply, cid, kiosk, name, args, reply, time.time())
        return reply

    def on_reply(self, topic: str, payload: bytes, correlation: bytes | None) -> bool:
        """A `cmdresp/...` message; True when it answered a command this worker waits for."""
        future = self._waiting.get(correlation or b"")
        if future is None or future.done():
            return False
        try:
            reply = json.loads(payload)
            if not isinstance(reply, dict) or type(reply.get("ok")) is not bool:
                raise ValueError("reply needs ok: bool")
        except (ValueError, UnicodeDecodeError) as exc:
            reply = {"schema": 1, "ok": False, "error": {"code": "bad_reply", "message": str(exc)[:200]}}
        except RecursionError:
            reply = {"schema": 1, "ok": False, "error": {"code": "bad_reply", "message": "nested too deep"}}
        future.set_result(reply)
        return True


def _log_sent(db: Database, cid: str, hall: str, kiosk: str, name: str, args: dict, now: float) -> None:
    db.execute("INSERT INTO commands (id, hall, kiosk, name, args, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
               (cid, hall, kiosk, name, json.dumps(args, ensure_ascii=False), now))


def _log_reply(db: Database, cid: str, kiosk: str, name: str, args: dict, reply: dict, now: float) -> None:
    db.execute("UPDATE commands SET answered_at = ?, ok = ?, reply = ? WHERE id = ?",
               (now, int(bool(reply.get("ok"))), json.dumps(reply, ensure_ascii=False), cid))
    if not reply.get("ok"):
        return
    note = str(args.get("note") or "")
    if name == "resolve_review" and isinstance(args.get("txn"), str):
        Store.resolve_review(db, kiosk, args["txn"], str(args.get("resolution") or "resolved"), note, now)
    elif name == "resolve_refund" and isinstance(args.get("claim"), str):
        # the same state the kiosk's voucher_claimed event gives the row when it arrives
        Store.resolve_refund(db, kiosk, args["claim"], "claimed", note, now)

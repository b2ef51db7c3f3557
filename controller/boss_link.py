"""The BOSS over the hall: a ``BossTransport`` that travels as MQTT 5 request/response (docs/mqtt.md).

The flows keep their ``Boss`` (transactions/boss.py); only the transport changes. A request is
published on ``boss/req`` with ``response_topic = kiosk/v1/H/K/resp/boss``, a fresh correlation id
and ``message_expiry_interval`` = the call's timeout (a request the hall picks up too late is
dropped by the broker rather than applied after the kiosk has given up on it). halld answers with
bosssim's envelope, and the codes map exactly as docs/mqtt.md says:

- link down or hall offline: ``BossUnavailable`` at once (nothing was sent, nothing applied);
- ``ok: false`` with ``code`` ``"timeout"``: ``BossTimeout`` (a write's fate is unknown);
  ``"unavailable"``: ``BossUnavailable``; any other code: ``BossRefused``;
- no reply within the timeout: ``BossTimeout`` (it may have been applied: recovery asks by key).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from transactions.boss import BossError, BossRefused, BossTimeout, BossUnavailable

from .link import HallLink, Incoming, LinkDown
from .logs import fields

log = logging.getLogger("kioskd.boss")

REPLY_LEAF = "resp/boss"


class HallBossTransport:
    def __init__(self, link: HallLink) -> None:
        self.link = link
        self._pending: dict[bytes, asyncio.Future] = {}
        link.on(REPLY_LEAF, self._on_reply)

    def _on_reply(self, message: Incoming) -> None:
        fut = self._pending.get(message.correlation or b"")
        if fut is None:
            log.info("BOSS reply for no pending request (late, or from an earlier boot)",
                     extra=fields(correlation=(message.correlation or b"").hex()))
            return
        if not fut.done():
            fut.set_result(message.payload)

    async def call(self, op: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self.link.connected.is_set():
            raise BossUnavailable("unavailable", f"{op}: hall link is down")
        if self.link.hall_online is False:
            raise BossUnavailable("unavailable", f"{op}: the hall is offline")
        correlation = uuid.uuid4().bytes
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[correlation] = fut
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self.link.publish("boss/req", {"op": op, "params": params},
                                            response_topic=self.link.topic(REPLY_LEAF), correlation=correlation,
                                            expiry_s=timeout, timeout=timeout)
                except LinkDown as exc:
                    if exc.sent:  # lost after it left: the hall may have it, so its fate is unknown
                        raise BossTimeout("timeout", f"{op}: link lost while sending: {exc}") from None
                    raise BossUnavailable("unavailable", f"{op}: {exc}") from None
                raw = await fut
        except TimeoutError:
            raise BossTimeout("timeout", f"{op}: no answer from the hall in {timeout:g} s") from None
        finally:
            self._pending.pop(correlation, None)
        return _unwrap(op, raw)

    async def close(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()


def _unwrap(op: str, raw: bytes) -> dict[str, Any]:
    """bosssim's envelope: ``{"ok": true, "result": {...}}`` or ``{"ok": false, "code", "message"}``."""
    import json

    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BossError("bad_reply", f"{op}: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise BossError("bad_reply", f"{op}: {raw[:200]!r}")
    if body["ok"]:
        result = body.get("result") or {}
        if not isinstance(result, dict):
            raise BossError("bad_reply", f"{op}: result {result!r:.200}")
        return result
    code, message = str(body.get("code", "refused")), str(body.get("message", ""))
    if code == "timeout":
        raise BossTimeout(code, message)
    if code == "unavailable":
        raise BossUnavailable(code, message)
    raise BossRefused(code, message)

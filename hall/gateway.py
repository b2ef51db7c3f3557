"""BOSS over the hall: a kiosk's `boss/req` goes to the BOSS adapter, the reply to its response topic.

docs/mqtt.md "BOSS over the hall". The request's `op` must be one of the operations a kiosk
may ask (transactions/boss.py `OPS`) and its `params` must fit that operation's schema; anything
else is answered `unknown_op` / `bad_request` and never reaches the BOSS. What passes is forwarded
untouched (idempotency keys included: the BOSS applies one key once, so a kiosk's retry or a
duplicated delivery cannot credit twice). Every request gets an answer, malformed ones included
(not JSON, nested too deep, wrong envelope), so a kiosk never waits out its timeout for nothing. The reply reuses bosssim's HTTP envelope with the request's
correlation data. The adapter is transactions/boss.py's transport (HttpTransport for bosssim or
an operator's HTTP JSON front), so the kiosk and the hall share one set of error rules:

- the BOSS did not answer in time, or answered something unreadable -> `timeout` (a write's fate
  is unknown: the kiosk asks `op_status` with the key);
- the BOSS could not be reached, or no adapter is configured -> `unavailable` (nothing applied);
- any other code is the BOSS's refusal, passed through.

The request's MQTT 5 message expiry is the kiosk's own deadline: the BOSS call gets what is left
of it (less a margin for the way back), a request already expired is dropped, and the reply
expires when the kiosk stops waiting. A response topic outside the asking kiosk's own
`kiosk/v1/H/K/resp/` subtree is refused: halld may write every kiosk's `resp/`, so it must not be
talked into answering into another kiosk's.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from transactions.boss import BossError, BossRefused, BossTimeout, BossTransport, BossUnavailable, check_request

log = logging.getLogger("halld.gateway")

DEFAULT_TIMEOUT_S = 5.0  # a request without expiry
MAX_TIMEOUT_S = 60.0
RETURN_MARGIN_S = 0.2  # kept for the reply's trip back to the kiosk
MAX_CONCURRENT = 64

# publish(topic, payload, correlation_data, expiry_s)
Publish = Callable[[str, bytes, bytes, int | None], Awaitable[None]]


def envelope_error(code: str, message: str = "") -> dict[str, Any]:
    return {"schema": 1, "ok": False, "code": code, "message": message}


def reply_bytes(reply: dict[str, Any]) -> bytes:
    """The reply as UTF-8 JSON; a refusal may quote what a kiosk sent, lone surrogates included,
    which UTF-8 cannot carry: then ASCII JSON, whose \\u escapes can."""
    try:
        return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(reply, separators=(",", ":")).encode()


class Gateway:
    def __init__(self, transport: BossTransport | None, publish: Publish, stats: Counter) -> None:
        self.transport = transport
        self.publish = publish
        self.stats = stats
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    def submit(self, hall: str, kiosk: str, payload: bytes, response_topic: str | None,
               correlation: bytes | None, expiry: int | None) -> None:
        """Called from the receive loop; the BOSS call runs in its own task."""
        self.stats["boss_requests"] += 1
        if not response_topic:
            self.stats["malformed"] += 1
            log.warning("boss/req from %s/%s without a response topic dropped", hall, kiosk)
            return
        prefix = f"kiosk/v1/{hall}/{kiosk}/resp/"
        name = response_topic[len(prefix):]
        if not response_topic.startswith(prefix) or not name or any(c in name for c in "+#/"):  # resp/{one level}
            self.stats["malformed"] += 1
            log.warning("boss/req from %s/%s wants its answer on %r: refused", hall, kiosk, response_topic)
            return
        if expiry is not None and expiry <= 0:
            self.stats["boss_expired"] += 1
            return
        task = asyncio.get_running_loop().create_task(
            self._serve(hall, kiosk, payload, response_topic, correlation or b"", expiry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, hall: str, kiosk: str, payload: bytes, topic: str, correlation: bytes,
                     expiry: int | None) -> None:
        started = time.monotonic()
        budget = min(float(expiry) if expiry is not None else DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S)
        async with self._slots:
            reply = await self._call(hall, kiosk, payload, max(0.05, budget - RETURN_MARGIN_S - (time.monotonic() - started)))
        left = budget - (time.monotonic() - started)
        if expiry is not None and left <= 0:
            self.stats["boss_late"] += 1
            log.info("BOSS reply for %s/%s came after the kiosk's deadline: not sent", hall, kiosk)
            return
        self.stats["boss_ok" if reply["ok"] else f"boss_{reply['code']}"] += 1
        body = reply_bytes(reply)
        try:
            await self.publish(topic, body, correlation, max(1, int(left + 0.999)) if expiry is not None else None)
        except Exception as exc:  # the link dropped: the kiosk times out and asks op_status
            log.warning("BOSS reply to %s/%s not sent: %s", hall, kiosk, exc)

    async def _call(self, hall: str, kiosk: str, payload: bytes, timeout: float) -> dict[str, Any]:
        try:
            req = json.loads(payload)
            if not isinstance(req, dict) or req.get("schema") != 1:
                raise ValueError("expected a JSON object with schema 1")
            op, params = req.get("op"), req.get("params", {})
            check_request(op, params)
        except RecursionError:  # json gives up on deep nesting this way, not with a ValueError
            self.stats["malformed"] += 1
            return envelope_error("bad_request", "nested too deep")
        except (ValueError, UnicodeDecodeError) as exc:
            self.stats["malformed"] += 1
            return envelope_error("bad_request", str(exc)[:200])
        except BossRefused as exc:  # not an operation kiosks may ask, or params of the wrong shape
            self.stats["boss_not_allowed"] += 1
            log.warning("boss/req from %s/%s refused: %s", hall, kiosk, exc.message)
            return envelope_error(exc.code, exc.message)
        if self.transport is None:
            return envelope_error("unavailable", "this hall has no BOSS adapter configured")
        try:
            async with asyncio.timeout(timeout + 0.5):  # the transport times itself; this is a backstop
                result = await self.transport.call(op, params, timeout)
        except (BossTimeout, TimeoutError) as exc:
            return envelope_error("timeout", str(exc))
        except BossUnavailable as exc:
            return envelope_error("unavailable", str(exc))
        except BossRefused as exc:
            return envelope_error(exc.code, exc.message)
        except BossError as exc:  # an unreadable answer: for a write, as unknown as no answer
            return envelope_error("timeout", f"{exc.code}: {exc.message}")
        log.info("BOSS %s for %s/%s ok", op, hall, kiosk)
        return {"schema": 1, "ok": True, "result": result}

    async def aclose(self) -> None:
        while self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.wait(self._tasks, timeout=1)
        if self.transport is not None:
            await self.transport.close()

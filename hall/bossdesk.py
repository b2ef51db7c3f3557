"""The hall's own calls to the BOSS (issue 14's back office), never a kiosk's.

A kiosk may ask the BOSS only what transactions/boss.py `OPS` lists (hall/gateway.py checks it), so
the back-office operations — the day statement for reconciliation, the reversal of a top-up, the
commission statement and its transfer to the hall's wallet — go out from here, over the same
HTTP JSON envelope (`POST {base}/boss/v1/{op}`), with their own allow-list checked before anything
leaves. Errors are transactions/boss.py's: `BossTimeout` (a write's fate unknown: ask again with
the same key), `BossUnavailable` (nothing applied), `BossRefused` (the BOSS said no, with its code).
"""
from __future__ import annotations

import asyncio
import re
import urllib.parse
from typing import Any

from transactions.boss import FEN, KEY, BossError, BossRefused, BossTimeout, BossUnavailable, Param

DATE = Param(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v) is not None,
             "a date YYYY-MM-DD")
MONTH = Param(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}", v) is not None, "a month YYYY-MM")
REASON = Param(lambda v: isinstance(v, str) and len(v) <= 200, "a reason (at most 200 characters)")

HALL_OPS: dict[str, dict[str, Param]] = {
    "day_statement": {"date": DATE},
    "reverse_credit": {"of": KEY, "reason": REASON, "key": KEY},
    "commission_statement": {"month": MONTH},
    "commission_transfer": {"fen": FEN, "key": KEY},
    "op_status": {"key": KEY},
}


def check(op: str, params: dict[str, Any]) -> None:
    spec = HALL_OPS.get(op)
    if spec is None:
        raise BossRefused("unknown_op", f"{op!r} is not a back-office operation")
    if set(params) != set(spec):
        raise BossRefused("bad_request", f"{op}: expected parameters {', '.join(spec)}")
    for name, param in spec.items():
        if not param.check(params[name]):
            raise BossRefused("bad_request", f"{op}: {name} must be {param.says}")


class BossDesk:
    """``await desk.call(op, **params)`` -> the BOSS's result dict, or a BossError."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session: Any = None

    async def call(self, op: str, **params: Any) -> dict[str, Any]:
        import aiohttp

        check(op, params)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(f"{self.base_url}/boss/v1/{urllib.parse.quote(op, safe='')}",
                                              json=params) as resp:
                    body = await resp.json(content_type=None)
        except TimeoutError:
            raise BossTimeout("timeout", f"{op}: no answer in {self.timeout:g} s") from None
        except aiohttp.ClientConnectionError as exc:
            raise BossUnavailable("unreachable", f"{op}: {exc}") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise BossError("bad_reply", f"{op}: {exc}") from None
        if not isinstance(body, dict) or "ok" not in body:
            raise BossError("bad_reply", f"{op}: {body!r:.200}")
        if not body["ok"]:
            code = str(body.get("code", "refused"))
            if code == "timeout":
                raise BossTimeout(code, str(body.get("message", "")))
            raise BossRefused(code, str(body.get("message", "")))
        return body.get("result") or {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

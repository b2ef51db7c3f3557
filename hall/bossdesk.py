"""The hall's own calls to the BOSS (issue 14's back office), never a kiosk's.

A kiosk may ask the BOSS only what transactions/boss.py `OPS` lists (hall/gateway.py checks it), so
the back-office operations — the day statement for reconciliation, the reversal of a top-up, the
commission statement and its transfer to the hall's wallet — go out from here, over the same
HTTP JSON envelope (`POST {base}/boss/v1/{op}`), with their own allow-list checked before anything
leaves. Errors are transactions/boss.py's: `BossTimeout` (a write's fate unknown: ask again with
the same key), `BossUnavailable` (nothing applied), `BossRefused` (the BOSS said no, with its code).
"""
from __future__ import annotations

import re
from typing import Any

from transactions.boss import FEN, KEY, BossRefused, HttpTransport, Param

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
    """``await desk.call(op, **params)`` -> the BOSS's result dict, or a BossError: the kiosks' HTTP
    transport with the back office's allow-list."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.transport = HttpTransport(base_url, allowed=check)
        self.timeout = timeout

    async def call(self, op: str, **params: Any) -> dict[str, Any]:
        return await self.transport.call(op, params, self.timeout)

    async def close(self) -> None:
        await self.transport.close()

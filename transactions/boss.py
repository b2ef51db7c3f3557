"""The operator's business system (BOSS) as the flows see it: typed async calls over any transport.

Why a transport seam: today the kiosk talks HTTP JSON straight to a BOSS (or ``bosssim``);
later the hall fronts the BOSS and the same calls travel over MQTT (``boss/req`` + response
topic). ``Boss`` holds the typed API and the error rules; a transport only moves
``(op, params) -> result dict`` and maps its failures onto the three errors below.

Errors, and what a flow may conclude from each:
- ``BossRefused``: the BOSS said no (unknown number, closed account, wrong password). Nothing
  was applied.
- ``BossTimeout``: no answer in time. A *write* may or may not have been applied: ask
  ``credit_status(idempotency_key)``, never repeat a credit with a new key.
- ``BossUnavailable``: could not even reach it (offline). Nothing was applied.
Writes (credit, pay_bill, change_plan, suspend_number) carry an idempotency key: the BOSS
applies one key once and answers a repeat with the first result.
"""
from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class BossError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class BossRefused(BossError):
    """The BOSS answered no; nothing was applied."""


class BossTimeout(BossError):
    """No answer in time; a write's fate is unknown until ``credit_status`` says."""


class BossUnavailable(BossError):
    """The BOSS could not be reached at all (offline); nothing was applied."""


@dataclass(frozen=True)
class NumberInfo:
    phone: str
    active: bool
    status: str  # active | suspended | closed
    prepaid: bool
    holder_masked: str  # "张*", never the full name on a public screen


@dataclass(frozen=True)
class Balance:
    phone: str
    balance_fen: int
    arrears_fen: int


@dataclass(frozen=True)
class Plan:
    code: str
    name_zh: str
    name_en: str
    monthly_fen: int


@dataclass(frozen=True)
class Plans:
    current: str
    available: list[Plan]


@dataclass(frozen=True)
class BillInfo:
    phone: str
    due_fen: int  # arrears + the open month
    months: list[dict]  # [{"month": "2026-10", "amount_fen": ..., "paid_fen": ...}]


@dataclass(frozen=True)
class CreditResult:
    key: str
    phone: str
    fen: int
    applied: bool
    balance_fen: int
    boss_ref: str


@dataclass(frozen=True)
class OpResult:
    key: str
    ok: bool
    boss_ref: str
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpStatus:
    """What the BOSS knows of an idempotency key: ``found`` False means never applied."""

    key: str
    found: bool
    op: str = ""
    result: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Statement:
    phone: str
    month: str
    lines: list[tuple[str, int]]  # (item, fen)
    total_fen: int


@dataclass(frozen=True)
class Invoice:
    phone: str
    month: str
    number: str
    title: str
    amount_fen: int


class BossTransport(Protocol):
    async def call(self, op: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; return the result dict or raise BossRefused/BossTimeout/BossUnavailable."""
        ...

    async def close(self) -> None: ...


# -- the operations a kiosk may ask of the BOSS, each with the schema of its parameters ------------
#
# Why here: the typed calls below are the only requests a kiosk makes, so this table is their
# contract, and both paths to a BOSS check it before anything leaves — HttpTransport (the kiosk
# talking HTTP itself) and the hall's gateway (a kiosk's `boss/req`, hall/gateway.py). An op that
# is not listed, a parameter missing, unknown or of the wrong shape is refused as `unknown_op` /
# `bad_request` and never reaches the operator's system (issue 16: an `op` of
# "../../admin/reset?all=1" was POSTed to the BOSS as /admin/reset). Shapes are bounded (lengths,
# integer ranges), business rules stay the BOSS's (an unknown number is its refusal, not ours).

MAX_FEN = 1_000_000_000  # ¥10,000,000: far above any kiosk payment, far below int64


@dataclass(frozen=True)
class Param:
    check: Callable[[Any], bool]
    says: str  # what a valid value looks like, for the error message


def _pattern(rx: str, says: str) -> Param:
    compiled = re.compile(rx)
    return Param(lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None, says)


PHONE = _pattern(r"\+?[0-9]{1,20}", "a phone number (up to 20 digits)")
KEY = _pattern(r"[A-Za-z0-9_.:-]{1,128}", "an idempotency key (letters, digits, _ . : -, at most 128)")
PLAN = _pattern(r"[A-Za-z0-9_.-]{1,32}", "a plan code (letters, digits, _ . -, at most 32)")
MONTH = _pattern(r"[0-9]{4}-[0-9]{2}", "a month YYYY-MM")
SECRET = _pattern(r"[0-9A-Za-z]{1,16}", "up to 16 letters or digits")
FEN = Param(lambda v: type(v) is int and 1 <= v <= MAX_FEN, f"integer fen from 1 to {MAX_FEN}")
# issue 11: numbers for sale, SIM card data, owners by ID card
SUFFIX = _pattern(r"[0-9]{0,8}", "up to 8 digits the number ends in")
LIMIT = Param(lambda v: type(v) is int and 1 <= v <= 50, "an integer from 1 to 50")
ICCID = _pattern(r"[0-9]{18,20}", "an ICCID (18-20 digits)")
ID_NUMBER = _pattern(r"[0-9]{17}[0-9Xx]", "an 18-character resident ID number")
NAME = Param(lambda v: isinstance(v, str) and 1 <= len(v) <= 30 and v.isprintable(), "a name (1-30 characters)")

OPS: dict[str, dict[str, Param]] = {
    "ping": {},
    "check_number": {"phone": PHONE},
    "query_balance": {"phone": PHONE},
    "query_plans": {"phone": PHONE},
    "change_plan": {"phone": PHONE, "plan": PLAN, "key": KEY},
    "query_bill": {"phone": PHONE},
    "pay_bill": {"phone": PHONE, "fen": FEN, "key": KEY},
    "credit": {"phone": PHONE, "fen": FEN, "key": KEY},
    "op_status": {"key": KEY},
    "verify_password": {"phone": PHONE, "password": SECRET},
    "send_sms_code": {"phone": PHONE},
    "verify_sms_code": {"phone": PHONE, "code": SECRET},
    "suspend_number": {"phone": PHONE, "key": KEY},
    "statement": {"phone": PHONE, "month": MONTH},
    "invoice": {"phone": PHONE, "month": MONTH},
    "list_numbers": {"suffix": SUFFIX, "limit": LIMIT},
    "reserve_number": {"phone": PHONE, "holder": KEY, "key": KEY},
    "release_number": {"phone": PHONE, "holder": KEY, "key": KEY},
    "sim_card_data": {"phone": PHONE, "iccid": ICCID},
    "open_number": {"phone": PHONE, "holder": KEY, "iccid": ICCID, "id_number": ID_NUMBER, "name": NAME,
                    "plan": PLAN, "key": KEY},
    "owner_check": {"phone": PHONE, "id_number": ID_NUMBER},
    "replace_sim": {"phone": PHONE, "iccid": ICCID, "id_number": ID_NUMBER, "key": KEY},
    "register_real_name": {"phone": PHONE, "id_number": ID_NUMBER, "name": NAME, "key": KEY},
}


def check_request(op: Any, params: Any) -> None:
    """Raise ``BossRefused`` (``unknown_op`` or ``bad_request``) unless ``op`` is in OPS and
    ``params`` has exactly its parameters, each of the right shape."""
    spec = OPS.get(op) if isinstance(op, str) else None
    if spec is None:
        raise BossRefused("unknown_op", f"{str(op)[:64]!r} is not an operation kiosks may ask (known: {', '.join(OPS)})")
    if not isinstance(params, dict):
        raise BossRefused("bad_request", f"{op}: params must be an object")
    unknown = [str(k)[:32] for k in params if k not in spec]
    if unknown:
        raise BossRefused("bad_request", f"{op}: unknown parameter(s) {', '.join(unknown)}")
    for name, param in spec.items():
        if name not in params:
            raise BossRefused("bad_request", f"{op}: missing {name}")
        if not param.check(params[name]):
            raise BossRefused("bad_request", f"{op}: {name} must be {param.says}")


def _fen(value: Any) -> int:
    if type(value) is not int:
        raise BossError("bad_reply", f"amount {value!r} is not integer fen")
    return value


class Boss:
    """Typed BOSS calls over a transport. ``timeout`` bounds every call (seconds)."""

    def __init__(self, transport: BossTransport, timeout: float = 5.0) -> None:
        self.transport = transport
        self.timeout = timeout

    async def _call(self, op: str, **params: Any) -> dict[str, Any]:
        return await self.transport.call(op, params, self.timeout)

    async def close(self) -> None:
        await self.transport.close()

    async def ping(self) -> bool:
        try:
            await self._call("ping")
            return True
        except BossError:
            return False

    async def check_number(self, phone: str) -> NumberInfo:
        r = await self._call("check_number", phone=phone)
        return NumberInfo(phone, r["status"] == "active", r["status"], bool(r["prepaid"]), r["holder_masked"])

    async def query_balance(self, phone: str) -> Balance:
        r = await self._call("query_balance", phone=phone)
        return Balance(phone, _fen(r["balance_fen"]), _fen(r["arrears_fen"]))

    async def query_plans(self, phone: str) -> Plans:
        r = await self._call("query_plans", phone=phone)
        return Plans(r["current"], [Plan(p["code"], p["name_zh"], p["name_en"], _fen(p["monthly_fen"]))
                                    for p in r["available"]])

    async def change_plan(self, phone: str, plan: str, idempotency_key: str) -> OpResult:
        r = await self._call("change_plan", phone=phone, plan=plan, key=idempotency_key)
        return OpResult(idempotency_key, True, r["boss_ref"], r)

    async def query_bill(self, phone: str) -> BillInfo:
        r = await self._call("query_bill", phone=phone)
        return BillInfo(phone, _fen(r["due_fen"]), r["months"])

    async def pay_bill(self, phone: str, fen: int, idempotency_key: str) -> CreditResult:
        r = await self._call("pay_bill", phone=phone, fen=_fen(fen), key=idempotency_key)
        return CreditResult(idempotency_key, phone, fen, True, _fen(r["balance_fen"]), r["boss_ref"])

    async def credit(self, phone: str, fen: int, idempotency_key: str) -> CreditResult:
        r = await self._call("credit", phone=phone, fen=_fen(fen), key=idempotency_key)
        return CreditResult(idempotency_key, phone, fen, True, _fen(r["balance_fen"]), r["boss_ref"])

    async def credit_status(self, idempotency_key: str) -> OpStatus:
        """For recovery: was the write with this key applied? (Any keyed op, not only credit.)"""
        r = await self._call("op_status", key=idempotency_key)
        return OpStatus(idempotency_key, bool(r["found"]), r.get("op", ""), r.get("result") or {})

    async def verify_service_password(self, phone: str, password: str) -> bool:
        return bool((await self._call("verify_password", phone=phone, password=password))["valid"])

    async def send_sms_code(self, phone: str) -> None:
        await self._call("send_sms_code", phone=phone)

    async def verify_sms_code(self, phone: str, code: str) -> bool:
        return bool((await self._call("verify_sms_code", phone=phone, code=code))["valid"])

    async def suspend_number(self, phone: str, idempotency_key: str) -> OpResult:
        r = await self._call("suspend_number", phone=phone, key=idempotency_key)
        return OpResult(idempotency_key, True, r["boss_ref"], r)

    # -- identity (issue 11): ID numbers and names travel to the BOSS, which holds them by law;
    # they are never journalled on the kiosk (only the sealed record is) --------------------------
    async def list_numbers(self, suffix: str = "", limit: int = 10) -> list[str]:
        return list((await self._call("list_numbers", suffix=suffix, limit=limit))["numbers"])

    async def reserve_number(self, phone: str, holder: str, idempotency_key: str) -> OpResult:
        """Hold ``phone`` for this customer (``holder``: the transaction id) while they decide."""
        r = await self._call("reserve_number", phone=phone, holder=holder, key=idempotency_key)
        return OpResult(idempotency_key, True, r["boss_ref"], r)

    async def release_number(self, phone: str, holder: str, idempotency_key: str) -> OpResult:
        r = await self._call("release_number", phone=phone, holder=holder, key=idempotency_key)
        return OpResult(idempotency_key, bool(r["released"]), r["boss_ref"], r)

    async def sim_card_data(self, phone: str, iccid: str) -> dict[str, Any]:
        """IMSI, Ki, OPc, SPN and the card's ADM key for writing ``iccid`` as ``phone``'s SIM."""
        return await self._call("sim_card_data", phone=phone, iccid=iccid)

    async def open_number(self, phone: str, holder: str, iccid: str, id_number: str, name: str, plan: str,
                          idempotency_key: str) -> OpResult:
        r = await self._call("open_number", phone=phone, holder=holder, iccid=iccid, id_number=id_number,
                             name=name, plan=plan, key=idempotency_key)
        return OpResult(idempotency_key, True, r["boss_ref"], r)

    async def owner_check(self, phone: str, id_number: str) -> bool:
        return bool((await self._call("owner_check", phone=phone, id_number=id_number))["match"])

    async def replace_sim(self, phone: str, iccid: str, id_number: str, idempotency_key: str) -> OpResult:
        r = await self._call("replace_sim", phone=phone, iccid=iccid, id_number=id_number, key=idempotency_key)
        return OpResult(idempotency_key, True, r["boss_ref"], r)

    async def register_real_name(self, phone: str, id_number: str, name: str, idempotency_key: str) -> OpResult:
        r = await self._call("register_real_name", phone=phone, id_number=id_number, name=name, key=idempotency_key)
        return OpResult(idempotency_key, True, r["boss_ref"], r)

    async def statement(self, phone: str, month: str) -> Statement:
        r = await self._call("statement", phone=phone, month=month)
        return Statement(phone, month, [(i, _fen(f)) for i, f in r["lines"]], _fen(r["total_fen"]))

    async def invoice(self, phone: str, month: str) -> Invoice:
        r = await self._call("invoice", phone=phone, month=month)
        return Invoice(phone, month, r["number"], r["title"], _fen(r["amount_fen"]))


class HttpTransport:
    """POST ``{base}/boss/v1/{op}`` (``op`` from OPS only) with a JSON body; reply ``{"ok": true, "result": {...}}`` or
    ``{"ok": false, "code": ..., "message": ...}``. aiohttp is imported on first use (start-up cost)."""

    def __init__(self, base_url: str, allowed: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.allowed = allowed or check_request  # raises BossRefused for what may not leave
        self._session: Any = None

    async def call(self, op: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        import aiohttp

        self.allowed(op, params)  # nothing outside the allow-list leaves, whoever asks
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(timeout):
                url = f"{self.base_url}/boss/v1/{urllib.parse.quote(op, safe='')}"
                async with self._session.post(url, json=params) as resp:
                    body = await resp.json(content_type=None)
        except TimeoutError:
            raise BossTimeout("timeout", f"{op}: no answer in {timeout:g} s") from None
        except aiohttp.ClientConnectionError as exc:
            raise BossUnavailable("unreachable", f"{op}: {exc}") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise BossError("bad_reply", f"{op}: {exc}") from None
        if not isinstance(body, dict) or "ok" not in body:
            raise BossError("bad_reply", f"{op}: {body!r:.200}")
        if not body["ok"]:
            code = str(body.get("code", "refused"))
            if code == "timeout":  # the BOSS's own back end timed out: as unknown as ours
                raise BossTimeout(code, str(body.get("message", "")))
            raise BossRefused(code, str(body.get("message", "")))
        return body.get("result") or {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def http_boss(base_url: str, timeout: float = 5.0) -> Boss:
    return Boss(HttpTransport(base_url), timeout)

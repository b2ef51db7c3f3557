"""Who is asking: phone number plus the service password, or an SMS code the BOSS sends (no-cash flows)."""
from __future__ import annotations

from ..boss import BossError
from ..customer import CustomerCancelled
from ..flow import Run
from .common import ask_phone, boss_problem_key


class NotVerified(Exception):
    """Wrong password/code too often, or the BOSS could not check it; ``key`` is the message."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(detail or key)
        self.key = key


async def verify(r: Run, phone: str, method: str = "password", attempts: int = 3) -> None:
    """Raises NotVerified or CustomerCancelled; returns when the customer proved who they are."""
    boss = r.services.boss
    try:
        if method == "sms":
            await boss.send_sms_code(phone)
            r.say("sms_code_sent")
        for _ in range(attempts):
            if method == "sms":
                ok = await boss.verify_sms_code(phone, await r.customer.enter("enter_sms_code", "sms_code"))
            else:
                ok = await boss.verify_service_password(phone, await r.customer.enter("enter_password", "password"))
            if ok:
                return
            r.say("password_wrong" if method == "password" else "sms_code_wrong")
    except BossError as exc:
        raise NotVerified(boss_problem_key(exc), str(exc)) from None
    raise NotVerified("too_many_attempts")


async def phone_and_password(r: Run) -> str:
    """Ask phone then password; the caller's table has start -phone-> verifying."""
    phone = await ask_phone(r)
    await r.go("phone", phone=phone)
    await verify(r, phone, "password")
    return phone


__all__ = ["NotVerified", "verify", "phone_and_password", "CustomerCancelled"]

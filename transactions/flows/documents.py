"""账单/发票打印 / Statement and invoice printing: verified customer, a month, a printout. No cash.

Printing is the service itself here: a print that fails finishes the transaction as ``failed``.
"""
from __future__ import annotations

from hal.peripherals import Receipt

from ..boss import BossError
from ..customer import CustomerCancelled
from ..effects import print_receipt
from ..flow import FlowSpec, Run, Services, State, T
from ..messages import both, money
from .common import FINALS, boss_problem_key, mask_phone, selfs
from .identify import NotVerified, phone_and_password


def _spec(name: str, zh: str, en: str) -> FlowSpec:
    return FlowSpec(
        name=name, title_zh=zh, title_en=en, needs_boss=True, takes_cash=False,
        states=(
            State("start", "asking for the phone number"),
            State("verifying", "service password checked by the BOSS"),
            State("choosing", "the customer picks the month"),
            State("printing", "document fetched; print intent", recover="delivered"),
            *FINALS,
        ),
        transitions=(
            T("start", "phone", "verifying"),
            T("start", "cancel", "cancelled"),
            T("verifying", "ok", "choosing"),
            T("verifying", "decline", "declined"),
            T("verifying", "cancel", "cancelled"),
            T("choosing", "month", "printing"),
            T("choosing", "cancel", "cancelled"),
            T("choosing", "decline", "declined"),
            *selfs("printing", "print"),
            T("printing", "finish", "done"),
            T("printing", "fail", "failed"),
        ),
    )


STATEMENT = _spec("statement", "账单打印", "Statement printing")
INVOICE = _spec("invoice", "发票打印", "Invoice printing")


def months(now: float, count: int = 3) -> list[str]:
    """The last ``count`` full months before now, newest first (YYYY-MM)."""
    import time
    t = time.localtime(now)
    y, m = t.tm_year, t.tm_mon
    out = []
    for _ in range(count):
        m -= 1
        if m == 0:
            y, m = y - 1, 12
        out.append(f"{y:04d}-{m:02d}")
    return out


async def ready(services: Services) -> bool:
    """For the menu: the printer answers and can print (paper in, cover shut), so no customer gives
    their number and password for a statement the kiosk cannot print."""
    printer = services.hw.printer
    if printer is None:
        return False
    try:
        return (await printer.status()).can_print
    except Exception:  # noqa: BLE001 - a printer that cannot say is one that cannot print
        return False


async def _run(r: Run, kind: str) -> str:
    boss = r.services.boss
    r.say(f"welcome_{kind}")
    if r.services.hw.printer is None:
        r.say("no_printer")
        return await r.finish("cancel", "no printer")
    try:
        phone = await phone_and_password(r)
    except CustomerCancelled:
        return await r.finish("cancel")
    except NotVerified as exc:
        r.say(exc.key)
        return await r.finish("decline", str(exc))
    await r.go("ok")
    try:
        month = await r.customer.choose("choose_month", months(r.services.clock()))
    except CustomerCancelled:
        return await r.finish("cancel")
    try:
        if kind == "statement":
            doc = await boss.statement(phone, month)
            lines = [(item, money(fen)) for item, fen in doc.lines] + [(both("label_total"), money(doc.total_fen))]
        else:
            inv = await boss.invoice(phone, month)
            lines = [(both("label_invoice_no"), inv.number), (both("label_invoice_title"), inv.title),
                     (both("label_amount"), money(inv.amount_fen))]
    except BossError as exc:
        r.say(boss_problem_key(exc) if exc.code not in ("no_bill", "nothing_paid") else "no_document")
        return await r.finish("decline", str(exc))
    await r.go("month", data={"month": month})
    receipt = Receipt(title=both(f"receipt_{kind}_title"),
                      lines=[(both("label_phone"), mask_phone(phone)), (both("label_month"), month), *lines],
                      footer=both("receipt_footer", hotline=r.config.hotline))
    if not await print_receipt(r, receipt):
        r.say("print_failed")
        return await r.finish("fail", "printer")
    r.say("document_printed")
    return await r.finish("finish")


async def run_statement(r: Run) -> str:
    return await _run(r, "statement")


async def run_invoice(r: Run) -> str:
    return await _run(r, "invoice")

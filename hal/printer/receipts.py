"""Receipt templates: what the customer, the collector and the stock-keeper take away.

Chinese first, English alongside where it fits a 58 mm line. Amounts are integer fen and are
formatted with integer arithmetic only (no float ever touches money). Every template returns a
hal.peripherals.Receipt; hal.printer.layout turns it into printer lines.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from hal.peripherals import Receipt

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
THANKS = "谢谢惠顾 Thank you"
KEEP = "请妥善保管本凭条\nPlease keep this receipt"


def yuan(fen: int) -> str:
    """12345 -> "¥123.45"; -50 -> "-¥0.50". Integer division only."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"amounts are integer fen, got {fen!r}")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole}.{cents:02d}"


def face(fen: int) -> str:
    """A denomination or face value: 10000 -> "¥100", 50 -> "¥0.50"."""
    return yuan(fen)[:-3] if fen % 100 == 0 else yuan(fen)


def mask_phone(number: str) -> str:
    """"13812345678" -> "138****5678"; short or odd input keeps only its last 4 digits."""
    digits = "".join(c for c in number if c.isdigit())
    if len(digits) == 11:
        return f"{digits[:3]}****{digits[7:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "****"


def _head(kiosk_id: str, seq: int | None, when: datetime) -> list[tuple[str, str]]:
    rows = [("终端 Kiosk", kiosk_id)]
    if seq is not None:
        rows.append(("流水号 Seq", str(seq)))
    rows.append(("时间 Time", when.strftime(TIME_FORMAT)))
    return rows


def transaction_receipt(
    *,
    kiosk_id: str,
    seq: int,
    txn_id: str,
    when: datetime,
    service: str,
    phone: str,
    amount_fen: int,
    paid_fen: int,
    change_fen: int,
    balance_after_fen: int | None = None,
) -> Receipt:
    """The customer's proof of a top-up / bill payment (交易凭条)."""
    rows = _head(kiosk_id, seq, when)
    rows += [
        ("交易号 Txn", txn_id),
        ("业务 Service", service),
        ("号码 Phone", mask_phone(phone)),
        ("金额 Amount", yuan(amount_fen)),
        ("实收 Paid", yuan(paid_fen)),
        ("找零 Change", yuan(change_fen)),
    ]
    if balance_after_fen is not None:
        rows.append(("余额 Balance", yuan(balance_after_fen)))
    return Receipt(title="交易凭条 Receipt", lines=rows, footer=f"{THANKS}\n{KEEP}")


def refund_voucher(
    *,
    kiosk_id: str,
    seq: int,
    txn_id: str,
    when: datetime,
    amount_fen: int,
    claim_code: str,
    reason: str = "",
    phone: str | None = None,
) -> Receipt:
    """Money the kiosk owes the customer (could not give change, service failed): claim it at the counter."""
    rows = _head(kiosk_id, seq, when)
    rows.append(("交易号 Txn", txn_id))
    if phone:
        rows.append(("号码 Phone", mask_phone(phone)))
    rows.append(("退款金额 Refund", yuan(amount_fen)))
    if reason:
        rows.append(("原因 Reason", reason))
    rows.append(("领取码 Claim code", claim_code))
    return Receipt(
        title="退款凭证 Refund voucher",
        lines=rows,
        qr=claim_code,
        footer="请持本凭证到营业厅柜台领取退款\nShow this voucher at the counter\n" + KEEP.splitlines()[0],
    )


def collection_slip(
    *,
    kiosk_id: str,
    when: datetime,
    bills: Mapping[int, int],
    coins: Mapping[int, int] | None = None,
    collector: str = "",
    batch: str = "",
) -> Receipt:
    """Cash-box collection (清机/收款): count and total per denomination, then the grand total."""
    rows = _head(kiosk_id, None, when)
    if batch:
        rows.append(("批次 Batch", batch))
    if collector:
        rows.append(("收款员 Collector", collector))
    total = 0
    for heading, counts in (("【纸币 Notes】", bills), ("【硬币 Coins】", coins or {})):
        if not counts:
            continue
        rows.append((heading, ""))
        section = 0
        for denomination in sorted(counts, reverse=True):
            count = counts[denomination]
            section += denomination * count
            rows.append((f"{face(denomination)} x {count}", yuan(denomination * count)))
        rows.append(("小计 Subtotal", yuan(section)))
        total += section
    rows.append(("合计 Total", yuan(total)))
    return Receipt(title="收款单 Collection", lines=rows, footer="签字 Signature:\n\n____________")


def card_stock_slip(
    *,
    kiosk_id: str,
    when: datetime,
    stock: Mapping[int, int],
    loaded: Mapping[int, int] | None = None,
    operator: str = "",
) -> Receipt:
    """Recharge-card stock per face value (卡库存), optionally with what was just loaded."""
    rows = _head(kiosk_id, None, when)
    if operator:
        rows.append(("操作员 Operator", operator))
    cards = value = 0
    for face_value in sorted(set(stock) | set(loaded or {}), reverse=True):
        count = stock.get(face_value, 0)
        added = (loaded or {}).get(face_value)
        label = f"{face(face_value)}卡 x {count}" + (f" (+{added})" if added else "")
        rows.append((label, yuan(face_value * count)))
        cards += count
        value += face_value * count
    rows.append(("张数 Cards", str(cards)))
    rows.append(("面值合计 Value", yuan(value)))
    return Receipt(title="卡库存单 Card stock", lines=rows, footer="签字 Signature:\n\n____________")

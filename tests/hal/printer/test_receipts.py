"""Receipt templates and layout: integer fen, masked numbers, lines that fit a 58 mm head."""
import re
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from hal.printer import receipts
from hal.printer.layout import Line, Qr, columns, layout, row, wrap

WHEN = datetime(2024, 5, 1, 14, 3, 9)


def txn(**over):
    args = dict(
        kiosk_id="KS-0101-07", seq=1042, txn_id="T20240501-000123", when=WHEN, service="话费充值 Top-up",
        phone="13812345678", amount_fen=10000, paid_fen=10500, change_fen=500, balance_after_fen=12345,
    ) | over
    return receipts.transaction_receipt(**args)


@pytest.mark.parametrize(
    "fen, text", [(12345, "¥123.45"), (0, "¥0.00"), (5, "¥0.05"), (100, "¥1.00"), (-50, "-¥0.50"), (10**12 + 1, "¥10000000000.01")]
)
def test_amounts_are_yuan_from_integer_fen(fen, text):
    assert receipts.yuan(fen) == text


@pytest.mark.parametrize("not_fen", [1.5, 100.0, True, "100"])
def test_amounts_refuse_anything_but_int_fen(not_fen):
    with pytest.raises(TypeError):
        receipts.yuan(not_fen)


def test_phone_numbers_are_masked():
    assert receipts.mask_phone("13812345678") == "138****5678"
    assert receipts.mask_phone("+86 138-1234-5678") == "*********5678"  # 13 digits: only the last 4 stay
    assert receipts.mask_phone("123") == "****"


def test_transaction_receipt_has_every_field():
    r = txn()
    rows = dict(r.lines)
    assert rows["号码 Phone"] == "138****5678"
    assert (rows["金额 Amount"], rows["实收 Paid"], rows["找零 Change"], rows["余额 Balance"]) == (
        "¥100.00", "¥105.00", "¥5.00", "¥123.45")
    assert rows["流水号 Seq"] == "1042" and rows["交易号 Txn"] == "T20240501-000123"
    assert rows["时间 Time"] == "2024-05-01 14:03:09" and rows["终端 Kiosk"] == "KS-0101-07"
    assert "13812345678" not in str(r)


def test_refund_voucher_carries_its_claim_code_as_qr():
    v = receipts.refund_voucher(kiosk_id="K1", seq=7, txn_id="T7", when=WHEN, amount_fen=550, claim_code="RF7K2Q9M")
    assert v.qr == "RF7K2Q9M" and dict(v.lines)["退款金额 Refund"] == "¥5.50"


def test_collection_slip_totals_per_denomination():
    slip = receipts.collection_slip(kiosk_id="K1", when=WHEN, bills={10000: 3, 500: 4}, coins={100: 20, 50: 9})
    rows = slip.lines
    assert ("¥100 x 3", "¥300.00") in rows and ("¥0.50 x 9", "¥4.50") in rows
    subtotals = [v for label, v in rows if label == "小计 Subtotal"]
    assert subtotals == ["¥320.00", "¥24.50"] and dict(rows)["合计 Total"] == "¥344.50"


def test_card_stock_slip_per_face_value():
    slip = receipts.card_stock_slip(kiosk_id="K1", when=WHEN, stock={5000: 30, 10000: 12}, loaded={5000: 20})
    assert ("¥50卡 x 30 (+20)", "¥1500.00") in slip.lines
    assert dict(slip.lines)["张数 Cards"] == "42" and dict(slip.lines)["面值合计 Value"] == "¥2700.00"


ALL = [
    txn(),
    receipts.refund_voucher(kiosk_id="K1", seq=7, txn_id="T7", when=WHEN, amount_fen=550, claim_code="RF7K2Q9M",
                            reason="找零不足 No change", phone="13812345678"),
    receipts.collection_slip(kiosk_id="K1", when=WHEN, bills={10000: 3}, coins={100: 2}, collector="张三", batch="C1"),
    receipts.card_stock_slip(kiosk_id="K1", when=WHEN, stock={5000: 30}),
]


@pytest.mark.parametrize("width", [32, 48])
@pytest.mark.parametrize("receipt", ALL, ids=["txn", "refund", "collection", "stock"])
def test_every_template_fits_the_head_and_prints_on_gbk_only_printers(receipt, width):
    blocks = layout(receipt, width)
    for block in blocks:
        if isinstance(block, Line):
            assert columns(block.text) <= width, block.text
            block.text.encode("gbk")  # no 4-byte GB18030 sequence: "¥" went out as "￥"
    assert any(isinstance(b, Qr) for b in blocks) == bool(receipt.qr)


def test_a_row_too_long_puts_its_value_right_aligned_below():
    lines = row("原因 Reason", "找零不足，请到柜台领取退款", 32)
    assert lines[0] == "原因 Reason" and all(columns(x) == 32 for x in lines[1:])


@given(st.text(alphabet=st.sampled_from("a中 ¥1-，。"), max_size=80), st.integers(4, 48))
@settings(max_examples=300)
def test_wrap_never_exceeds_the_width_loses_nothing_and_splits_no_word_that_fits(s, width):
    pieces = wrap(s, width)
    assert all(columns(p) <= width for p in pieces)
    assert "".join(pieces).replace(" ", "") == s.replace(" ", "")  # only the spaces at a break go
    i = 0
    for k, piece in enumerate(pieces):  # find each line in s; what lies between lines is only spaces
        start = i
        while s[i:i + len(piece)] != piece:
            i += 1
        assert s[start:i].strip() == "", (s, pieces)
        word = re.compile(r"[!-~]+")
        if k and start == i and 0 < i < len(s) and word.match(s[i - 1]) and word.match(s[i]):
            run = next(m.group() for m in word.finditer(s) if m.start() < i < m.end())
            assert len(run) > width, (s, pieces)  # a cut inside a word: only when the word is wider than a line
        if k and start == i and piece[:1] in ("，", "。"):  # a comma or full stop starts a line only after a hard cut
            assert columns(pieces[k - 1]) > width - 2, (s, pieces)
        i += len(piece)


@pytest.mark.parametrize("text, width, lines", [
    ("充值凭条 Top-up receipt", 16, ["充值凭条 Top-up", "receipt"]),
    ("请您妥善保管凭条。服务热线 10086 / Please keep this receipt. Hotline 10086", 32,
     ["请您妥善保管凭条。服务热线 10086", "/ Please keep this receipt.", "Hotline 10086"]),
    ("凭退款码到人工柜台领取退款。服务热线 10086", 16, ["凭退款码到人工柜", "台领取退款。服务", "热线 10086"]),
    ("Collect your refund at the service counter with this code.", 32,
     ["Collect your refund at the", "service counter with this code."]),
    ("T20240501000123456789012345678901234", 32, ["T2024050100012345678901234567890", "1234"]),
])
def test_english_wraps_between_words_and_chinese_between_characters(text, width, lines):
    assert wrap(text, width) == lines

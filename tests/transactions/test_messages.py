"""Every message a flow can show exists in Chinese and English, and formats with the fields given."""
import re
import string
from pathlib import Path

import pytest

from transactions import messages
from transactions.flows import FLOWS
from transactions.messages import both, catalogue, text, yuan

SRC = Path(messages.__file__).parent
CALL = re.compile(r"""\b(?:say|show|choose|enter|both|text|send_sms|NotVerified)\((?:r, phone, )?["']([a-z_]+)["']""")
RETURNED_KEY = re.compile(r"""return ["']([a-z_]+)["']""")


def keys_used_in_code() -> set[str]:
    keys = set()
    for path in SRC.rglob("*.py"):
        code = path.read_text(encoding="utf-8")
        keys |= set(CALL.findall(code))
        if "def boss_problem_key" in code:
            keys |= set(RETURNED_KEY.findall(code.split("def boss_problem_key")[1].split("\ndef ")[0]))
    for kind in ("statement", "invoice"):  # built as f"welcome_{kind}" / f"receipt_{kind}_title"
        keys |= {f"welcome_{kind}", f"receipt_{kind}_title"}
    keys |= {f"service_{name}" for name in FLOWS}  # the menu
    keys |= {f"option_{o}" for o in ("print", "done", "pay", "confirm", "sms", "password", "cancel")}
    return keys


def test_the_scan_finds_the_keys_flows_use():
    used = keys_used_in_code()
    assert {"insert_cash", "voucher_issued", "boss_offline", "number_unknown", "sms_topup",
            "too_many_attempts", "receipt_statement_title"} <= used


@pytest.mark.parametrize("key", sorted(keys_used_in_code()))
def test_every_key_used_exists_in_chinese_and_english(key):
    entry = catalogue().get(key)
    assert entry is not None, f"messages.json lacks {key}"
    assert entry["zh"].strip() and entry["en"].strip()
    assert re.search(r"[\u4e00-\u9fa5]", entry["zh"]), f"{key}: zh text has no Chinese"
    fields_zh = {f for _, f, _, _ in string.Formatter().parse(entry["zh"]) if f}
    fields_en = {f for _, f, _, _ in string.Formatter().parse(entry["en"]) if f}
    assert fields_zh == fields_en, f"{key}: the two languages take different fields"


def test_the_service_tone_of_the_counter():
    assert text("welcome") == "您好,请问您办理什么业务?"
    assert text("please_wait").startswith("对不起,请您稍等")
    assert text("boss_offline").startswith("非常抱歉")


def test_amounts_are_shown_from_integer_fen_without_floats():
    assert yuan(5000) == "50.00" and yuan(5) == "0.05" and yuan(-120) == "-1.20"
    with pytest.raises(TypeError):
        yuan(50.0)
    assert both("insert_cash", due="50.00", paid="0.00").startswith("请您投入纸币或硬币,应付 50.00 元")


def test_money_is_printed_with_the_full_width_yuan_sign():
    from transactions.messages import money

    assert [money(5000), money(7), money(-50), money(0)] == ["￥50.00", "￥0.07", "-￥0.50", "￥0.00"]
    with pytest.raises(TypeError):
        money(1.5)

"""挂失 by ID card on the customer's screen in Chromium against a real ``kioskd --simulate``: the
customer taps through the page, the ID card goes onto the emulated reader through its control
socket, the camera is the simulator's test picture, and the BOSS is bosssim.

What the page shows of the card is only its masks; the kiosk's data directory and its log hold
no plaintext of it afterwards.
"""
from __future__ import annotations

import json
import urllib.request

import pytest

from hal.emulators.control import call_sync
from tests.identity.kiosk import plaintext_in, scan_files
from tests.ui.screens import ID_HOLDER as HOLDER
from tests.ui.test_page import WAIT_MS, on, tap, type_phone

pytestmark = pytest.mark.timeout(180)

OWNED = "13800138000"  # bosssim: 张伟, registered owner by ID 11010519491231002X


def place(kiosk, card: dict) -> None:
    """The customer lays the card on the reader (the card's ``name`` field would clash with emu()'s)."""
    call_sync(kiosk.emu_sock("idcard"), "place_card", **card)


def suspend_ops(bosssim) -> list:
    """bosssim's ledger over HTTP (Playwright's loop runs in this thread: no asyncio here)."""
    with urllib.request.urlopen(bosssim.url + "/control/ledger", timeout=5) as resp:
        return [op for op in json.loads(resp.read())["ops"] if op["op"] == "suspend_number"]


def test_a_loss_report_by_the_holders_id_card(kiosk, page, bosssim):
    before = len(suspend_ops(bosssim))
    tap(page, "挂失")
    type_phone(page, OWNED)
    on(page, "choose", prompt="choose_identify_method")
    tap(page, "身份证")
    on(page, "progress", key="place_id_card")
    assert "请将您的二代居民身份证放在读卡区" in page.inner_text("main")
    place(kiosk, HOLDER)
    confirm = on(page, "choose", prompt="confirm_suspend")
    text = confirm.inner_text()
    assert "确认为号码 138****8000 办理挂失停机吗?" in text
    assert HOLDER["id_number"] not in page.content() and HOLDER["name"] not in page.content()
    tap(page, "确认")
    result = on(page, "result", state="done")
    assert "挂失成功,号码 138****8000 已停机" in result.inner_text()
    txn = kiosk.api("screen")["last"]["txn"]
    ops = suspend_ops(bosssim)
    assert len(ops) == before + 1 and ops[-1]["key"] == f"{txn}:suspend"
    receipt = kiosk.wait("the receipt printed", lambda: [r for r in kiosk.emu("escpos", "receipts") if txn in r])[-1]
    assert "挂失凭条" in receipt and "110105********002X" in receipt and "张*" in receipt
    assert scan_files(kiosk.tmp / "state", HOLDER) == {}
    assert plaintext_in(kiosk.log().encode(), HOLDER) == []
    tap(page, "返回首页")
    on(page, "home")


def test_a_card_that_is_not_the_owners_is_refused_on_the_page(kiosk, page, bosssim):
    before = len(suspend_ops(bosssim))
    tap(page, "挂失")
    type_phone(page, OWNED)
    on(page, "choose", prompt="choose_identify_method")
    tap(page, "身份证")
    on(page, "progress", key="place_id_card")
    place(kiosk, dict(HOLDER, id_number="110101199003074477"))  # 李娜's, not 张伟's
    result = on(page, "result", state="declined")
    assert "该身份证与号码登记的机主不符" in result.inner_text()
    assert len(suspend_ops(bosssim)) == before

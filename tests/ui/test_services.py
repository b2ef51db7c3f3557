"""The no-cash services by touch in Chromium against a real ``kioskd --simulate`` and bosssim:
balance and plan (余额及套餐查询), statement (详单), invoice (发票), plan change (套餐变更). What is
asserted is what the customer reads on the page and what physically happened (the printer
emulator's receipts, bosssim's books). One kioskd serves the module: the services follow each other
as customers do."""
from __future__ import annotations

import json
import sqlite3

import pytest

from tests.ui.kiosk import SimKiosk
from tests.ui.test_page import WAIT_MS, on, tap

pytestmark = pytest.mark.timeout(180)
PHONE, PASSWORD = "13800138000", "123456"  # bosssim's 张伟: plan 4G-58, balance 12.50


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory, broker, bosssim):
    k = SimKiosk(tmp_path_factory.mktemp("kiosk"), broker.port, bosssim.url)
    k.start()
    yield k
    assert k.stop() == 0, k.log()[-3000:]


@pytest.fixture
def page(browser, kiosk):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    p.goto(kiosk.url)
    shown = p.wait_for_selector('main[data-screen="home"], main[data-screen="result"]')
    if shown.get_attribute("data-screen") == "result":  # the last customer's result: a new one starts afresh
        tap(p, "返回首页")
    on(p, "home")
    yield p
    context.close()


def type_digits(page, digits, kind):
    on(page, "keypad", kind=kind)
    for digit in digits:
        tap(page, digit)


def phone_and_password(page):
    type_digits(page, PHONE, "phone")
    tap(page, "下一步")
    tap(page, "确认")
    type_digits(page, PASSWORD, "password")
    assert page.inner_text(".entry") == "●" * len(PASSWORD)  # the password is never shown
    tap(page, "确认")


def receipts_after(kiosk, count):
    return kiosk.wait("a receipt printed", lambda: (r := kiosk.emu("escpos", "receipts")) and len(r) > count and r)


def test_balance_and_plan_by_touch_prints_on_request(kiosk, page):
    printed = len(kiosk.emu("escpos", "receipts"))
    tap(page, "余额及套餐查询")
    phone_and_password(page)
    choose = on(page, "choose", prompt="print_or_done")
    text = choose.inner_text()
    assert "号码 138****8000:余额 12.50 元,欠费 0.00 元,当前套餐 4G畅享58元套餐。" in text
    tap(page, "English")
    assert "plan 4G Plus 58." in page.inner_text("main")  # the plan's English name, not its code
    tap(page, "中文")
    tap(page, "打印凭条")
    result = on(page, "result", state="done")
    assert "谢谢" in result.inner_text()
    receipt = receipts_after(kiosk, printed)[-1]
    assert "余额" in receipt and "12.50" in receipt and "4G畅享58元套餐" in receipt


def _paid_bill(bosssim, phone: str, month: str, fen: int) -> None:
    """The operator's billing run left a paid bill for the month the screen offers first."""
    conn = sqlite3.connect(bosssim.db, timeout=10)
    try:
        conn.execute("INSERT OR REPLACE INTO bills VALUES (?, ?, ?, ?, ?)",
                     (phone, month, fen, fen, json.dumps([["套餐月费 Plan fee", fen]], ensure_ascii=False)))
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("tile, printed_words", [("账单打印", "话费账单"), ("发票打印", "电子发票信息")])
def test_a_statement_and_an_invoice_for_a_month_chosen_by_touch(kiosk, page, bosssim, tile, printed_words):
    printed = len(kiosk.emu("escpos", "receipts"))
    tap(page, tile)
    phone_and_password(page)
    months = on(page, "choose", prompt="choose_month").locator("button.option")
    first = months.first.get_attribute("data-value")
    year, month = first.split("-")
    assert months.first.inner_text() == f"{year}年{int(month)}月"
    _paid_bill(bosssim, PHONE, first, 5800)
    months.first.click()
    result = on(page, "result", state="done")
    assert "打印完成,请您取走凭条。" in result.inner_text()
    receipt = receipts_after(kiosk, printed)[-1]
    assert printed_words in receipt and first in receipt and "58.00" in receipt


def test_a_plan_change_by_touch_shows_plan_names_and_changes_the_plan_at_the_boss(kiosk, page, bosssim):
    printed = len(kiosk.emu("escpos", "receipts"))
    tap(page, "套餐变更")
    type_digits(page, "13912345678", "phone")  # 李娜, on 4G-88
    tap(page, "下一步")
    tap(page, "确认")
    choose = on(page, "choose", prompt="choose_plan")
    assert "您当前的套餐是 4G畅享88元套餐" in choose.inner_text()
    labels = [b.inner_text() for b in choose.locator("button.option").all()]
    assert labels == ["4G畅享38元套餐", "4G畅享58元套餐", "5G智享128元套餐"]  # names, never codes
    tap(page, "English")
    assert [b.inner_text() for b in page.locator("button.option").all()] == ["4G Basic 38", "4G Plus 58",
                                                                             "5G Smart 128"]
    tap(page, "中文")
    tap(page, "5G智享128元套餐")
    on(page, "choose", prompt="choose_confirm_method")
    tap(page, "服务密码")
    type_digits(page, "654321", "password")
    tap(page, "确认")
    result = on(page, "result", state="done")
    assert "套餐变更成功!新套餐 5G智享128元套餐(月费 128.00 元)下月生效。" in result.inner_text()
    bosssim_plan = _boss_plan(bosssim, "13912345678")
    assert bosssim_plan == "5G-128"
    receipt = receipts_after(kiosk, printed)[-1]
    assert "5G智享128元套餐 / 5G Smart 128" in receipt


def _boss_plan(bosssim, phone: str) -> str:
    conn = sqlite3.connect(bosssim.db, timeout=10)
    try:
        return conn.execute("SELECT plan FROM accounts WHERE phone = ?", (phone,)).fetchone()[0]
    finally:
        conn.close()


def test_a_bill_paid_by_touch_with_a_note(kiosk, page, bosssim):
    from tests.ui.test_page import accept_note, cash_enabled, paid_shows

    phone = "18612345678"  # 陈静: nothing due until this month's bill
    conn = sqlite3.connect(bosssim.db, timeout=10)
    try:
        conn.execute("INSERT OR REPLACE INTO bills VALUES (?, '2026-11', 2000, 0, ?)",
                     (phone, json.dumps([["套餐月费 Plan fee", 2000]], ensure_ascii=False)))
        conn.commit()
    finally:
        conn.close()
    printed = len(kiosk.emu("escpos", "receipts"))
    tap(page, "话费缴纳")
    type_digits(page, phone, "phone")
    tap(page, "下一步")
    tap(page, "确认")
    confirm = on(page, "choose", prompt="confirm_bill")
    assert "号码 186****5678 应缴话费 20.00 元,请您确认缴费。" in confirm.inner_text()
    tap(page, "确认缴费")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    kiosk.emu("cctalk", "insert_bill", value=2000)
    accept_note(page, "20.00")
    result = on(page, "result", state="done")
    assert "缴费成功!已为 186****5678 缴纳 20.00 元。" in result.inner_text()
    conn = sqlite3.connect(bosssim.db, timeout=10)
    try:
        assert conn.execute("SELECT paid_fen FROM bills WHERE phone = ? AND month = '2026-11'", (phone,)).fetchone()[0] == 2000
    finally:
        conn.close()
    assert "缴费" in receipts_after(kiosk, printed)[-1]

"""The customer's screen in Chromium against a real ``kioskd --simulate``: every touch is a click on
the page, every coin, note, jam and card pull goes through the emulators' control sockets, and
what is asserted is on the page (what the customer reads) and in the emulators (what physically
happened: receipts printed, a card out, coins paid)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ui.kiosk import SimKiosk

pytestmark = pytest.mark.timeout(180)
WAIT_MS = 20000
STATIC = Path(__file__).parents[2] / "controller" / "ui" / "static"


def on(page, screen, **attrs):
    """Wait until the page shows ``screen`` (main[data-screen]), with these data- attributes."""
    sel = f'main[data-screen="{screen}"]' + "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())
    page.wait_for_selector(sel, timeout=WAIT_MS)
    return page.locator(sel)


def tap(page, text):
    page.get_by_role("button", name=text, exact=True).click()


def paid_shows(page, yuan, lang="zh"):
    page.wait_for_function("y => { const b = document.querySelector('[data-amount=paid]'); return b && b.textContent === y }",
                           arg=f"{yuan} 元" if lang == "zh" else f"{yuan} yuan", timeout=WAIT_MS)


def cash_enabled(kiosk):
    bus = kiosk.emu("cctalk", "state")
    return bus["bill"]["master_enabled"] and bus["bill"]["inhibit_mask"] and bus["coin"]["master_enabled"]


def accept_note(page, yuan):
    """收下这张纸币?: the screen asks about the note in escrow; the customer taps 收下 (accept)."""
    question = on(page, "decide", prompt="accept_note")
    assert f"收下这张纸币?{yuan} 元" in question.inner_text()
    tap(page, "收下")


def type_phone(page, phone):
    on(page, "keypad", kind="phone")
    for digit in phone:
        tap(page, digit)
    tap(page, "下一步")
    assert on(page, "readback").locator(".readback").inner_text() == f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    tap(page, "确认")


def test_a_cash_top_up_by_touch_with_coins_and_a_note(kiosk, page):
    tap(page, "空中充值")
    type_phone(page, "13800138000")
    on(page, "choose", prompt="choose_amount")
    assert "请您核对:号码 138****8000" in page.inner_text("main")  # the BOSS's holder check, read back
    tap(page, "10 元")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    assert page.inner_text("[data-amount=due]") == "10.00 元"
    total = 0
    for kind, fen in (("coin", 100), ("coin", 100), ("coin", 50), ("coin", 50), ("bill", 500), ("coin", 100),
                      ("coin", 100)):
        kiosk.emu("cctalk", f"insert_{kind}", value=fen)
        if kind == "bill":
            accept_note(page, "5.00")
        total += fen
        paid_shows(page, f"{total // 100}.{total % 100:02d}")
    result = on(page, "result", state="done")
    assert "充值成功!已为 138****8000 充值 10.00 元" in result.inner_text()
    receipts = kiosk.wait("the receipt printed", lambda: kiosk.emu("escpos", "receipts"))
    assert "充值凭条" in receipts[-1] and "10.00" in receipts[-1]
    txn = kiosk.api("screen")["last"]["txn"]
    assert txn in result.inner_text() and txn in receipts[-1]
    tap(page, "返回首页")
    on(page, "home")


def test_a_card_sale_the_dispenser_dispenses(kiosk, page):
    tap(page, "充值卡销售")
    on(page, "choose", prompt="choose_card")
    tap(page, "30 元充值卡")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    kiosk.emu("cctalk", "insert_bill", value=2000)
    accept_note(page, "20.00")
    paid_shows(page, "20.00")
    kiosk.emu("cctalk", "insert_bill", value=1000)
    accept_note(page, "10.00")
    on(page, "progress", key="take_card")
    assert "请您取走出卡口的充值卡" in page.inner_text("main")
    assert kiosk.emu("crt571", "state")["position"] == "gate"
    kiosk.emu("crt571", "take_card")
    on(page, "result", state="done")
    cards = kiosk.emu("crt571", "state")
    assert cards["dispensed"] == 1 and cards["taken"] == 1
    assert "充值卡销售凭条" in kiosk.wait("the receipt", lambda: kiosk.emu("escpos", "receipts"))[-1]


@pytest.fixture
def hasty_kiosk(tmp_path, broker, bosssim):
    """A kiosk whose customers walk away after 5 s without a touch or a coin; notes not accepted
    within 3 s go back."""
    k = SimKiosk(tmp_path, broker.port, bosssim.url, flows={"idle_timeout": 5.0, "note_question_s": 3.0})
    k.start()
    yield k
    assert k.stop() == 0, k.log()[-3000:]


def test_walking_away_with_money_in_shows_the_countdown_then_the_voucher(hasty_kiosk, browser):
    kiosk = hasty_kiosk
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(kiosk.url)
        on(page, "home")
        tap(page, "充值卡销售")
        on(page, "choose", prompt="choose_card")
        tap(page, "30 元充值卡")
        on(page, "cash")
        kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
        kiosk.emu("cctalk", "insert_coin", value=100)
        kiosk.emu("cctalk", "insert_coin", value=50)
        paid_shows(page, "1.50")
        countdown = page.wait_for_selector(".countdown")
        assert re.search(r"\d+ 秒内未投入钱款,业务将自动取消并退款", countdown.inner_text())
        result = on(page, "result", state="refunded")  # the customer is gone: 1 元 paid back, 0.50 on a voucher
        text = result.inner_text()
        assert "您长时间未操作,业务已取消" in text
        code = result.locator(".voucher").get_attribute("data-code")
        assert code and f"退款码 {code}:请您带好退款凭证,到人工柜台领取 0.50 元" in text
        receipts = kiosk.wait("the voucher printed", lambda: kiosk.emu("escpos", "receipts"))
        assert "退款凭证" in receipts[-1] and code in receipts[-1]
        assert kiosk.emu("cctalk", "state")["hopper_paid"] == 1
    finally:
        context.close()


def test_every_coin_restarts_the_cash_countdown_also_past_the_screens_last_twenty_messages(tmp_path, broker, bosssim,
                                                                                            browser):
    """The snapshot carries a visit's last 20 messages; each coin is one (paid_so_far). The page
    restarts its walk-away countdown on a new cash message, which it once told by its place in that
    list: from the 20th on the place stayed the same, and a customer still feeding coins saw the
    countdown. Here it may show only once the coins stop (idle_timeout 20 s: 5 s after the last)."""
    kiosk = SimKiosk(tmp_path, broker.port, bosssim.url, flows={"idle_timeout": 20.0})
    kiosk.start()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(kiosk.url)
        on(page, "home")
        tap(page, "充值卡销售")
        tap(page, "30 元充值卡")
        on(page, "cash")
        kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
        page.evaluate("""() => new MutationObserver(() => {  // the total on the page when the countdown first shows
          if (window.paidAtCountdown === undefined && document.querySelector('.countdown'))
            window.paidAtCountdown = document.querySelector('[data-amount=paid]').textContent;
        }).observe(document.getElementById('app'), {childList: true, subtree: true})""")
        coins = 60  # past the 20th message by 40 coins: 8 s or more at the 200 ms coin poll
        for i in range(1, coins + 1):
            kiosk.emu("cctalk", "insert_coin", value=10)
            paid_shows(page, f"{i // 10}.{i % 10}0")
        page.wait_for_selector(".countdown")
        assert page.evaluate("window.paidAtCountdown") == f"{coins // 10}.00 元"
        tap(page, "取消")
        on(page, "result")
    finally:
        context.close()
        assert kiosk.stop() == 0, kiosk.log()[-3000:]


def test_a_note_returned_by_touch_and_one_not_answered_in_time_both_go_back(hasty_kiosk, browser):
    kiosk = hasty_kiosk
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(kiosk.url)
        on(page, "home")
        tap(page, "充值卡销售")
        tap(page, "30 元充值卡")
        on(page, "cash")
        kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
        kiosk.emu("cctalk", "insert_bill", value=2000)
        question = on(page, "decide", prompt="accept_note")
        assert re.search(r"\d 秒后自动退回", question.inner_text())
        tap(page, "退回")
        on(page, "cash")
        assert "这张 20.00 元纸币已退回,请您取回。" in page.inner_text(".note.warn")
        kiosk.wait("the note given back", lambda: kiosk.emu("cctalk", "state")["bills_returned_fen"] == 2000)
        kiosk.emu("cctalk", "insert_bill", value=1000)
        on(page, "decide", prompt="accept_note")
        on(page, "cash")  # nobody answered: back to the bezel before the validator's own timeout
        assert "这张 10.00 元纸币已退回" in page.inner_text(".note.warn")
        cash = kiosk.wait("the note given back", lambda: (c := kiosk.emu("cctalk", "state"))["bills_returned_fen"] == 3000 and c)
        assert cash["bills_stacked_fen"] == 0 and page.inner_text("[data-amount=paid]") == "0.00 元"
        tap(page, "取消")
        on(page, "result", state="cancelled")
    finally:
        context.close()


def test_a_bill_jam_mid_flow_apologises_and_gives_a_voucher(kiosk, page):
    tap(page, "充值卡销售")
    tap(page, "30 元充值卡")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    kiosk.emu("cctalk", "insert_bill", value=2000)
    accept_note(page, "20.00")
    paid_shows(page, "20.00")
    kiosk.emu("cctalk", "insert_coin", value=50)
    paid_shows(page, "20.50")
    kiosk.emu("cctalk", "jam_bill", code=7)  # the note path jams: the validator is out of order
    result = on(page, "result", state="refunded")
    text = result.inner_text()
    assert "非常抱歉,收款设备故障,业务已取消,已投入的钱款将退还给您。" in text
    assert "请您取走退币口的 20.00 元硬币。" in text
    code = result.locator(".voucher").get_attribute("data-code")
    assert f"退款码 {code}" in text and "0.50 元" in text
    assert kiosk.emu("cctalk", "state")["hopper_paid"] == 20


def test_the_language_toggle_on_every_screen(kiosk, page):
    tap(page, "English")
    assert page.inner_text("h1") == "Hello, which service would you like today?"
    tap(page, "Top-up")
    on(page, "keypad", kind="phone")
    assert page.inner_text("h1") == "Please enter the mobile number."
    assert page.get_by_role("button", name="Cancel").is_visible()
    tap(page, "中文")
    assert page.inner_text("h1") == "请您输入手机号码。"
    tap(page, "大字")
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)")
    tap(page, "标准字")
    assert size > page.evaluate("parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)") * 1.2
    tap(page, "取消")
    on(page, "result", state="cancelled")
    tap(page, "返回首页")
    on(page, "home")


def test_the_home_screen_left_alone_becomes_the_attract_screen_with_the_halls_notices(kiosk, browser):
    """45 s untouched on the home screen (the page's own clock, run forward by Playwright's clock)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    try:
        p = context.new_page()
        p.set_default_timeout(WAIT_MS)
        p.clock.install()
        p.goto(kiosk.url)
        on(p, "home")
        p.clock.run_for(40_000)
        assert p.locator('main[data-screen="home"]').count() == 1  # not yet
        p.clock.run_for(6_000)
        attract = on(p, "attract")
        assert "您好,请触摸屏幕开始办理业务" in attract.inner_text()
        assert "今日营业至 18:00" in p.inner_text(".notices")  # [ui] notices in kiosk.toml
        p.locator("main.attract").tap()
        on(p, "home")
        tap(p, "空中充值")  # a customer on any other screen is never sent to the attract screen
        on(p, "keypad", kind="phone")
        p.clock.run_for(60_000)
        assert p.locator('main[data-screen="keypad"]').count() == 1
    finally:
        context.close()


def test_kioskd_killed_and_restarted_mid_screen(kiosk, page):
    page.evaluate("window.sameDocument = 42")
    tap(page, "空中充值")
    on(page, "keypad", kind="phone")
    tap(page, "1")
    kiosk.kill()
    wait = on(page, "wait")
    assert "请稍候" in wait.inner_text() and "Please wait" in wait.inner_text()
    kiosk.start()
    on(page, "home")  # resumed from the new kioskd's snapshot, without a reload
    assert page.evaluate("window.sameDocument") == 42
    assert "kioskd starting" in kiosk.log() and kiosk.starts == 2
    tap(page, "充值卡销售")  # and it serves again
    on(page, "choose", prompt="choose_card")


def test_every_word_on_the_page_comes_from_the_catalogue():
    from transactions.messages import catalogue

    words = catalogue()
    code = (STATIC / "app.js").read_text() + (STATIC / "index.html").read_text()
    assert not re.search(r"[\u4e00-\u9fa5]", code), "Chinese written into the page instead of messages.json"
    used = set(re.findall(r"""\bt\(\s*["']([a-z_]+)["']\s*[,)]""", code))
    used |= set(re.findall(r"""["']((?:ui|option)_[a-z_]*[a-z])["']""", code))  # keys chosen before t() is called
    used |= {f"service_{s}" for s in ("topup", "card_sale", "bill_pay", "balance_query", "statement", "invoice",
                                      "plan_change", "loss_report")}
    assert {"ui_please_wait", "ui_countdown", "ui_voucher", "option_cancel"} <= used
    for key in used:
        assert key in words and words[key]["zh"].strip() and words[key]["en"].strip(), key


def test_sighup_reloads_the_notices_and_text_size_and_a_new_listen_address_waits_for_a_restart(kiosk, page):
    import signal

    import tomlkit

    from hall.broker import free_port

    assert "今日营业至 18:00" in page.inner_text(".notices")
    assert not page.evaluate("document.documentElement.classList.contains('large')")
    doc = tomlkit.parse(kiosk.config.read_text())
    doc["ui"]["notices"] = ["明日 9:00 开门 / Open 9:00 tomorrow"]
    doc["ui"]["large_text"] = True
    doc["ui"]["listen"] = f"127.0.0.1:{free_port()}"
    kiosk.config.write_text(tomlkit.dumps(doc))
    kiosk.proc.send_signal(signal.SIGHUP)
    page.wait_for_function("() => document.querySelector('.notices') && "
                           "document.querySelector('.notices').textContent.includes('明日 9:00 开门')")
    page.wait_for_function("() => document.documentElement.classList.contains('large')")  # the same page, live
    assert "今日营业至" not in page.inner_text(".notices")
    kiosk.wait("the restart named", lambda: "ui.listen" in kiosk.log() and "next restart" in kiosk.log())
    assert page.evaluate("ui.connected") is True  # still served where it was until the restart


def test_first_boot_says_it_is_connecting_to_the_hall_and_takes_no_money(browser, tmp_path):
    """Enrolment retries while the hall cannot be reached: the page says so in both languages with
    the attempt and the time of the next one; no device is opened (no emulator socket exists)."""
    from hall.broker import free_port
    from provisioning.certs import mint_ca
    from tests.ui.kiosk import start_enrolling

    ca = mint_ca(tmp_path / "ca")
    proc, port = start_enrolling(tmp_path, f"https://localhost:{free_port()}/enrol", ca.cert_path)  # nobody listens
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    try:
        p = context.new_page()
        p.set_default_timeout(WAIT_MS)
        for _ in range(100):  # kioskd binds its screen first thing; the page is loaded once it is up
            try:
                p.goto(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                p.wait_for_timeout(200)
        on(p, "enrolling", state="retrying")
        main = p.locator("main")
        assert "正在连接营业厅" in main.inner_text() and "Connecting to the hall" in main.inner_text()
        assert "人工柜台" in main.inner_text() and "service counter" in main.inner_text()
        first = int(main.get_attribute("data-attempt"))
        p.wait_for_function("n => Number(document.querySelector('main').dataset.attempt) > n", arg=first, timeout=30000)
        assert re.search(r"第 \d+ 次连接未成功,\d\d:\d\d:\d\d 再试", main.inner_text())
        assert not list((tmp_path / "run").glob("emu-*.sock")), "a device was opened before enrolment"
    finally:
        context.close()
        proc.terminate()
        assert proc.wait(30) == 0, proc.log()[-2000:]

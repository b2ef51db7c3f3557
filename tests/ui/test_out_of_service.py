"""What the kiosk cannot offer now, on the customer's screen, against a real ``kioskd --simulate``.

The causes are the product's own: the hall's commands over MQTT (disable_service, inhibit_cash:
what halld's console sends), the BOSS unreachable (bosssim's ``down`` fault on every request), and
no card or no paper (the dispenser and printer emulators' own states).
A service refused is a greyed tile, 暂停办理 / Not available now, that starts nothing; with nothing
left to offer the whole screen says 暂停服务 (out of service); each comes back when its cause clears.
"""
from __future__ import annotations

import pytest

from tests.ui.test_page import WAIT_MS, on, tap
from transactions import SPECS

pytestmark = pytest.mark.timeout(180)
BOSS_MENU_S = 30  # the BOSS is asked again every 10 s while idle (controller/ui/server.py MENU_EVERY_S)
CASH = sorted(name for name, spec in SPECS.items() if spec.takes_cash)


@pytest.fixture
def page(page):
    page.wait_for_selector('.tile[data-value="topup"]:not(.off)')  # the flows' gates asked (BOSS reachable)
    return page


def tile(page, service):
    return page.locator(f'.tile[data-value="{service}"]')


def live(page):
    return set(page.eval_on_selector_all(".tile:not(.off)", "ts => ts.map(t => t.dataset.value)"))


def test_a_service_the_hall_disables_is_greyed_and_tapping_it_starts_nothing(kiosk, page):
    offered = live(page)
    assert "topup" in offered and "card_sale" in offered, offered
    reply = kiosk.hall_command("disable_service", service="topup")
    assert reply["ok"] and reply["result"]["disabled"] == ["topup"], reply

    page.wait_for_selector('.tile.off[data-value="topup"]', timeout=WAIT_MS)
    assert live(page) == offered - {"topup"}  # only that one
    assert tile(page, "topup").is_disabled()
    assert tile(page, "topup").inner_text().split() == ["空中充值", "暂停办理"]
    tap(page, "English")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert tile(page, "topup").inner_text().split("\n") == ["Top-up", "Not available now"]
    tap(page, "中文")

    before = kiosk.api("screen")
    tile(page, "topup").click(force=True)  # the customer taps the grey tile anyway
    # and a page that sent begin regardless (a stale menu) is refused by kioskd itself
    page.evaluate("send({type: 'begin', service: 'topup'})")
    toast = page.wait_for_selector(".toast", timeout=WAIT_MS)
    assert toast.inner_text() == "对不起,操作未能完成,请您重试。"
    assert page.locator("main").get_attribute("data-screen") == "home"
    after = kiosk.api("screen")
    assert not after["busy"] and after["visit"] == before["visit"], (before, after)  # no visit started
    assert "is not available now: disabled by the hall" in kiosk.log()

    assert kiosk.hall_command("enable_service", service="topup")["ok"]
    page.wait_for_selector('.tile[data-value="topup"]:not(.off)', timeout=WAIT_MS)
    assert live(page) == offered
    tap(page, "空中充值")  # back: the tile starts the flow again
    on(page, "keypad", kind="phone")
    tap(page, "取消")
    on(page, "result", state="cancelled")


def test_with_nothing_to_offer_the_screen_is_out_of_service_and_comes_back(kiosk, page):
    offered = live(page)
    assert {"topup", "card_sale", "balance_query"} <= offered, offered
    # the hall inhibits cash: the cash services grey out, the rest stay
    assert kiosk.hall_command("inhibit_cash", inhibit=True)["ok"]
    page.wait_for_function("cash => cash.every(s => !document.querySelector(`.tile[data-value=${s}]:not(.off)`))", arg=CASH,
                           timeout=WAIT_MS)
    assert live(page) == offered - set(CASH) and "balance_query" in live(page)
    on(page, "home")

    # and the BOSS goes unreachable: nothing is left, the whole screen is out of service
    kiosk.boss("fault", {"op": "*", "mode": "down", "times": 100000})
    page.wait_for_selector('main[data-screen="out_of_service"]', timeout=BOSS_MENU_S * 1000)
    assert page.inner_text("main h1") == "非常抱歉,本机暂停服务,请您到人工柜台办理。"
    assert page.inner_text("main h2.also") == "We are very sorry, this kiosk is out of service. Please go to the service counter."
    assert not page.locator(".tile").count()  # no tile to tap
    tap(page, "English")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert page.inner_text("main h1") == "We are very sorry, this kiosk is out of service. Please go to the service counter."
    assert page.inner_text("main h2.also") == "非常抱歉,本机暂停服务,请您到人工柜台办理。"
    tap(page, "中文")
    status = kiosk.api("status")
    assert status["cash_inhibited"] and status["state"] in ("ready", "degraded"), status  # kioskd itself is up

    # the BOSS answers again: its services come back, cash still inhibited
    kiosk.boss("clear")
    page.wait_for_selector('.tile[data-value="balance_query"]:not(.off)', timeout=BOSS_MENU_S * 1000)
    on(page, "home")
    assert live(page) == offered - set(CASH)
    # the hall releases cash: every tile is back, and a cash service starts
    assert kiosk.hall_command("inhibit_cash", inhibit=False)["ok"]
    page.wait_for_selector('.tile[data-value="card_sale"]:not(.off)', timeout=WAIT_MS)
    assert live(page) == offered
    tap(page, "充值卡销售")
    on(page, "choose", prompt="choose_card")
    tap(page, "取消")
    on(page, "result", state="cancelled")


def test_no_card_or_no_paper_greys_only_the_services_that_need_them_then_they_come_back(kiosk, page):
    """A customer never gives their number and password for a statement the kiosk cannot print, nor
    picks a card the dispenser does not hold: the tile is grey before they start."""
    offered = live(page)
    assert {"card_sale", "statement", "invoice", "topup"} <= offered, offered
    kiosk.emu("crt571", "set_stock", count=0)
    page.wait_for_selector('.tile.off[data-value="card_sale"]', timeout=BOSS_MENU_S * 1000)
    assert live(page) == offered - {"card_sale"}
    assert tile(page, "card_sale").inner_text().split() == ["充值卡销售", "暂停办理"]

    kiosk.emu("escpos", "paper_out")
    page.wait_for_selector('.tile.off[data-value="statement"]', timeout=BOSS_MENU_S * 1000)
    assert live(page) == offered - {"card_sale", "statement", "invoice"}  # top-up still prints or says it could not

    kiosk.emu("crt571", "set_stock", count=50)  # the technician loads cards and paper
    kiosk.emu("escpos", "paper_ok")
    page.wait_for_function("n => document.querySelectorAll('.tile:not(.off)').length === n", arg=len(offered),
                           timeout=BOSS_MENU_S * 1000)
    assert live(page) == offered
    tap(page, "充值卡销售")
    on(page, "choose", prompt="choose_card")
    tap(page, "取消")
    on(page, "result", state="cancelled")

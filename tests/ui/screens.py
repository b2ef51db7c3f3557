"""Walk a simulated kiosk's screen through its main screens and photograph each.

    python -m tests.ui.screens docs/ui            # the screenshots docs/ui.md shows (1280x800)
    python -m tests.ui.screens /tmp/ui --size 1920x1080

tests/ui/test_layout.py walks the same way and checks each screen fits: nothing overflows or
is clipped, every button is at least 15 mm on the 10.1" panel.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

# the holder bosssim registers for 13800138000 (tests/ui/test_loss_report_page.py)
ID_HOLDER = dict(name="张伟", gender="1", nation="01", birth="19491231", address="北京市西城区复兴门内大街一号",
                 id_number="11010519491231002X", authority="北京市公安局西城分局", valid_from="20200101",
                 valid_to="20400101")
PANEL_PX_PER_MM = 1509.6 / (10.1 * 25.4)  # 1280x800 over a 10.1" diagonal: 5.88 px/mm
MIN_TARGET_PX = 15 * PANEL_PX_PER_MM  # 88 px


def walk(kiosk, page, lang: str = "zh") -> Iterator[str]:
    """Drive the page through each main screen; yields its name once the page shows it."""
    from hal.emulators.control import call_sync
    from tests.ui.test_page import cash_enabled, on, paid_shows, tap

    def tap_any(zh: str, en: str) -> None:
        tap(page, zh if lang == "zh" else en)
        if zh == "返回首页" and lang == "en":  # home brings the next customer Chinese first
            tap(page, "English")

    def note(fen: int) -> None:
        """A note in: the screen asks 收下这张纸币? and the customer accepts."""
        kiosk.emu("cctalk", "insert_bill", value=fen)
        on(page, "decide", prompt="accept_note")
        tap_any("收下", "Accept")

    def digits(text: str) -> None:
        for d in text:
            tap(page, d)

    def phone(number: str) -> None:
        """The number on the keypad, then confirmed where the screen reads it back."""
        on(page, "keypad", kind="phone")
        digits(number)
        tap_any("下一步", "Next")
        tap_any("确认", "Confirm")

    if lang == "en":
        tap(page, "English")
    on(page, "home")
    page.wait_for_selector(".tile:not(.off)")  # the flows' gates asked (BOSS reachable, stock)
    yield "home"
    tap_any("空中充值", "Top-up")
    on(page, "keypad", kind="phone")
    for d in "13800138000":
        tap(page, d)
    yield "phone"
    tap_any("下一步", "Next")
    on(page, "readback")
    yield "readback"
    tap_any("确认", "Confirm")
    on(page, "choose", prompt="choose_amount")
    yield "amount"
    tap_any("50 元", "50 yuan")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    kiosk.emu("cctalk", "insert_bill", value=2000)
    on(page, "decide", prompt="accept_note")
    yield "note"
    tap_any("收下", "Accept")
    paid_shows(page, "20.00", lang)
    kiosk.emu("cctalk", "insert_coin", value=50)
    paid_shows(page, "20.50", lang)
    yield "cash"
    note(2000)
    paid_shows(page, "40.50", lang)
    note(1000)
    on(page, "result", state="done")
    yield "done"
    tap_any("返回首页", "Home")
    tap_any("充值卡销售", "Recharge cards")
    on(page, "choose", prompt="choose_card")
    yield "card"
    tap_any("30 元充值卡", "30 yuan card")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    note(2000)
    paid_shows(page, "20.00", lang)  # one note at a time: the validator holds one in escrow
    note(1000)
    on(page, "progress", key="take_card")
    yield "take_card"
    kiosk.emu("crt571", "take_card")
    on(page, "result", state="done")
    tap_any("返回首页", "Home")
    tap_any("充值卡销售", "Recharge cards")
    tap_any("30 元充值卡", "30 yuan card")
    on(page, "cash")
    kiosk.wait("the acceptors enabled", lambda: cash_enabled(kiosk))
    kiosk.emu("cctalk", "insert_coin", value=100)
    kiosk.emu("cctalk", "insert_coin", value=50)
    paid_shows(page, "1.50", lang)
    kiosk.emu("cctalk", "jam_bill", code=7)
    on(page, "result", state="refunded")
    yield "apology_voucher"
    tap_any("返回首页", "Home")
    tap_any("余额及套餐查询", "Balance and plan")
    phone("13800138000")
    on(page, "keypad", kind="password")
    digits("123456")
    yield "password"
    tap_any("确认", "Confirm")
    on(page, "choose", prompt="print_or_done")
    yield "balance"
    tap_any("完成", "Done")
    on(page, "result", state="done")
    tap_any("返回首页", "Home")
    tap_any("套餐变更", "Change plan")
    phone("13912345678")
    on(page, "choose", prompt="choose_plan")
    yield "plan"
    tap_any("取消", "Cancel")
    on(page, "result", state="cancelled")
    tap_any("返回首页", "Home")
    tap_any("挂失", "Report a lost SIM")  # by the holder's ID card: the identity screens
    phone("13800138000")
    on(page, "choose", prompt="choose_identify_method")
    yield "identify_method"
    tap_any("身份证", "ID card")
    on(page, "progress", key="place_id_card")
    yield "id_card"
    call_sync(kiosk.emu_sock("idcard"), "place_card", **ID_HOLDER)
    on(page, "choose", prompt="confirm_suspend")
    yield "loss_confirm"
    tap_any("取消", "Cancel")
    on(page, "result", state="cancelled")
    call_sync(kiosk.emu_sock("idcard"), "remove_card")
    tap_any("返回首页", "Home")
    on(page, "home")
    page.evaluate("ui.attract = true; render()")
    on(page, "attract")
    yield "attract"
    page.locator("main").click()
    on(page, "home")
    kiosk.hall_command("inhibit_cash", inhibit=True)  # the hall stops cash: those services grey out
    page.wait_for_selector('.tile.off[data-value="topup"]')
    yield "home_unavailable"
    kiosk.boss("fault", {"op": "*", "mode": "down", "times": 100000})  # and the BOSS is unreachable: nothing left
    page.wait_for_selector('main[data-screen="out_of_service"]', timeout=30000)  # the BOSS is asked every 10 s
    yield "out_of_service"
    kiosk.boss("clear")
    kiosk.hall_command("inhibit_cash", inhibit=False)
    page.wait_for_selector('.tile[data-value="topup"]:not(.off)', timeout=30000)
    kiosk.api("sim_gpio", pin=17, high=True)  # the panel door opens
    on(page, "maintenance")
    yield "maintenance"
    kiosk.api("sim_gpio", pin=17, high=False)
    on(page, "home")
    kiosk.kill()
    on(page, "wait")
    yield "please_wait"
    kiosk.start()
    on(page, "home")


def run(outdir: Path, width: int, height: int, lang: str, each: Callable | None = None) -> list[Path]:
    """Start bosssim, mosquitto and a simulated kioskd, walk the screens, save a PNG of each."""
    from playwright.sync_api import sync_playwright

    from hall.broker import start_broker
    from tests.e2e.conftest import BossSim
    from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.ui.kiosk import SimKiosk

    outdir.mkdir(parents=True, exist_ok=True)
    shots = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        broker = start_broker(tmp / "mqtt")
        boss = BossSim(tmp / "boss.db")
        starter = threading.Thread(target=lambda: asyncio.run(boss.start()))
        starter.start()
        starter.join()
        kiosk = SimKiosk(tmp, broker.port, boss.url, kiosk_id="SIM-0001",
                         notices=["本厅营业时间 9:00–18:00,节假日照常营业 / Open 9:00–18:00, holidays included",
                                  "5G 智享套餐办理请到 3 号柜台 / 5G plans: please see counter 3"]).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": width, "height": height}, has_touch=True).new_page()
                page.set_default_timeout(20000)
                page.goto(kiosk.url)
                for name in walk(kiosk, page, lang):
                    if each is not None:
                        each(name, page)
                    path = outdir / f"{name}{'' if lang == 'zh' else '-en'}.png"
                    page.screenshot(path=str(path))
                    shots.append(path)
                browser.close()
        finally:
            kiosk.stop()
            boss.stop()
            broker.stop()
    return shots


def enrolling(outdir: Path, width: int, height: int) -> Path:
    """First boot while the hall cannot be reached: kioskd --identity with a card naming a dead port."""
    from playwright.sync_api import sync_playwright

    from hall.broker import free_port
    from provisioning.certs import mint_ca
    from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.ui.kiosk import start_enrolling

    path = outdir / "enrolling.png"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, port = start_enrolling(tmp, f"https://localhost:{free_port()}/enrol", mint_ca(tmp / "ca").cert_path,
                                     kiosk="SIM-0007")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": width, "height": height}, has_touch=True).new_page()
                for _ in range(100):
                    try:
                        page.goto(f"http://127.0.0.1:{port}/")
                        break
                    except Exception:
                        page.wait_for_timeout(200)
                page.wait_for_selector('main[data-screen="enrolling"][data-attempt="3"]', timeout=30000)
                page.screenshot(path=str(path))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--size", default="1280x800")
    parser.add_argument("--lang", default="zh", choices=["zh", "en"])
    args = parser.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    for path in run(args.outdir, w, h, args.lang):
        print(path)
    if args.lang == "zh":
        print(enrolling(args.outdir, w, h))


if __name__ == "__main__":
    main()

"""终端设置 in Debian's Chromium against an in-process halld and two kiosks on the real broker: the
admin's services, denominations and idle-screen notices reach every kiosk of the hall as one
apply_settings each (the kiosk side: tests/controller/test_commands.py on a real kioskd), a kiosk
that refuses is shown and audited as such, notices with markup stay text; bad settings are a 400
with nothing sent, and only an admin may push."""
from __future__ import annotations

import asyncio
import secrets

from tests.hall.kiosk_client import FakeKiosk, birth_stored
from tests.hall.test_commands_api import answer_commands

from .test_kiosk_page import _login, chromium  # noqa: F401  (the fixture)

NOTICE = "今日营业至 18:00 / <b>Open</b> until 18:00"


async def test_settings_reach_every_kiosk_of_a_hall_and_a_refusal_is_shown(console, chromium):  # noqa: F811
    admin, operator = await console.user("admin"), await console.user("operator")
    hall = f"H{secrets.token_hex(3)}"
    good, bad = (FakeKiosk(console.halld.config.mqtt_port, hall=hall, kiosk=f"K{secrets.token_hex(3)}") for _ in "ab")
    refuse = lambda name, args: {"ok": False, "error": {"code": "bad_args", "message": "x"}}  # noqa: E731
    async with good, bad:
        await birth_stored(console.halld, good)
        await birth_stored(console.halld, bad)
        heard: dict[str, list] = {good.kiosk: [], bad.kiosk: []}
        tasks = [asyncio.create_task(answer_commands(good, heard[good.kiosk])),
                 asyncio.create_task(answer_commands(bad, heard[bad.kiosk], refuse))]
        try:
            page, errors = await _login(chromium, console.url, admin)
            await page.click("nav a[href='/settings']")
            await page.select_option("select[name=target]", f"hall:{hall}")
            await page.uncheck("input[name=services][value=bill_pay]")
            await page.uncheck("input[name=denominations][value='10000']")
            await page.fill("textarea[name=notices]", NOTICE + "\n\n  节假日照常营业 / Open on holidays  ")
            async with page.expect_navigation():
                await page.click("#push button")
            assert await page.locator("#applied").inner_text() == "1"
            assert await page.locator("#failed").inner_text() == "1"
            assert await page.locator("#kiosks td div", has_text=NOTICE).count() == 1
            assert await page.evaluate("document.querySelectorAll('#kiosks b').length") == 0
            assert await page.locator("#kiosks tr.warn", has_text=bad.kiosk).count() == 1
            assert not errors, errors
            await page.close()

            async with console.browser() as staff:
                await staff.login(admin)
                form = {"csrf": staff.csrf, "target": f"kiosk:{good.kiosk}", "services": "topup"}
                for extra in ({"notices": "\n".join(["x"] * 6)}, {"denominations": "300"}, {"services": "toaster"},
                              {"notices": "bell\x07"}, {"target": "kiosk:nobody"}):
                    async with staff.http.post(f"{staff.url}/settings", data={**form, **extra}) as r:
                        assert r.status == 400, extra
            async with console.browser() as staff:
                await staff.login(operator)
                async with staff.http.get(f"{staff.url}/settings") as r:
                    assert r.status == 403
                async with staff.http.post(f"{staff.url}/settings", allow_redirects=False, data={
                        "csrf": staff.csrf, "target": f"hall:{hall}", "services": "topup"}) as r:
                    assert r.status == 403
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    want = {"services": ["topup", "card_sale", "balance_query", "statement", "invoice", "plan_change", "loss_report",
                         "new_number", "sim_replace", "real_name"],
            "denominations": [10, 50, 100, 500, 1000, 2000, 5000], "notices": [NOTICE, "节假日照常营业 / Open on holidays"]}
    assert heard == {good.kiosk: [("apply_settings", want)], bad.kiosk: [("apply_settings", want)]}
    audit = {a["target"]: a for a in await console.audit() if a["action"].startswith("kiosk.apply_settings")}
    assert audit[f"{hall}/{good.kiosk}"]["action"] == "kiosk.apply_settings"
    assert audit[f"{hall}/{bad.kiosk}"]["action"] == "kiosk.apply_settings.refused"
    assert audit[f"{hall}/{good.kiosk}"]["before"] is None and audit[f"{hall}/{good.kiosk}"]["after"]["args"] == want

"""The kiosk page in Debian's Chromium against an in-process halld and a kiosk on the real broker:
its status, telemetry and events shown (HTML in them is text), each command button reaching the
kiosk through the command path with an audit entry, a cash count with its difference, and a
viewer or a missing CSRF token refused before anything is sent."""
from __future__ import annotations

import asyncio
import contextlib
import secrets

import pytest

from tests.hall.kiosk_client import FakeKiosk, birth_stored
from tests.hall.test_commands_api import answer_commands
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

from .conftest import PASSWORD

NASTY = '<img src=x onerror="document.title=1">jam</b>'


@contextlib.asynccontextmanager
async def a_kiosk(console):
    k = FakeKiosk(console.halld.config.mqtt_port, hall=f"H{secrets.token_hex(3)}", kiosk=f"K{secrets.token_hex(3)}")
    async with k:
        await birth_stored(console.halld, k, devices={"printer": "ok", "bill": "jammed"},
                           cashbox={"fen": 12000, "notes": 12}, card_stock={"3000": 40}, hopper_fen=5000)
        await k.publish("event", {"msg_seq": 1, "kind": "fault", "device": "bill", "code": "jam", "detail": NASTY,
                                  "at": 1795556168.0})
        await k.ack_reaching(1)
        handled: list = []
        task = asyncio.create_task(answer_commands(k, handled))
        try:
            yield k, handled
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def chromium():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def _login(chromium, url: str, name: str):
    page = await chromium.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url + "/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(url + "/")
    return page, errors


async def test_an_operator_commands_a_kiosk_from_its_page_and_each_command_is_audited(console, chromium):
    operator = await console.user("operator")
    async with a_kiosk(console) as (k, handled):
        page, errors = await _login(chromium, console.url, operator)
        await page.click(f"#fleet a[href='/kiosks/{k.kiosk}']")  # the fleet table's link now lands
        await page.wait_for_url(f"{console.url}/kiosks/{k.kiosk}")
        assert "120.00" in await page.locator("#telemetry").inner_text()
        assert "jammed" in await page.locator("#telemetry").inner_text()
        # a note with markup is shown as text, never run or parsed
        assert await page.locator("#events td", has_text=NASTY).count() == 1
        assert await page.evaluate("document.querySelectorAll('#events img').length") == 0
        assert await page.title() != "1"

        await page.click("button[value=inhibit_cash]")
        await page.wait_for_selector("#result.notice")
        await page.select_option("select[name=service]", "bill_pay")
        await page.click("button[value=disable_service]")
        await page.wait_for_selector("#result.notice")
        page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await page.click("button[value=restart]")
        await page.wait_for_url("**did=restart**")
        assert handled == [("inhibit_cash", {"inhibit": True}), ("disable_service", {"service": "bill_pay"}),
                           ("restart", {})]
        assert await page.locator("#sent tbody tr").count() == 3

        await page.fill("input[name=counted]", "119.50")
        await page.fill("input[name=note]", "<b>short</b>")
        await page.click("#cash-form button")
        await page.wait_for_selector("#result.notice")
        assert "-0.50" in await page.locator("#result").inner_text()
        assert await page.locator("#counts td", has_text="<b>short</b>").count() == 1
        assert not errors, errors
        await page.close()

    audit = [a for a in await console.audit() if a["who"] == operator and a["action"].startswith("kiosk.")]
    by_action = {a["action"]: a for a in audit}
    assert set(by_action) == {"kiosk.inhibit_cash", "kiosk.disable_service", "kiosk.restart", "kiosk.cash_count"}
    assert by_action["kiosk.inhibit_cash"]["before"]["cash_inhibited"] is False
    assert by_action["kiosk.inhibit_cash"]["after"]["reply"]["ok"] is True
    assert by_action["kiosk.restart"]["after"]["args"] == {}
    after = by_action["kiosk.cash_count"]["after"]
    assert (after["kiosk_fen"], after["counted_fen"], after["diff_fen"]) == (12000, 11950, -50)


async def test_a_kiosk_that_does_not_answer_is_shown_as_not_done(console, chromium):
    operator = await console.user("operator")
    k = FakeKiosk(console.halld.config.mqtt_port, hall=f"H{secrets.token_hex(3)}", kiosk=f"K{secrets.token_hex(3)}")
    async with k:
        await birth_stored(console.halld, k)
        from hall.web import kioskpages

        page, errors = await _login(chromium, console.url, operator)
        old, kioskpages.TIMEOUT_S = kioskpages.TIMEOUT_S, 1.0
        try:
            await page.goto(f"{console.url}/kiosks/{k.kiosk}")
            await page.click("button[value=inhibit_cash]")
            await page.wait_for_selector("#result.error")
        finally:
            kioskpages.TIMEOUT_S = old
        assert "timeout" in await page.locator("#result").inner_text()
        await page.close()


async def test_a_viewer_sees_no_buttons_and_is_refused_every_state_change(console, chromium):
    viewer, operator = await console.user("viewer"), await console.user("operator")
    async with a_kiosk(console) as (k, handled):
        page, _ = await _login(chromium, console.url, viewer)
        response = await page.goto(f"{console.url}/kiosks/{k.kiosk}")
        assert response.status == 200
        assert await page.locator("#commands").count() == 0 and await page.locator("#cash-form").count() == 0
        await page.close()
        async with console.browser() as staff:
            assert (await staff.login(viewer)).status == 303
            for path, form in ((f"/kiosks/{k.kiosk}/command", {"action": "inhibit_cash"}),
                               (f"/kiosks/{k.kiosk}/command", {"action": "restart"}),
                               (f"/kiosks/{k.kiosk}/cash", {"counted": "1.00"})):
                async with staff.http.post(staff.url + path, data={**form, "csrf": staff.csrf},
                                           allow_redirects=False) as r:
                    assert r.status == 403, (path, r.status)
        async with console.browser() as staff:  # an operator without the page's CSRF token
            assert (await staff.login(operator)).status == 303
            async with staff.http.post(f"{staff.url}/kiosks/{k.kiosk}/command", data={"action": "restart"},
                                       allow_redirects=False) as r:
                assert r.status == 403
            async with staff.http.post(f"{staff.url}/kiosks/{k.kiosk}/command",
                                       data={"action": "restart", "csrf": "x" * 43}, allow_redirects=False) as r:
                assert r.status == 403
            async with staff.http.get(f"{staff.url}/kiosks/nobody-{secrets.token_hex(3)}") as r:
                assert r.status == 404
        assert handled == []  # nothing reached the kiosk
        counts = await console.halld._reader(lambda db: db.one("SELECT COUNT(*) FROM cash_counts WHERE kiosk = ?",
                                                              (k.kiosk,))[0])
        assert counts == 0


def test_the_service_buttons_name_services_the_kiosk_knows():
    """The kiosk refuses a service it has no flow for (controller/commands.py): the page offered the
    reports' groups (query, documents, replace_sim), which no kiosk could switch off."""
    from hall.web import kioskpages
    from transactions import FLOWS

    assert set(kioskpages.SERVICES) == set(FLOWS)

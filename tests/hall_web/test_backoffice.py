"""交易对账 and 充值冲正 in Debian's Chromium against an in-process halld whose BOSS is bosssim and a
kiosk on the real broker: a day with real mismatches made at bosssim (a credit the kiosk says it
made and the BOSS never got, a credit for a transaction the kiosk refunded, one held for review, one
of another amount) is reconciled and exactly those are found, across midnight nothing else; a
resolution recorded and audited; a top-up reversed inside the window, one refused outside it, one
whose answer was lost asked again with the same key and applied once."""
from __future__ import annotations

import datetime as dt
import secrets
import time

import aiohttp

from hall import reconcile
from tests.hall.kiosk_client import FakeKiosk, birth_stored

from .test_kiosk_page import _login, chromium  # noqa: F401  (the fixture)


async def boss(console, op: str, **params) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{console.boss.url}/boss/v1/{op}", json=params) as r:
            body = await r.json()
    assert body["ok"], body
    return body["result"]


async def control(console, path: str, **body) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{console.boss.url}/control/{path}", json=body) as r:
            assert (await r.json())["ok"]


async def a_day(console, k: FakeKiosk) -> tuple[dt.date, dict[str, str]]:
    """Today's BOSS business day at noon: the kiosk's records and the BOSS's, with four real mismatches."""
    day = reconcile.boss_day(time.time())
    noon = reconcile.day_bounds(day)[0] + 12 * 3600
    t = {n: f"{k.kiosk}-1-{n}" for n in range(1, 9)}
    records = [  # (n, service, state, kiosk applied, finished at)
        (1, "topup", "done", 5000, noon), (2, "bill_pay", "done", 8650, noon),
        (3, "topup", "done", 3000, noon),  # the BOSS never got it: kiosk_only
        (4, "topup", "refunded", 0, noon),  # refunded at the kiosk, credited at the BOSS: boss_only
        (5, "topup", "review", 0, noon),  # unknown at the kiosk, credited at the BOSS: review
        (6, "topup", "done", 10000, noon),  # the BOSS credited 5000: amount_differs
        (7, "topup", "done", 3000, noon),  # the BOSS applied it days ago: matched across midnight
        (8, "topup", "done", 2500, noon - 86400)]  # the kiosk finished it yesterday: matched across midnight
    for n, service, state, applied, at in records:
        await k.publish("txn", {"msg_seq": n, "txn": t[n], "seq": n, "service": service, "phone": "18612345678",
                                "amount_fen": applied or 2000, "state": state, "finished_at": at, "applied": applied,
                                **({"held_for_review": 1000} if state == "review" else {})})
    await k.ack_reaching(8)
    for n, op, fen in [(1, "credit", 5000), (2, "pay_bill", 8650), (4, "credit", 2000), (5, "credit", 1000),
                       (6, "credit", 5000), (7, "credit", 3000), (8, "credit", 2500)]:
        key = f"{t[n]}:{'pay' if op == 'pay_bill' else 'credit'}"
        await boss(console, op, phone="13912345678" if op == "pay_bill" else "18612345678", fen=fen, key=key)
        at = noon if n != 7 else noon - 12 * 3600 - 86401  # 7: on a day before yesterday, outside the window
        await control(console, "age", key=key, seconds=time.time() - at)
    return day, t


async def test_reconciliation_finds_exactly_the_real_mismatches_and_records_a_resolution(boss_console, chromium):  # noqa: F811
    console = boss_console
    operator = await console.user("operator")
    k = FakeKiosk(console.halld.config.mqtt_port, hall=f"H{secrets.token_hex(3)}", kiosk=f"K{secrets.token_hex(3)}")
    async with k:
        await birth_stored(console.halld, k)
        day, t = await a_day(console, k)
        page, errors = await _login(chromium, console.url, operator)
        await page.goto(f"{console.url}/reconcile?date={day.isoformat()}")
        await page.click("#run button")
        await page.wait_for_selector("#result.notice")
        found = {}
        for row in await page.locator("#items tbody tr").all():
            cells = await row.locator("td").all_inner_texts()
            found[cells[2].split("\n")[0]] = (cells[0], cells[4], cells[5])
        assert found == {t[3]: ("终端有、BOSS无", "30.00", "0.00"), t[4]: ("BOSS有、终端无", "0.00", "20.00"),
                         t[5]: ("待审核交易", "-", "10.00"), t[6]: ("金额不符", "100.00", "50.00")}
        assert await page.locator("#mismatches").inner_text() == "4"
        assert await page.locator("#matched").inner_text() == "4"
        assert await page.locator("#boss-count").inner_text() == "6"  # 7 was applied days ago
        assert await page.locator("#boss-fen").inner_text() == "241.50"
        assert await page.locator("#kiosk-fen").inner_text() == "296.50"  # 1 2 3 6 7; 8 finished yesterday

        row = page.locator("#items tbody tr", has_text=t[4])
        await row.locator("select[name=resolution]").select_option("refund_customer")
        await row.locator("input[name=note]").fill("<b>顾客已退款</b>")
        await row.locator("button").click()
        await page.wait_for_selector("#result.notice")
        assert await page.locator("#items td", has_text="<b>顾客已退款</b>").count() == 1
        await page.click("#run button")  # again: the resolved item stays resolved, the open ones stay open
        await page.wait_for_selector("#result.notice")
        assert await page.locator("#items tr.warn").count() == 3
        assert not errors, errors
        await page.close()
    audit = [a for a in await console.audit() if a["who"] == operator]
    runs = [a for a in audit if a["action"] == "recon.run"]
    assert len(runs) == 2 and runs[0]["before"]["mismatches"] == 4 and runs[0]["after"]["mismatches"] == 4
    resolved = [a for a in audit if a["action"] == "recon.resolve"]
    assert len(resolved) == 1 and resolved[0]["before"]["txn"] == t[4] and resolved[0]["before"]["resolution"] is None
    assert resolved[0]["after"]["resolution"] == "refund_customer"


async def test_a_reversal_inside_the_window_is_done_once_outside_refused_and_a_lost_answer_asked_again(
        boss_console, chromium):  # noqa: F811
    console = boss_console
    operator = await console.user("operator")
    k = FakeKiosk(console.halld.config.mqtt_port, hall=f"H{secrets.token_hex(3)}", kiosk=f"K{secrets.token_hex(3)}")
    async with k:
        await birth_stored(console.halld, k)
        day, t = await a_day(console, k)
        before = (await boss(console, "query_balance", phone="18612345678"))["balance_fen"]
        page, errors = await _login(chromium, console.url, operator)
        page.on("dialog", lambda d: __import__("asyncio").ensure_future(d.accept()))
        await page.goto(f"{console.url}/reversals")

        async def reverse(n: int, reason: str) -> None:
            row = page.locator("#candidates tbody tr", has_text=t[n])
            await row.locator("input[name=reason]").fill(reason)
            async with page.expect_navigation():
                await row.locator("button").click()

        await page.goto(f"{console.url}/txn?kiosk={k.kiosk}&txn={t[1]}")  # from the transaction's own page
        await page.fill("#reverse input[name=reason]", "充错号码 <i>wrong number</i>")
        async with page.expect_navigation():
            await page.click("#reverse button")
        assert await page.locator("#pay-fen").inner_text() == "50.00"
        await reverse(7, "late")  # applied at the BOSS more than 24 h ago
        assert await page.locator("#code").inner_text() == "window_closed"
        await control(console, "fault", op="reverse_credit", mode="drop_reply", delay=2)
        await reverse(6, "lost answer")  # applied, the answer lost: unknown
        assert await page.locator("#code").inner_text() == "timeout"
        await reverse(6, "lost answer")  # asked again: the same key, applied once
        assert await page.locator("#pay-fen").inner_text() == "50.00"
        assert await page.locator("#reversals td", has_text="<i>wrong number</i>").count() == 1
        assert not errors, errors
        await page.close()
    after = (await boss(console, "query_balance", phone="18612345678"))["balance_fen"]
    assert before - after == 5000 + 5000  # t1 and t6 once each, t7 not
    ops = [o for o in (await boss(console, "day_statement", date=day.isoformat()))["ops"] if o["op"] == "reverse_credit"]
    assert sorted(o["of"] for o in ops) == sorted([f"{t[1]}:credit", f"{t[6]}:credit"])
    actions = [a["action"] for a in await console.audit() if a["who"] == operator and a["action"].startswith("reversal.")]
    assert sorted(actions) == sorted(["reversal.ask", "reversal.done", "reversal.ask", "reversal.refused",
                                      "reversal.ask", "reversal.unknown", "reversal.ask", "reversal.done"])


async def test_the_back_office_refuses_a_viewer_bad_input_and_works_without_a_boss_only_to_say_so(boss_console, console):
    async with boss_console.browser() as staff:
        await staff.login(await boss_console.user("viewer"))
        for path, form in (("/reconcile", {"date": "2026-01-01"}), ("/reversals", {"kiosk": "K", "txn": "T", "reason": "x"}),
                           ("/reconcile/resolve", {"id": "1", "resolution": "other", "date": "2026-01-01"})):
            async with staff.http.post(staff.url + path, data={**form, "csrf": staff.csrf}, allow_redirects=False) as r:
                assert r.status == 403, path
        for query in ("date=2026-13-01", "date=' OR 1=1 --", "date=2999-01-01"):
            async with staff.http.get(f"{staff.url}/reconcile?{query}") as r:
                assert r.status == 400, query
    async with boss_console.browser() as staff:
        await staff.login(await boss_console.user("operator"))
        async with staff.http.post(staff.url + "/reversals", data={"kiosk": "K", "txn": "x' OR '1'='1", "reason": "r",
                                                                    "csrf": staff.csrf}, allow_redirects=False) as r:
            assert "not_a_done_topup" in r.headers["Location"]
        async with staff.http.post(staff.url + "/reconcile/resolve", allow_redirects=False, data={
                "id": "1; DROP TABLE recon_items", "resolution": "other", "date": "2026-01-01", "csrf": staff.csrf}) as r:
            assert r.status == 400
    async with console.browser() as staff:  # a halld without --boss
        await staff.login(await console.user("operator"))
        async with staff.http.post(staff.url + "/reconcile", data={"date": "2026-01-01", "csrf": staff.csrf},
                                   allow_redirects=False) as r:
            assert r.status == 503
        async with staff.http.get(staff.url + "/reconcile?date=2026-01-01") as r:
            assert r.status == 200 and "disabled" in await r.text()


async def test_commission_statement_and_a_transfer_to_the_wallet_moved_once(boss_console, chromium):  # noqa: F811
    console = boss_console
    admin, operator = await console.user("admin"), await console.user("operator")
    await boss(console, "credit", phone="18612345678", fen=10000, key="c1:credit")  # 1.5 %: 150
    await boss(console, "pay_bill", phone="13912345678", fen=8650, key="c2:pay")  # 0.5 %: 43
    page, errors = await _login(chromium, console.url, admin)
    page.on("dialog", lambda d: __import__("asyncio").ensure_future(d.accept()))
    await page.click("nav a[href='/commission']")
    await page.wait_for_selector("#statement")
    assert await page.locator("#month-fen").inner_text() == "1.93"
    assert await page.locator("#available").inner_text() == "1.93"
    await page.fill("input[name=amount]", "1.50")
    form = {"key": await page.locator("#transfer input[name=key]").get_attribute("value"), "amount": "1.50",
            "month": await page.locator("#transfer input[name=month]").get_attribute("value"),
            "csrf": await page.locator("#transfer input[name=csrf]").get_attribute("value")}
    async with page.expect_navigation():
        await page.click("#transfer button")
    assert await page.locator("#moved").inner_text() == "1.50"
    assert await page.locator("#available").inner_text() == "0.43"
    assert await page.locator("#wallet-fen").inner_text() == "1.50 元"
    # the same form sent again (a double click, the back button): moved once
    again = await page.request.post(f"{console.url}/commission/transfer", form=form, max_redirects=0)
    assert again.status == 303 and "already_done" in again.headers["location"]
    await page.fill("input[name=amount]", "0.44")
    async with page.expect_navigation():
        await page.click("#transfer button")
    assert await page.locator("#code").inner_text() == "exceeds_available"
    assert await page.locator("#transfers tbody tr").count() == 2
    assert not errors, errors
    await page.close()
    st = await boss(console, "commission_statement", month=form["month"])
    assert (st["transferred_fen"], st["available_fen"]) == (150, 43)
    audit = [a["action"] for a in await console.audit() if a["who"] == admin and a["action"].startswith("commission.")]
    assert sorted(audit) == sorted(["commission.transfer.ask", "commission.transfer.done",
                                    "commission.transfer.ask", "commission.transfer.refused"])
    async with console.browser() as staff:  # an operator sees the statement, may not move the money
        await staff.login(operator)
        async with staff.http.get(f"{staff.url}/commission") as r:
            assert r.status == 200 and "/commission/transfer" not in await r.text()
        async with staff.http.post(f"{staff.url}/commission/transfer", allow_redirects=False,
                                   data={**form, "key": "cm-0123456789abcdef", "csrf": staff.csrf}) as r:
            assert r.status == 403
    async with console.browser() as staff:
        await staff.login(admin)
        for bad in ({"amount": "-1"}, {"amount": "1e3"}, {"amount": "0"}):
            async with staff.http.post(f"{staff.url}/commission/transfer", allow_redirects=False,
                                       data={**form, **bad, "key": "cm-00000000000000aa", "csrf": staff.csrf}) as r:
                assert "bad_amount" in r.headers["Location"], bad
        async with staff.http.post(f"{staff.url}/commission/transfer", allow_redirects=False,
                                   data={**form, "key": "x'; DROP TABLE commission_transfers", "csrf": staff.csrf}) as r:
            assert r.status == 400
        async with staff.http.get(f"{staff.url}/commission?month=2026-1") as r:
            assert r.status == 400

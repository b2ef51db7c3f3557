"""退卡退款 in Debian's Chromium against an in-process halld and a kiosk on the real broker: a
transaction held for review and a refund voucher queue up; the operator pays the voucher at the
desk and rejects the review with a reason, each only after the kiosk agreed (its resolve_* command),
each audited before -> after; a kiosk that refuses leaves the item open; a viewer or a missing CSRF
token is refused before anything is sent."""
from __future__ import annotations

import asyncio
import contextlib
import secrets

from tests.hall.kiosk_client import FakeKiosk, birth_stored
from tests.hall.test_commands_api import answer_commands

from .test_kiosk_page import _login, chromium  # noqa: F401  (the fixture)

NASTY = '<img src=x onerror="document.title=1">'


@contextlib.asynccontextmanager
async def kiosk_with_a_queue(console, reply_for=None):
    k = FakeKiosk(console.halld.config.mqtt_port, hall=f"H{secrets.token_hex(3)}", kiosk=f"K{secrets.token_hex(3)}")
    async with k:
        await birth_stored(console.halld, k)
        held, refunded = f"{k.kiosk}-1-1", f"{k.kiosk}-1-2"
        # in the kiosk's order (transactions/records.py): the voucher's event, then the record
        await k.publish("txn", {"msg_seq": 1, "txn": held, "seq": 1, "service": "topup", "phone": "13800138000",
                                "amount_fen": 5000, "state": "review", "note": "credit timeout", "held_for_review": 5000})
        await k.publish("event", {"msg_seq": 2, "kind": "refund_voucher", "txn": refunded, "fen": 2000,
                                  "claim_code": "ABCD2345EF", "reason": NASTY})
        await k.publish("txn", {"msg_seq": 3, "txn": refunded, "seq": 2, "service": "card_sale", "state": "refunded",
                                "amount_fen": 3000, "vouchers": [{"code": "ABCD2345EF", "fen": 2000}]})
        await k.ack_reaching(3)
        handled: list = []
        task = asyncio.create_task(answer_commands(k, handled, reply_for))
        try:
            yield k, handled, held, refunded
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_an_operator_pays_a_voucher_and_rejects_a_review_once_the_kiosk_agreed(console, chromium):  # noqa: F811
    operator = await console.user("operator")
    async with kiosk_with_a_queue(console) as (k, handled, held, refunded):
        page, errors = await _login(chromium, console.url, operator)
        await page.click("nav a[href='/refunds']")
        await page.wait_for_selector("#queue")
        mine = page.locator("#queue tbody tr", has_text=k.kiosk)
        assert await mine.count() == 2
        assert await page.locator("#queue td", has_text=NASTY).count() == 1  # the reason is text
        assert await page.evaluate("document.querySelectorAll('#queue img').length") == 0

        page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await mine.filter(has_text="ABCD2345EF").locator("button[value=pay]").click()
        await page.wait_for_selector("#result.notice")
        assert await page.locator("#voucher").inner_text() == "ABCD2345EF"
        assert await page.locator("#pay-fen").inner_text() == "20.00"

        row = page.locator("#queue tbody tr", has_text=held)
        await row.locator("select[name=resolution]").select_option("credited")
        await row.locator("input[name=reason]").fill("BOSS 已到账 <b>查证</b>")
        await row.locator("button[value=reject]").click()
        await page.wait_for_selector("#result.notice")
        assert await page.locator("#queue tbody tr", has_text=k.kiosk).count() == 0
        assert await page.locator("#decided td", has_text="<b>查证</b>").count() == 1
        assert not errors, errors
        await page.close()
    assert handled[0][0] == "resolve_refund" and handled[0][1]["claim"] == "ABCD2345EF"
    assert handled[1][0] == "resolve_review" and handled[1][1]["txn"] == held
    assert handled[1][1]["resolution"] == "credited" and "查证" in handled[1][1]["note"]
    audit = {a["action"]: a for a in await console.audit() if a["who"] == operator and a["action"].startswith("refund.")}
    assert set(audit) == {"refund.paid", "refund.rejected"}
    assert audit["refund.paid"]["before"]["fen"] == 2000 and audit["refund.paid"]["after"]["voucher"] == "ABCD2345EF"
    assert audit["refund.rejected"]["before"]["kind"] == "review"
    assert audit["refund.rejected"]["after"]["reply"]["ok"] is True
    rows = await console.halld._reader(lambda db: db.dicts(
        "SELECT kind, fen, decision, resolution FROM desk_payouts WHERE kiosk = ? ORDER BY id", (k.kiosk,)))
    assert rows == [{"kind": "voucher", "fen": 2000, "decision": "paid", "resolution": "paid"},
                    {"kind": "review", "fen": 5000, "decision": "rejected", "resolution": "credited"}]


async def test_a_kiosk_that_refuses_leaves_the_item_open_and_a_rejection_needs_a_reason(console):
    operator = await console.user("operator")
    refuse = lambda name, args: {"ok": False, "error": {"code": "refused", "message": "already resolved"}}  # noqa: E731
    async with kiosk_with_a_queue(console, refuse) as (k, handled, held, refunded), console.browser() as staff:
        assert (await staff.login(operator)).status == 303
        form = {"csrf": staff.csrf, "kind": "review", "kiosk": k.kiosk, "ref": held}
        async with staff.http.post(f"{staff.url}/refunds/decide", data={**form, "action": "reject",
                                   "resolution": "credited", "reason": "  "}, allow_redirects=False) as r:
            assert r.status == 303 and "reason_needed" in r.headers["Location"]
        assert handled == []  # nothing was sent for it
        async with staff.http.post(f"{staff.url}/refunds/decide", data={**form, "action": "pay"}) as r:
            assert r.status == 200 and "refused" in await r.text()
        assert [name for name, _ in handled] == ["resolve_review"]
        count = await console.halld._reader(lambda db: db.one(
            "SELECT COUNT(*) FROM reviews WHERE kiosk = ? AND state = 'open'", (k.kiosk,))[0])
        assert count == 1
        assert await console.halld._reader(lambda db: db.one("SELECT COUNT(*) FROM desk_payouts WHERE kiosk = ?",
                                                             (k.kiosk,))[0]) == 0
        async with staff.http.post(f"{staff.url}/refunds/decide", data={**form, "ref": "nope", "action": "pay"},
                                   allow_redirects=False) as r:
            assert "not_open" in r.headers["Location"]
    refused = [a for a in await console.audit() if a["who"] == operator and a["action"] == "refund.paid.refused"]
    assert len(refused) == 1 and refused[0]["after"]["reply"]["ok"] is False


async def test_a_viewer_sees_the_queue_without_buttons_and_is_refused(console):
    viewer, operator = await console.user("viewer"), await console.user("operator")
    async with kiosk_with_a_queue(console) as (k, handled, held, refunded):
        async with console.browser() as staff:
            await staff.login(viewer)
            async with staff.http.get(f"{staff.url}/refunds") as r:
                text = await r.text()
                assert r.status == 200 and held in text and "/refunds/decide" not in text
            async with staff.http.post(f"{staff.url}/refunds/decide", allow_redirects=False, data={
                    "csrf": staff.csrf, "kind": "review", "kiosk": k.kiosk, "ref": held, "action": "pay"}) as r:
                assert r.status == 403
        async with console.browser() as staff:
            await staff.login(operator)
            async with staff.http.post(f"{staff.url}/refunds/decide", allow_redirects=False, data={
                    "kind": "review", "kiosk": k.kiosk, "ref": held, "action": "pay"}) as r:
                assert r.status == 403
        assert handled == []

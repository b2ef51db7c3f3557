"""放卡维护 in Debian's Chromium against an in-process halld: stock per kiosk and face from what the
kiosks reported, low-stock alerts, sales per day from the card sales (one SQL aggregate, on SQLite
and PostgreSQL), a delivery shared out as worked by hand, cards loaded through the kiosk's
load_cards command and audited; bad input a 400, a viewer refused."""
from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest

from hall import stock
from hall.db import connect
from tests.hall.kiosk_client import FakeKiosk, birth_stored
from tests.hall.test_commands_api import answer_commands

from .test_kiosk_page import _login, chromium  # noqa: F401  (the fixture)

INSERT = ("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at, received_at,"
          " payload) VALUES (?, ?, ?, ?, ?, 'card_sale', NULL, ?, ?, ?, ?, ?)")


def _sales(now: float) -> list[tuple]:
    """A sold 14 cards of 30 yuan in the last 14 days (1 a day), B 56 (4 a day), C 30 but three weeks
    ago; cancelled sales and another face do not count."""
    rows = []
    for kiosk, n, face, state, age_days in (("A", 14, 3000, "done", 3), ("B", 56, 3000, "done", 5),
                                            ("C", 30, 3000, "done", 21), ("B", 9, 3000, "cancelled", 1),
                                            ("A", 4, 5000, "done", 2)):
        for i in range(n):
            at = now - age_days * 86400 - i
            rows.append(("H", kiosk, f"{kiosk}-{face}-{state}-{i}", i, i, face, state, at, at,
                         json.dumps({"data": {"face_fen": face}, "state": state})))
    return rows


def _fleet(db, hall: str, kiosk: str, cards: dict) -> None:
    db.execute("INSERT INTO fleet (hall, kiosk, online, session, last_seen, card_stock) VALUES (?, ?, 1, 1, ?, ?)",
               (hall, kiosk, time.time(), json.dumps(cards)))


async def test_sales_per_kiosk_and_face_are_one_aggregate_on_either_database(db_url):
    db = connect(db_url)
    try:
        now = time.time()
        with db.transaction():
            db.executemany(INSERT, _sales(now))
        assert stock.sales(db, now - 14 * 86400) == {("A", 3000): 14, ("B", 3000): 56, ("A", 5000): 4}
    finally:
        db.close()


def test_a_delivery_is_shared_out_as_worked_by_hand():
    rows = [{"kiosk": "A", "faces": {3000: {"stock": 10, "per_day": 1.0}}},
            {"kiosk": "B", "faces": {3000: {"stock": 40, "per_day": 4.0}}},
            {"kiosk": "C", "faces": {3000: {"stock": 150, "per_day": 0.0}}},  # counted at MIN_RATE 0.5
            {"kiosk": "D", "faces": {10000: {"stock": 5, "per_day": 1.0}}}]  # sells no 30-yuan card
    # water level L days: A needs L - 10, B 4L - 40, C 0.5L - 150: 100 cards fill A and B to L = 30
    assert stock.allocate(rows, 3000, 100) == ({"A": 20, "B": 80}, 0)
    # beyond L = 300 C joins; capacity 160 caps all three: 150 + 120 + 10 = 280 given, 220 left
    assert stock.allocate(rows, 3000, 500, capacity=160) == ({"A": 150, "B": 120, "C": 10}, 220)
    assert stock.allocate(rows, 5000, 10) == ({}, 10)


async def test_the_stock_page_alerts_suggests_and_loads_cards_through_the_kiosk(console, chromium):  # noqa: F811
    operator, viewer = await console.user("operator"), await console.user("viewer")
    now = time.time()

    def seed(db):
        db.executemany(INSERT, _sales(now))
        _fleet(db, "H", "A", {"3000": 10, "5000": 60})
        _fleet(db, "H", "B", {"3000": 40, "5000": 7})
        _fleet(db, "H", "C", {"3000": 150})
    await console.halld._writer.call(seed)
    k = FakeKiosk(console.halld.config.mqtt_port, hall="H", kiosk=f"D{secrets.token_hex(3)}")
    loaded = lambda name, args: {"ok": True, "result": {"face_fen": args["face_fen"], "added": args["added"],  # noqa: E731
                                                        "stock": 5 + args["added"]}}
    async with k:
        await birth_stored(console.halld, k, card_stock={"10000": 5})
        handled: list = []
        task = asyncio.create_task(answer_commands(k, handled, loaded))
        try:
            page, errors = await _login(chromium, console.url, operator)
            lows = page.locator("#fleet tr", has=page.locator("a[href='/stock']"))  # the fleet page says it too
            names = await lows.locator("td:first-child").all_inner_texts()
            assert sorted(names) == sorted(["H/A", "H/B", f"H/{k.kiosk}"])
            await page.click("nav a[href='/stock']")
            await page.wait_for_selector("#levels")
            low = await page.locator("#levels tbody tr.warn td:first-child").all_inner_texts()
            assert sorted(x.split()[0] for x in low) == sorted(["H/A", "H/B", f"H/{k.kiosk}"])  # 10, 7, 5 cards
            b = await page.locator("#levels tbody tr", has_text="H/B").locator("td").all_inner_texts()
            assert b[1:4] == ["40", "4.0", "10.0"]  # 56 sold in 14 days

            await page.select_option("#allocate select[name=face]", "3000")
            await page.fill("#allocate input[name=delivery]", "100")
            await page.click("#allocate button")
            await page.wait_for_selector("#plan")
            plan = {}
            for row in await page.locator("#plan tbody tr").all():
                cells = await row.locator("td").all_inner_texts()
                plan[cells[0]] = int(cells[2])
            assert plan == {"H/A": 20, "H/B": 80}
            assert await page.locator("#left").inner_text() == "0"

            row = page.locator("#levels tbody tr", has_text=k.kiosk)
            await row.locator("select[name=face_fen]").select_option("10000")
            await row.locator("input[name=added]").fill("30")
            async with page.expect_navigation():
                await row.locator("button").click()
            assert await page.locator("#level").inner_text() == "35"
            assert await page.locator("#loads tbody tr").count() == 1
            assert not errors, errors
            await page.close()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert handled == [("load_cards", {"face_fen": 10000, "added": 30})]
    entry = [a for a in await console.audit() if a["action"] == "stock.load"][0]
    assert entry["who"] == operator and entry["before"] == {"face_fen": 10000, "stock": 5}
    assert entry["after"]["reply"]["result"]["stock"] == 35

    async with console.browser() as staff:
        await staff.login(operator)
        for form in ({"kiosk": k.kiosk, "face_fen": "10000", "added": "0"}, {"kiosk": k.kiosk, "face_fen": "x", "added": "1"},
                     {"kiosk": k.kiosk, "face_fen": "10000", "added": "5000"}):
            async with staff.http.post(f"{staff.url}/stock/load", data={**form, "csrf": staff.csrf}) as r:
                assert r.status == 400, form
        async with staff.http.post(f"{staff.url}/stock/load", data={"kiosk": "' OR 1=1 --", "face_fen": "3000",
                                                                     "added": "1", "csrf": staff.csrf}) as r:
            assert r.status == 404
        for query in ("face=abc", "delivery=-1", "capacity=0"):
            async with staff.http.get(f"{staff.url}/stock?{query}") as r:
                assert r.status == 400, query
    async with console.browser() as staff:
        await staff.login(viewer)
        async with staff.http.get(f"{staff.url}/stock") as r:
            assert r.status == 200 and "/stock/load" not in await r.text()
        async with staff.http.post(f"{staff.url}/stock/load", allow_redirects=False, data={
                "kiosk": "A", "face_fen": "3000", "added": "1", "csrf": staff.csrf}) as r:
            assert r.status == 403
    assert len(handled) == 1

"""Transaction search in Debian's Chromium against an in-process halld: every filter's count and sum
equal to a Python filter over the rows inserted here, paging, the detail page, SQL injection in the
filters kept as data, markup in a kiosk name or event detail shown as text."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from .test_kiosk_page import _login, chromium  # noqa: F401  (the fixture)

TZ = 8 * 3600
EVIL = "<script>x</script>"
INSERT = ("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at,"
          " received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _rows(n: int = 400) -> list[tuple]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        kiosk = rnd.choice(["K1", "K2", EVIL])
        ts = 1740758400 + rnd.randrange(40 * 86400) + rnd.random()  # from 2025-03-01 00:00 +08:00
        out.append(("H1", kiosk, f"{kiosk}-1-{i}", i, i, rnd.choice(["topup", "bill_pay"]),
                    rnd.choice(["13800138000", "13912345678", "15000001234"]), rnd.choice([1000, 3000, 5000, 10000]),
                    rnd.choice(["done"] * 6 + ["failed", "refunded", "review"]), ts, ts,
                    '{"note": "充值 <b>ok</b>"}'))
    return out


@pytest.fixture
async def seeded(console, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    __import__("time").tzset()
    rows = _rows()
    await console.halld._writer.call(lambda db: db.executemany(INSERT, rows))
    await console.halld._writer.call(lambda db: db.execute(
        "INSERT INTO events (hall, kiosk, msg_seq, kind, device, code, detail, txn, at, received_at, payload)"
        " VALUES ('H1', ?, 9999, 'fault', 'bill', 'jam', '<img src=x>jam', ?, 1, 1, '{}')", (rows[0][1], rows[0][2])))
    yield rows
    monkeypatch.delenv("TZ")
    __import__("time").tzset()


def _local_day(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts + TZ, dt.timezone.utc).date()


async def test_search_by_each_filter_counts_and_sums_like_python_and_pages(console, chromium, seeded):  # noqa: F811
    page, errors = await _login(chromium, console.url, await console.user("viewer"))
    cases = [
        ({"phone": "1234"}, lambda r: "1234" in r[6]),
        ({"kiosk": "K2", "state": "done"}, lambda r: r[1] == "K2" and r[8] == "done"),
        ({"from": "2025-03-05", "to": "2025-03-11"},
         lambda r: dt.date(2025, 3, 5) <= _local_day(r[9]) <= dt.date(2025, 3, 11)),
        ({"min": "30", "max": "50.00", "phone": "13800138000"}, lambda r: 3000 <= r[7] <= 5000 and r[6] == "13800138000"),
        ({"kiosk": "' OR '1'='1"}, lambda r: False),
        ({"kiosk": EVIL, "state": "review"}, lambda r: r[1] == EVIL and r[8] == "review"),
    ]
    for query, keep in cases:
        want = [r for r in seeded if keep(r)]
        await page.goto(f"{console.url}/txns")
        for name, value in query.items():
            if name in ("state",):
                await page.select_option(f"select[name={name}]", value)
            else:
                await page.fill(f"input[name={name}]", value)
        await page.click("#search button")
        await page.wait_for_load_state()
        assert await page.locator("#count").inner_text() == str(len(want)), query
        fen = sum(r[7] for r in want)
        assert await page.locator("#sum").inner_text() == f"{fen // 100}.{fen % 100:02d}", query
        assert await page.locator("#results tbody tr td a").count() == min(len(want), 50), query
    # an open search pages through everything, 50 at a time, newest first, nothing twice
    await page.goto(f"{console.url}/txns")
    seen: list[str] = []
    while True:
        seen += await page.locator("#results tbody td a").all_inner_texts()
        if await page.locator("#older").count() == 0:
            break
        await page.click("#older")
        await page.wait_for_load_state()
    assert sorted(seen) == sorted(r[2] for r in seeded)
    assert await page.evaluate("document.querySelectorAll('main script').length") == 0
    assert not errors, errors
    await page.close()


async def test_bad_filters_are_a_clear_400_not_an_error(console, seeded):
    async with console.browser() as staff:
        await staff.login(await console.user("viewer"))
        for query in ("phone=1'; DROP TABLE txns;--", "state=x' OR 1=1", "from=2025-13-01", "min=-5", "min=1e3"):
            async with staff.http.get(f"{staff.url}/txns?{query}") as r:
                assert r.status == 400, query
                assert "查询条件有误" in await r.text()
    count = await console.halld._reader(lambda db: db.one("SELECT COUNT(*) FROM txns")[0])
    assert count == len(seeded)


async def test_the_detail_page_shows_the_record_its_events_and_markup_as_text(console, chromium, seeded):  # noqa: F811
    evil = max((r for r in seeded if r[1] == EVIL), key=lambda r: r[9])  # on the first page
    page, errors = await _login(chromium, console.url, await console.user("viewer"))
    await page.goto(f"{console.url}/txns?kiosk=%3Cscript%3Ex%3C%2Fscript%3E")
    await page.click(f"#results a:text-is('{evil[2]}')")
    await page.wait_for_selector("#txn")
    assert await page.locator("#txn dd", has_text=EVIL).count() == 1
    assert await page.locator("#amount").inner_text() == f"{evil[7] // 100}.{evil[7] % 100:02d} 元"
    assert "<b>ok</b>" in await page.locator("#record").inner_text()
    first = seeded[0]
    await page.goto(f"{console.url}/txns?kiosk={first[1]}")
    await page.goto(f"{console.url}/txn?kiosk={first[1]}&txn={first[2]}")
    assert await page.locator("#events td", has_text="<img src=x>jam").count() == 1
    assert await page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    response = await page.goto(f"{console.url}/txn?kiosk=K1&txn=nope")
    assert response.status == 404
    assert not errors, errors
    await page.close()


async def test_the_search_exports_as_csv_and_xlsx_with_formulas_neutralised(console, seeded):
    import csv
    import io

    from openpyxl import load_workbook

    formula = '=HYPERLINK("http://evil","x")'
    await console.halld._writer.call(lambda db: db.execute(INSERT, (
        "H1", formula, "F-1", 1, 1, "topup", "13800138000", 777, "done", 1741000000.0, 1741000000.0, "{}")))
    want = [r for r in seeded if r[8] == "done"] + [("H1", formula, "F-1", 0, 0, "topup", "", 777)]
    async with console.browser() as staff:
        await staff.login(await console.user("viewer"))
        async with staff.http.get(f"{staff.url}/txns.csv?state=done") as r:
            assert r.status == 200 and r.headers["X-Truncated"] == "0"
            rows = list(csv.reader(io.StringIO((await r.read()).decode("utf-8-sig"))))
        assert len(rows) == 1 + len(want)
        assert sum(int(row[6]) for row in rows[1:]) == sum(w[7] for w in want)
        assert [row[2] for row in rows if row[3] == "F-1"] == ["'" + formula]
        async with staff.http.get(f"{staff.url}/txns.xlsx?state=done&kiosk=K1") as r:
            ws = load_workbook(io.BytesIO(await r.read())).active
        cells = list(ws.iter_rows(min_row=2, values_only=True))
        k1 = [w for w in want if w[1] == "K1"]
        assert len(cells) == len(k1) and sum(c[6] for c in cells) == sum(w[7] for w in k1)
        async with staff.http.get(f"{staff.url}/txns.csv?min=-1") as r:
            assert r.status == 400
        async with staff.http.get(f"{staff.url}/txns.pdf") as r:
            assert r.status == 404

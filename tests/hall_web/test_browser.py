"""The console in Debian's Chromium (Playwright) against a real `halld serve`: login, role denied,
every report's charts drawn and its table's total equal to SQL written here."""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hall import reports, rollups
from hall.broker import free_port
from hall.db import connect
from tests.hall.kiosk_client import cli_token  # noqa: F401  (the same CLI path the staff use)
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

from .test_reports import _rows

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def halld_url(broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    db = str(tmp / "hall.db")
    d = connect(db)
    d.executemany("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at,"
                  " received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _rows())
    with d.transaction():  # not through the writer: the rollups by the writer's own SQL
        rollups.rebuild(d, 8 * 3600)
    d.close()
    for name, role in (("admin1", "admin"), ("viewer1", "viewer")):
        subprocess.run([sys.executable, "-m", "hall.halld", "user", "add", name, "--role", role, "--password-stdin",
                        "--db", db], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    port = free_port()
    log = tmp / "halld.log"
    proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port),
                             "--worker", "console-test", "--http", f"127.0.0.1:{port}"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**__import__("os").environ,
                                                                                  "TZ": "Asia/Shanghai"})
    deadline = time.monotonic() + 60
    while "listening" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)  # polling halld's ready line in its log, bounded by the deadline
    yield f"http://127.0.0.1:{port}", db
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _login(browser, url: str, name: str, password: str = PASSWORD):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"  # a 403 asked for is not an error
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(url + "/")
    except Exception:
        raise AssertionError(f"{page.url}: {page.content()[:3000]} {errors}") from None
    return page, errors


def test_login_in_chromium_and_a_viewer_is_refused_the_staff_page(browser, halld_url):
    url, _ = halld_url
    page, errors = _login(browser, url, "viewer1")
    assert page.locator("header .who").inner_text().startswith("viewer1")
    response = page.goto(url + "/users")
    assert response.status == 403
    page.goto(url + "/")
    page.click("header form button")  # log out
    page.wait_for_url(url + "/login")
    assert not errors, errors
    page.close()


def test_a_wrong_password_is_refused_in_the_page(browser, halld_url):
    url, _ = halld_url
    page = browser.new_page()
    page.goto(url + "/login")
    page.fill("input[name=name]", "admin1")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "错误" in page.locator(".error").inner_text()
    page.close()


def _utc(day: str) -> float:
    return (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days * 86400 - 8 * 3600


@pytest.mark.parametrize("family", list(reports.FAMILIES))
def test_every_report_draws_its_charts_and_its_total_equals_sql(browser, halld_url, family):
    url, db = halld_url
    page, errors = _login(browser, url, "admin1")
    page.goto(f"{url}/reports/{family}?from=2025-03-01&to=2025-05-31")
    for chart in ("#chart-a", "#chart-b"):
        page.wait_for_selector(f"{chart}[data-drawn]", timeout=15000)
        assert page.locator(f"{chart} canvas").count() >= 1
    d = connect(db, schema=False)
    lo, hi = _utc("2025-03-01"), _utc("2025-06-01")  # local midnights in Asia/Shanghai (UTC+8)
    if family == "monthly":  # May against April
        lo = _utc("2025-05-01")
    extra = " AND service IN ('topup', 'bill_pay')" if family in ("prepaid", "brackets") else ""
    extra += " AND amount_fen > 0" if family == "brackets" else ""
    count, fen = d.one("SELECT COUNT(*), COALESCE(SUM(amount_fen), 0) FROM txns WHERE state = 'done'"
                       f" AND finished_at >= ? AND finished_at < ?{extra}", (lo, hi))
    d.close()
    cell = page.locator("#table-1 tfoot [data-total=amount_fen]").inner_text()
    assert cell == f"{fen // 100}.{fen % 100:02d}", (family, cell)
    if family != "monthly":
        assert page.locator("#table-1 tfoot [data-total=count]").inner_text() == str(count)
    if family in ("daily", "monthly"):  # a kiosk named <script>x</script> is text in the table, not a script
        assert page.locator("#table-1 td", has_text="<script>x</script>").count() >= 1
        assert page.evaluate("document.querySelectorAll('table script').length") == 0
    assert not errors, errors
    page.close()

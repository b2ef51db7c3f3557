"""Fixtures for the customer's screen: bosssim, a simulated kioskd serving the UI, Debian's Chromium."""
from __future__ import annotations

import asyncio
import threading

import pytest

from tests.e2e.conftest import BossSim
from tests.ui.kiosk import SimKiosk

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def bosssim(tmp_path_factory):
    boss = BossSim(tmp_path_factory.mktemp("boss") / "boss.db")
    # in a thread of its own: Playwright's sync API keeps an event loop running in the main thread
    starter = threading.Thread(target=lambda: asyncio.run(boss.start()))
    starter.start()
    starter.join()
    assert boss.url, "bosssim did not start"
    yield boss
    boss.stop()


@pytest.fixture
def kiosk(tmp_path, broker, bosssim):
    k = SimKiosk(tmp_path, broker.port, bosssim.url, notices=["今日营业至 18:00 / Open until 18:00 today"])
    k.start()
    yield k
    assert k.stop() == 0, k.log()[-3000:]


@pytest.fixture(scope="module")
def browser():
    """Per module: while it lives, Playwright's loop runs in the main thread (no asyncio.run there)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, kiosk):
    """A touch screen at 1280x800 on the kiosk's home screen, closed after the test."""
    from tests.ui.test_page import WAIT_MS, on

    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    p.goto(kiosk.url)
    on(p, "home")
    yield p
    context.close()

"""Coin in -> the customer's screen shows the new total, beside device event -> flow decision, same run.

    python bench/ui.py [--coins 300]

kioskd's own wiring (controller/kiosk.py, ``kioskd --simulate``: ccTalk drivers on ptys against
the emulators, the journal on disk with synchronous=FULL, the screen server) runs in this
process's main thread and loop; headless Chromium (Debian's, driven by Playwright from a second
thread) shows the page. A card sale of 30 yuan is paid with ``--coins`` 1-jiao coins, one at a
time: each coin is dropped through the coin emulator's control socket and the next only once the
page shows the total. Per coin, on one wall clock (this process and Chromium on one machine):

- insert -> driver event: the control call to the driver yielding ``CoinAccepted`` to the flow
  (the driver's poll period, ``--poll-ms``, is most of it: that is the device, not the screen);
- driver event -> flow decision: to the flow showing ``paid_so_far``, which it does after the
  coin's cash-in row is committed (fsync'd) — the baseline the screen adds to;
- driver event -> page shows it: to a MutationObserver in the page seeing the new total in the DOM;
- driver event -> frame painted: to the end of the first frame drawn with it (requestAnimationFrame,
  then a posted message: it runs after that frame's style, layout and paint), what the eye gets;
- so the screen's own share: page shows it - flow decision;
- kioskd's push per snapshot: the snapshot built, encoded once, written to each page's socket;
- and, in the page, its script per snapshot (JSON, render, DOM update) and the style and layout
  each new total needs (0.1 ms clock): the screen's own work, whatever else the machine runs.

Goal (issue 10): coin event -> page p99 under 100 ms on the CI machine. With ccTalk's recommended
200 ms poll the insert alone waits up to a poll period, so the goal is read from the driver's
event; ``--poll-ms 20`` shows insert -> page with a fast poll. Prints numbers; never fails.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config import load  # noqa: E402
from controller.kiosk import Kiosk  # noqa: E402
from controller.screen import ScreenCustomer  # noqa: E402
from controller.ui.server import UiServer  # noqa: E402
from hal.cash import CoinAccepted  # noqa: E402
from hal.cctalk.acceptor import CcTalkAcceptor  # noqa: E402
from hal.emulators.control import call_sync  # noqa: E402
from hall.broker import free_port  # noqa: E402
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.ui.kiosk import write_config  # noqa: E402

event_at: list[float] = []  # driver -> flow, per coin
decided_at: list[float] = []  # flow shows paid_so_far, per coin
pushes: list[float] = []  # kioskd's push per snapshot (ms): snapshot, JSON once, written to each page

_events = CcTalkAcceptor.events
_show = ScreenCustomer.show
_push = UiServer._push


async def _timed_events(self):  # the driver handing a coin to the flow
    async for event in _events(self):
        if isinstance(event, CoinAccepted):
            event_at.append(time.time())
        yield event


def _timed_push(self):
    t = time.perf_counter()
    _push(self)
    pushes.append((time.perf_counter() - t) * 1000)


def _timed_show(self, key, **fmt):
    if key == "paid_so_far":
        decided_at.append(time.time())
    _show(self, key, **fmt)


# Per total: when the DOM shows it (a MutationObserver, at once) and when a frame with it has been
# painted (the next requestAnimationFrame, then a message posted from it, which runs once that
# frame's style, layout and paint are done). The bench waits on a promise the observer resolves:
# no polling in the page (wait_for_function would run a predicate on every frame).
WATCH = """() => { window.paidAt = []; window.paintedAt = []; window.want = null;
  const now = () => performance.timeOrigin + performance.now();
  const painted = new MessageChannel();
  painted.port1.onmessage = (e) => { window.paintedAt.push([e.data, now()]);
    if (window.want && window.want[0] === e.data) { window.want[1](); window.want = null; } };
  new MutationObserver(() => {
    const b = document.querySelector('[data-amount=paid]');
    if (b && b.textContent !== window.lastPaid) { const y = window.lastPaid = b.textContent;
      window.paidAt.push([y, now()]); requestAnimationFrame(() => painted.port2.postMessage(y));
      const t = performance.now(); document.body.offsetHeight; window.layout.push(performance.now() - t); }
  }).observe(document.getElementById('app'), {childList: true, subtree: true, characterData: true});
  // the page's own work per snapshot: its script (parse, render, DOM update; the socket's handler
  // wrapped), and per new total the style and layout it needs (forced once the total is taken)
  window.script = []; window.layout = []; const handler = ui.ws.onmessage;
  ui.ws.onmessage = (ev) => { const t0 = performance.now(); handler(ev); window.script.push(performance.now() - t0); };
  window.shown = (y) => window.paintedAt.some(([v]) => v === y) || new Promise((r) => { window.want = [y, r]; });
}"""


def customer(url: str, coin_sock: str, coins: int, out: dict, kiosk_ready: threading.Event) -> None:
    from playwright.sync_api import sync_playwright

    kiosk_ready.wait(60)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(30000)
        page.goto(url)
        page.wait_for_selector(".tile:not(.off)")
        page.get_by_role("button", name="充值卡销售", exact=True).click()
        page.get_by_role("button", name="30 元充值卡", exact=True).click()
        page.wait_for_selector('main[data-screen="cash"]')
        while not call_sync(coin_sock, "state")["coin"]["master_enabled"]:
            time.sleep(0.01)
        page.evaluate(WATCH)
        inserted = []
        for i in range(1, coins):  # the last coin pays in full: the flow moves on to the dispenser
            inserted.append(time.time())
            call_sync(coin_sock, "insert_coin", value=10)
            page.evaluate("y => window.shown(y)", f"{i * 10 // 100}.{i * 10 % 100:02d} 元")
        out["inserted"] = inserted
        out["page"] = [t / 1000 for _, t in page.evaluate("window.paidAt")]
        out["painted"] = [t / 1000 for _, t in page.evaluate("window.paintedAt")]
        out["script"], out["layout"] = page.evaluate("[window.script, window.layout]")
        page.get_by_role("button", name="取消", exact=True).click()
        page.wait_for_selector('main[data-screen="result"]')
        browser.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def line(name: str, ms: list[float]) -> str:
    return (f"  {name:<34} p50 {statistics.median(ms):6.1f} ms   p99 {pct(ms, 0.99):6.1f} ms   "
            f"max {max(ms):6.1f} ms   (n={len(ms)})")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coins", type=int, default=300, help="1-jiao coins for a 30-yuan card (<= 300)")
    parser.add_argument("--poll-ms", type=int, default=200,
                        help="the coin acceptor's poll period (ccTalk §1.5 recommends 200 ms, simulated.toml's)")
    args = parser.parse_args()
    coins = min(args.coins, 300)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    CcTalkAcceptor.events = _timed_events
    ScreenCustomer.show = _timed_show
    UiServer._push = _timed_push
    try:
        port = free_port()
        path = write_config(tmp, mqtt_port=1, ui_port=port, kiosk_id="BENCH-UI",
                            flows={"idle_timeout": 600.0, "card_prices": {"3000": 3000}})
        import tomlkit

        doc = tomlkit.parse(path.read_text())
        doc["devices"]["coin"]["poll_interval_ms"] = args.poll_ms
        path.write_text(tomlkit.dumps(doc))
        kiosk = Kiosk(load(path, simulate=True))
        out: dict = {}
        ready = threading.Event()
        runner = asyncio.create_task(kiosk.run())
        while kiosk.state not in ("ready", "degraded"):
            if runner.done():
                raise SystemExit(f"kioskd did not start: {runner.exception()!r}")
            await asyncio.sleep(0.05)
        ready.set()
        thread = threading.Thread(target=customer, args=(f"http://127.0.0.1:{port}/", str(tmp / "run" / "emu-cctalk.sock"),
                                                         coins, out, ready))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.05)
        kiosk.stop_requested.set()
        await runner
    finally:
        CcTalkAcceptor.events = _events
        ScreenCustomer.show = _show
        UiServer._push = _push
        shutil.rmtree(tmp, ignore_errors=True)
    n = min(len(out.get("inserted", [])), len(event_at), len(decided_at), len(out.get("page", [])),
            len(out.get("painted", [])))
    if n == 0:
        raise SystemExit("no coin measured")
    ins, ev, dec, pg, pt = out["inserted"][:n], event_at[:n], decided_at[:n], out["page"][:n], out["painted"][:n]
    ms = lambda a, b: [(y - x) * 1000 for x, y in zip(a, b)]  # noqa: E731
    load_after = os.getloadavg()
    print(f"bench/ui.py: {n} coins, 1 jiao each, into a 30-yuan card sale; coin polled every {args.poll_ms} ms; "
          "headless Chromium 1280x800")
    print(f"  machine load (1/5/15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} cores")
    print(line("insert -> driver event", ms(ins, ev)))
    print(line("driver event -> flow decision", ms(ev, dec)))
    print(line("driver event -> page shows total", ms(ev, pg)))
    print(line("driver event -> frame painted", ms(ev, pt)))
    print(line("screen's share (page - decision)", ms(dec, pg)))
    print(line("page -> frame painted", ms(pg, pt)))
    total = ms(ins, pg)
    print(line("insert -> page shows total", total))
    print(line("kioskd's push per snapshot", pushes))
    print(line("page's script per snapshot", out["script"]))
    print(line("page's style+layout per total", out["layout"]))
    screen = ms(ev, pg)
    print(f"  goal: coin event -> page p99 < 100 ms: {'met' if pct(screen, 0.99) < 100 else 'NOT met'} "
          f"({pct(screen, 0.99):.1f} ms; to the painted frame {pct(ms(ev, pt), 0.99):.1f} ms); insert -> page p99 {pct(total, 0.99):.1f} ms, of which the poll period "
          f"{args.poll_ms} ms; ratio page/decision from the coin event p50 "
          f"{statistics.median(screen) / statistics.median(ms(ev, dec)):.2f}")
    print("  (insert -> driver event sits near one poll period: each coin goes in just after the poll that "
          "reported the previous one)")


if __name__ == "__main__":
    asyncio.run(main())

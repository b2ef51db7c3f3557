"""Screenshots of the hall console for docs/hall/: `python -m tests.hall_web.screens docs/hall`.

A real Mosquitto and `halld serve` on a temporary database seeded like tests/hall_web/test_reports.py."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hall.broker import free_port, start_broker
from hall.db import connect
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

from .test_reports import _rows

RANGE = "from=2025-03-01&to=2025-05-15"
FAMILIES = ["daily", "profile", "monthly", "prepaid", "services", "brackets"]
PAGES = [("login", "/login", False), ("fleet", "/", True),
         *[(f"report-{f}", f"/reports/{f}?{RANGE}", True) for f in FAMILIES],
         ("audit", "/audit", True), ("users", "/users", True), ("kiosk", "/kiosks/K1", True),
         # the English toggle (?lang=en, then kept in a cookie)
         *[(f"report-{f}-en", f"/reports/{f}?{RANGE}&lang=en", True) for f in FAMILIES]]


def _seed_kiosk(d) -> None:
    """K1 as if it had reported: a birth with telemetry, a few events, commands answered, a cash count."""
    import json

    now = time.time()
    status = {"online": True, "cash_inhibited": True, "disabled_services": ["bill_pay"]}
    d.execute("INSERT INTO fleet (hall, kiosk, online, session, last_seen, state, version, outbox_depth, alarms, devices,"
              " cashbox_fen, cashbox, card_stock, hopper_fen, status, status_at) VALUES"
              " ('H1', 'K1', 1, 3, ?, 'ready', '0.9.0', 0, '[]', ?, 184500, ?, ?, 12000, ?, ?)",
              (now - 40, json.dumps({"bill": "ok", "coin": "ok", "printer": "paper_low", "card_reader": "ok"}),
               json.dumps({"fen": 184500, "notes": 41}), json.dumps({"3000": 38, "5000": 12}), json.dumps(status), now))
    events = [("fault", "printer", "paper_low", "纸将用完 / paper low"), ("fault", "bill", "jam", "卡币 <b>jam</b> cleared"),
              ("door", "cashbox", "opened", "钱箱门打开"), ("boot", None, None, "kioskd 0.9.0")]
    for i, (kind, device, code, detail) in enumerate(events, 1):
        d.execute("INSERT INTO events (hall, kiosk, msg_seq, kind, device, code, detail, txn, at, received_at, payload)"
                  " VALUES ('H1', 'K1', ?, ?, ?, ?, ?, NULL, ?, ?, '{}')", (i, kind, device, code, detail,
                                                                         now - 3600 * i, now - 3600 * i))
    for i, (name, args) in enumerate([("inhibit_cash", {"inhibit": True}), ("disable_service", {"service": "bill_pay"})]):
        d.execute("INSERT INTO commands (id, hall, kiosk, name, args, sent_at, answered_at, ok, reply) VALUES"
                  " (?, 'H1', 'K1', ?, ?, ?, ?, 1, '{\"ok\": true}')", (f"demo-{i}", name, json.dumps(args),
                                                                     now - 600 + i, now - 599 + i))
    d.execute("INSERT INTO cash_counts (hall, kiosk, at, who, kiosk_fen, counted_fen, diff_fen, note) VALUES"
              " ('H1', 'K1', ?, 'zhang.wei', 250000, 249000, -1000, '一张100元假币 / one forged 100 note')",
              (now - 86400 * 3,))


def main(out: str) -> None:
    from playwright.sync_api import sync_playwright

    Path(out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(Path(tmp) / "mosquitto")
        db = str(Path(tmp) / "hall.db")
        d = connect(db)
        d.executemany("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at,"
                      " received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _rows())
        from hall import cashcount, rollups

        with d.transaction():  # inserted here, not by the writer: the rollups by the writer's own SQL
            rollups.rebuild(d, 8 * 3600)
        from hall import web

        from . import screens_backoffice

        web.prepare(d)  # the console's tables (cash counts, the back office's)
        _seed_kiosk(d)
        bosssim = subprocess.Popen([sys.executable, "-m", "bosssim", "--port", "0", "--db", str(Path(tmp) / "boss.db")],
                                   stdout=subprocess.PIPE, text=True)
        boss_url = bosssim.stdout.readline().split()[-1]
        screens_backoffice.seed(d, boss_url)
        d.close()
        subprocess.run([sys.executable, "-m", "hall.halld", "user", "add", "zhang.wei", "--role", "admin",
                        "--password-stdin", "--db", db], input="console demo 1\n", text=True, check=True)
        port = free_port()
        log = Path(tmp) / "halld.log"
        proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port),
                                 "--http", f"127.0.0.1:{port}", "--boss", boss_url], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                env={**os.environ, "TZ": "Asia/Shanghai"})
        try:
            while "listening" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = b.new_page(viewport={"width": 1440, "height": 900})
                for name, path, logged_in in PAGES + screens_backoffice.PAGES:
                    if logged_in and page.url.endswith("/login"):
                        page.fill("input[name=name]", "zhang.wei")
                        page.fill("input[name=password]", "console demo 1")
                        page.click("button[type=submit]")
                        page.wait_for_url(url + "/")
                    page.goto(url + path)
                    if "/reports/" in path:
                        page.wait_for_selector("#chart-b[data-drawn]")
                    page.screenshot(path=str(Path(out) / f"{name}.png"), full_page=False)
                b.close()
        finally:
            proc.terminate()
            proc.wait(10)
            bosssim.terminate()
            bosssim.wait(10)
            broker.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/hall")

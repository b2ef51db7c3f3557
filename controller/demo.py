"""The simulated kiosk with its hall, on one machine: mosquitto, halld and kioskd --simulate.

`./dev demo` runs this. It starts everything on free loopback ports under ./var/demo, lets a
scripted customer use the kiosk, and shows what reaches the hall. Ctrl-C stops it all;
``--once`` runs the script once and exits (used by the tests).
"""
from __future__ import annotations

import argparse
import shutil
import urllib.request
import subprocess
import sys
import time
from pathlib import Path

from hal.emulators.control import call_sync
from hall.broker import free_port, start_broker
from hall.halld import fleet, transactions
from transactions.messages import yuan

ROOT = Path.cwd()


def wait_until(what: str, check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not happen within {timeout} s (see var/demo/*.log)")
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url + "/control/ledger", timeout=1) as response:
        return response.status == 200


def spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=cwd)


class ScriptedVisit:
    """A customer at the screen, through kioskd's local API, as the kiosk's touch UI would be."""

    def __init__(self, sock: str) -> None:
        self.sock = sock

    def bus(self) -> dict:
        return call_sync(self.sock, "emu", name="cctalk", emu_cmd="state")

    def insert_bill(self, fen: int) -> None:
        """Like a person: wait until the validator takes notes, feed one, wait until it is stacked."""
        wait_until("the bill validator accepting", lambda: self.bus()["bill"]["master_enabled"]
                   and self.bus()["bill"]["inhibit_mask"] != 0, timeout=10)
        before = self.bus()["bills_stacked_fen"]
        call_sync(self.sock, "emu", name="cctalk", emu_cmd="insert_bill", value=fen)
        wait_until("the bill being stacked", lambda: self.bus()["bills_stacked_fen"] > before, timeout=10)

    def run(self, service: str, answers: dict[str, str], on_screen: dict[str, list[tuple[str, str, dict]]]) -> dict:
        visit = call_sync(self.sock, "begin", service=service)
        done_shows: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = call_sync(self.sock, "screen")
            if not screen["busy"] and screen["visit"] == visit and screen["last"]:
                return screen["last"]
            for shown in screen["shown"]:
                key = shown["key"]
                if key in on_screen and key not in done_shows:
                    done_shows.add(key)
                    print(f"  屏幕 screen: {shown['words']['zh']} / {shown['words']['en']}")
                    for emulator, cmd, args in on_screen[key]:
                        if cmd == "insert_bill":
                            self.insert_bill(args["value"])
                        else:
                            call_sync(self.sock, "emu", name=emulator, emu_cmd=cmd, **args)
                        print(f"  顾客 customer: {cmd} {args}")
            question = screen.get("question")
            if question and question["prompt"] in answers:
                print(f"  屏幕 screen: {question['words']['zh']}  → {answers[question['prompt']]}")
                call_sync(self.sock, "answer", value=answers[question["prompt"]], n=question["n"])
            time.sleep(0.05)
        raise SystemExit(f"demo: the {service} visit did not finish within 60 s (see var/demo/kioskd.log)")


def customer_script(sock: str) -> None:
    visit = ScriptedVisit(sock)
    print("\n== 空中充值 top-up: 13800138000, 50 元 with 20+20+10 bills ==")
    result = visit.run("topup", {"enter_phone": "13800138000", "choose_amount": "5000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")
    print("\n== 充值卡销售 card sale: 30 元 card, paid with a 20 and a 10 ==")
    result = visit.run("card_sale", {"choose_card": "3000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})],
                        "take_card": [("crt571", "take_card", {})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


def show_hall(db: str) -> None:
    print("\n== 营业厅 / the hall sees ==")
    for row in fleet(db):
        print(f"  {row['hall']}/{row['kiosk']}: {'在线 online' if row['online'] else '离线 offline'}, boot session {row['session']}")
    for t in reversed(transactions(db, 10)):
        print(f"  交易 txn #{t.get('seq')} {t.get('service'):<10} {t.get('state'):<8} "
              f"金额 amount {yuan(t.get('amount_fen') or 0)} 元  cash in {yuan(t.get('cash_in') or 0)}  {t.get('txn')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--once", action="store_true", help="run the scripted customer once and exit")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "demo")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    broker = start_broker(work / "mosquitto")
    procs: list[subprocess.Popen] = []
    try:
        db = str(work / "hall.db")
        procs.append(spawn(["-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port)], work / "halld.log", work))
        wait_until("halld subscribed", lambda: "listening" in (work / "halld.log").read_text())
        boss_port = free_port()
        procs.append(spawn(["-m", "bosssim", "--port", str(boss_port), "--db", str(work / "boss.db")], work / "bosssim.log", work))
        boss_url = f"http://127.0.0.1:{boss_port}"
        wait_until("bosssim answering", lambda: _http_ok(boss_url))
        procs.append(spawn(["-m", "controller", "--simulate", "--mqtt-port", str(broker.port), "--boss-url", boss_url],
                           work / "kioskd.log", work))
        sock = str(work / "var" / "sim" / "run" / "kioskd.sock")  # simulated.toml's paths are relative
        wait_until("kioskd ready", lambda: call_sync(sock, "status")["state"] in ("ready", "degraded"))
        status = call_sync(sock, "status")
        print(f"kioskd {status['kiosk']} is {status['state']} with {len(status['devices'])} simulated devices; "
              f"broker on 127.0.0.1:{broker.port}")
        wait_until("the kiosk's birth reaching the hall", lambda: any(r["online"] for r in fleet(db)))
        customer_script(sock)
        wait_until("both transactions reaching the hall", lambda: len(transactions(db)) >= 2)
        wait_until("the hall's ack emptying the kiosk's outbox", lambda: call_sync(sock, "status")["outbox"] == 0)
        show_hall(db)
        if args.once:
            return 0
        print(f"\nRunning. kioskctl --socket {sock} status  |  Ctrl-C to stop.")
        while True:
            time.sleep(10)
            show_hall(db)
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())

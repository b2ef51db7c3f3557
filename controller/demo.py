"""Two simulated kiosks with their hall, on one machine, over TLS: mosquitto, halld, bosssim, kioskd.

`./dev demo` runs this. Under ./var/demo it mints a fleet CA and certificates, starts the secure
hall broker (TLS only, a client certificate per kiosk, per-kiosk ACLs), bosssim, halld (the BOSS
gateway) and two `kioskd --simulate`; scripted customers do a top-up (its BOSS credit travels
kiosk → hall → BOSS) and a card sale, hall staff send a command, and it shows what the hall holds. Ctrl-C stops it all;
``--once`` runs the script once and exits (used by the tests).
"""
from __future__ import annotations

import argparse
import json
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

from .daemon import SIMULATED_CONFIG

ROOT = Path.cwd()
HALL = "DEMO-HALL"
KIOSKS = ["SIM-0001", "SIM-0002"]


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


def topup(sock: str) -> None:
    visit = ScriptedVisit(sock)
    print("\n== 空中充值 top-up: 13800138000, 50 元 with 20+20+10 bills (BOSS credit through the hall) ==")
    result = visit.run("topup", {"enter_phone": "13800138000", "choose_amount": "5000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


def card_sale(sock: str) -> None:
    visit = ScriptedVisit(sock)
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
        print(f"  交易 txn {t.get('kiosk')} #{t.get('seq')} {t.get('service'):<10} {t.get('state'):<8} "
              f"金额 amount {yuan(t.get('amount_fen') or 0)} 元  cash in {yuan(t.get('cash_in') or 0)}  {t.get('txn')}")


def kiosk_config(work: Path, kiosk: str, broker_port: int, certs: dict[str, Path]) -> Path:
    """simulated.toml for one demo kiosk: its own id, state and sockets; TLS to the hall broker;
    no [boss] url, so BOSS calls go through the hall."""
    import tomlkit

    doc = tomlkit.parse(SIMULATED_CONFIG.read_text())
    doc["kiosk"]["id"] = kiosk
    doc["kiosk"]["state_dir"] = str(work / kiosk / "state")
    doc["kiosk"]["runtime_dir"] = str(work / kiosk / "run")
    doc["mqtt"]["port"] = broker_port
    doc["mqtt"]["ca_file"] = str(certs["ca"])
    doc["mqtt"]["cert_file"] = str(certs[f"{kiosk}.crt"])
    doc["mqtt"]["key_file"] = str(certs[f"{kiosk}.key"])
    doc.get("boss", {}).pop("url", None)
    path = work / f"{kiosk}.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


def mint(work: Path, kiosks: list[str]) -> tuple[object, object, dict[str, Path]]:
    """A fleet CA, the broker's server certificate, halld's and one per kiosk (CN = kiosk id)."""
    from provisioning.certs import HALLD_CN, mint_ca, mint_client, mint_server

    d = work / "pki"
    d.mkdir()
    ca = mint_ca(d)
    server = mint_server(ca, d, ["localhost", "127.0.0.1"])
    paths: dict[str, Path] = {"ca": ca.cert_path}
    for cn in (HALLD_CN, *kiosks):
        issued = mint_client(ca, d, cn)
        paths[f"{cn}.crt"], paths[f"{cn}.key"] = issued.cert_path, issued.key_path
    return ca, server, paths


def main(argv: list[str] | None = None) -> int:
    from hall.mosquitto_secure import start_secure_broker
    from provisioning.certs import HALLD_CN

    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--once", action="store_true", help="run the scripted customers once and exit")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "demo")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ca, server, certs = mint(work, KIOSKS)
    broker = start_secure_broker(work / "mosquitto", ca, server, {HALL: KIOSKS})
    procs: list[subprocess.Popen] = []
    try:
        boss_port, api_port = free_port(), free_port()
        procs.append(spawn(["-m", "bosssim", "--port", str(boss_port), "--db", str(work / "boss.db")], work / "bosssim.log", work))
        boss_url = f"http://127.0.0.1:{boss_port}"
        wait_until("bosssim answering", lambda: _http_ok(boss_url))
        db = str(work / "hall.db")
        api = f"http://127.0.0.1:{api_port}"
        procs.append(spawn(["-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port), "--hall", HALL,
                            "--boss", boss_url, "--http", f"127.0.0.1:{api_port}", "--ca", str(certs["ca"]),
                            "--cert", str(certs[f"{HALLD_CN}.crt"]), "--key", str(certs[f"{HALLD_CN}.key"])],
                           work / "halld.log", work))
        wait_until("halld subscribed", lambda: "listening" in (work / "halld.log").read_text())
        socks = {}
        for kiosk in KIOSKS:
            config = kiosk_config(work, kiosk, broker.port, certs)
            procs.append(spawn(["-m", "controller", "--simulate", "--config", str(config)], work / f"{kiosk}.log", work))
            socks[kiosk] = str(work / kiosk / "run" / "kioskd.sock")
        for kiosk, sock in socks.items():
            wait_until(f"{kiosk} ready", lambda: call_sync(sock, "status")["state"] in ("ready", "degraded"))
            status = call_sync(sock, "status")
            print(f"kioskd {kiosk} is {status['state']} with {len(status['devices'])} simulated devices")
        print(f"hall broker: mqtts://127.0.0.1:{broker.port} (fleet CA, a certificate per kiosk); "
              f"halld API {api}; BOSS (bosssim) {boss_url}, reached by the kiosks through the hall")
        wait_until("both kiosks' births reaching the hall", lambda: sum(r["online"] for r in fleet(db)) == len(KIOSKS))
        print(f"\n--- {KIOSKS[0]} ---")
        topup(socks[KIOSKS[0]])
        print(f"\n--- {KIOSKS[1]} ---")
        card_sale(socks[KIOSKS[1]])
        wait_until("both transactions reaching the hall", lambda: len(transactions(db)) >= 2)
        for kiosk, sock in socks.items():
            wait_until(f"the hall's ack emptying {kiosk}'s outbox", lambda: call_sync(sock, "status")["outbox"] == 0)
        show_hall(db)
        print(f"\n== 远程命令 a command from the hall: {KIOSKS[0]} request_telemetry ==")
        reply = hall_command(api, KIOSKS[0], "request_telemetry")
        print(f"  → ok={reply.get('ok')} {json.dumps(reply.get('result', reply), ensure_ascii=False)[:160]}")
        if args.once:
            return 0
        print(f"\nRunning. kioskctl --socket {socks[KIOSKS[0]]} status  |  halld fleet --db {db}  |  Ctrl-C to stop.")
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


def hall_command(api: str, kiosk: str, name: str, args: dict | None = None) -> dict:
    """What hall staff do from the fleet view: POST a command, halld relays it and waits for the reply."""
    request = urllib.request.Request(f"{api}/api/kiosks/{kiosk}/cmd/{name}", method="POST",
                                     data=json.dumps({"args": args or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    sys.exit(main())

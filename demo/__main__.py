"""Two simulated kiosks with their hall, on one machine, over TLS: mosquitto, halld, bosssim, kioskd.

`./dev demo` runs this (`python -m demo`). Under ./var/demo (wiped at every start) it mints a fleet
CA and certificates, starts the secure hall broker (TLS only, a client certificate per kiosk,
per-kiosk ACLs), bosssim, halld (the BOSS gateway) and two `kioskd --simulate`; scripted customers
do a top-up (its BOSS credit travels kiosk → hall → BOSS), a card sale and a new number (ID card,
photo, a blank SIM written over PC/SC; its BOSS calls go through the hall too), hall staff send a
command, and it shows what the hall holds. The hall database starts with four weeks of four other
kiosks' business (demo/history.py) for the console's reports; the console's URL and a demo admin
login are printed once halld is up. ``--once`` runs the script once and exits (used by the
tests). The demo sits above controller/ and hall/: it runs both, and neither imports the other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from controller.config import load
from controller.daemon import SIMULATED_CONFIG
from hal.emulators.control import call_sync
from hall.broker import free_port
from hall.halld import fleet, transactions
from transactions.messages import yuan

from . import history
from .customers import ScriptedVisit, card_sale, new_number, save_receipts, topup
from .processes import Children, Signals, Stop, lock, wait_until, wipe

ROOT = Path.cwd()
HALL = "DEMO-HALL"
KIOSKS = ["SIM-0001", "SIM-0002"]
def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url + "/control/ledger", timeout=1) as response:
        return response.status == 200


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
    doc["ui"] = {"listen": f"127.0.0.1:{free_port()}"}  # each kiosk's touch screen on a port of its own (docs/ui.md)
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
    parser = argparse.ArgumentParser(
        prog="demo", description="Two simulated kiosks with their hall over TLS (./dev demo). "
        "SIGTERM, SIGINT or SIGHUP stops every process it started; a failed kioskd is restarted as "
        "systemd's Restart=on-failure would.")
    parser.add_argument("--once", action="store_true", help="run the scripted customers once and exit")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "demo",
                        help="where certificates, databases and logs go; wiped at every start (default var/demo)")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    signals = Signals()
    lock_fd = lock(work)
    children = Children(work, lock_fd, signals)
    try:
        return run(args, work, children)
    except Stop as stop:
        print(f"\ndemo: {stop}", flush=True)
        return stop.code
    finally:
        children.stop()


def run(args: argparse.Namespace, work: Path, children: Children) -> int:
    from hall.mosquitto_secure import start_secure_broker
    from provisioning.certs import HALLD_CN

    wipe(work)
    ca, server, certs = mint(work, KIOSKS)
    broker = start_secure_broker(work / "mosquitto", ca, server, {HALL: KIOSKS})
    children.watch("mosquitto", broker.proc)
    boss_port, api_port = free_port(), free_port()
    children.spawn("bosssim", ["-m", "bosssim", "--port", str(boss_port), "--db", str(work / "boss.db")], work / "bosssim.log")
    boss_url = f"http://127.0.0.1:{boss_port}"
    wait_until("bosssim answering", lambda: _http_ok(boss_url), children)
    db = str(work / "hall.db")
    api = f"http://127.0.0.1:{api_port}"
    token = demo_staff(db)
    seeded = history.seed(db, HALL)
    print(f"hall history: {seeded['done']} transactions done by {seeded['kiosks']} other kiosks of {HALL} over the last"
          f" {seeded['days']} days ({seeded['records']} records stored through halld's store, demo/history.py)")
    children.spawn("halld", ["-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port), "--hall", HALL,
                             "--boss", boss_url, "--http", f"127.0.0.1:{api_port}", "--ca", str(certs["ca"]),
                             "--cert", str(certs[f"{HALLD_CN}.crt"]), "--key", str(certs[f"{HALLD_CN}.key"])],
                   work / "halld.log")
    wait_until("halld subscribed", lambda: "listening" in (work / "halld.log").read_text(), children)
    print(f"hall console: {api}/  login {DEMO_USER} / {DEMO_PASSWORD} (admin; more staff: halld user add NAME"
          f" --role ROLE --db {db})", flush=True)
    socks = {}
    for kiosk in KIOSKS:
        config = kiosk_config(work, kiosk, broker.port, certs)
        children.spawn(f"kioskd {kiosk}", ["-m", "controller", "--simulate", "--config", str(config)],
                       work / f"{kiosk}.log", supervise=True)
        socks[kiosk] = str(work / kiosk / "run" / "kioskd.sock")
    for kiosk, sock in socks.items():
        wait_until(f"{kiosk} ready", lambda: call_sync(sock, "status")["state"] in ("ready", "degraded"), children)
        status = call_sync(sock, "status")
        print(f"kioskd {kiosk} is {status['state']} with {len(status['devices'])} simulated devices; "
              f"its screen: http://{load(work / f'{kiosk}.toml').ui.listen}/")
    print(f"hall broker: mqtts://127.0.0.1:{broker.port} (fleet CA, a certificate per kiosk); "
          f"halld API {api}; BOSS (bosssim) {boss_url}, reached by the kiosks through the hall")
    wait_until("both kiosks' births reaching the hall", lambda: sum(r["online"] for r in fleet(db)) == len(KIOSKS), children)
    print(f"\n--- {KIOSKS[0]} ---")
    topup(ScriptedVisit(socks[KIOSKS[0]], children))
    print(f"\n--- {KIOSKS[1]} ---")
    card_sale(ScriptedVisit(socks[KIOSKS[1]], children))
    new_number(ScriptedVisit(socks[KIOSKS[1]], children))
    save_receipts(work, socks)
    wait_until("the three transactions reaching the hall",
               lambda: sum(t["kiosk"] in KIOSKS for t in transactions(db)) >= 3, children)
    for kiosk, sock in socks.items():
        wait_until(f"the hall's ack emptying {kiosk}'s outbox", lambda: call_sync(sock, "status")["outbox"] == 0, children)
    show_hall(db)
    print(f"\n== 远程命令 a command from the hall: {KIOSKS[0]} request_telemetry ==")
    reply = hall_command(api, token, KIOSKS[0], "request_telemetry")
    print(f"  → ok={reply.get('ok')} {json.dumps(reply.get('result', reply), ensure_ascii=False)[:160]}")
    if args.once:
        return 0
    print(f"\n== 营业厅控制台 hall console: {api}/  login {DEMO_USER} / {DEMO_PASSWORD} (admin) ==")
    print(f"\nRunning. kioskctl --socket {socks[KIOSKS[0]]} status  |  halld fleet --db {db}  |  "
          f"HALLD_TOKEN={token} halld cmd SIM-0002 restart --api {api}  |  Ctrl-C to stop.", flush=True)
    while True:
        next_show = time.monotonic() + 10
        while time.monotonic() < next_show:
            children.wait(next_show - time.monotonic())
        show_hall(db)


DEMO_USER, DEMO_PASSWORD = "demo", "demo-hall-1"


def demo_staff(db: str) -> str:
    """The demo's admin login for the console, and an API token for its own commands."""
    halld = [sys.executable, "-m", "hall.halld", "user"]
    subprocess.run([*halld, "add", DEMO_USER, "--role", "admin", "--password-stdin", "--db", db],
                   input=DEMO_PASSWORD + "\n", text=True, check=True, capture_output=True)
    return subprocess.run([*halld, "token", DEMO_USER, "--label", "demo", "--db", db], text=True, check=True,
                          capture_output=True).stdout.strip()


def hall_command(api: str, token: str, kiosk: str, name: str, args: dict | None = None) -> dict:
    """What hall staff do from the fleet view: POST a command, halld relays it and waits for the reply."""
    request = urllib.request.Request(f"{api}/api/kiosks/{kiosk}/cmd/{name}", method="POST",
                                     data=json.dumps({"args": args or {}}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    sys.exit(main())

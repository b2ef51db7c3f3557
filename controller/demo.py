"""Two simulated kiosks with their hall, on one machine, over TLS: mosquitto, halld, bosssim, kioskd.

`./dev demo` runs this. Under ./var/demo (wiped at every start) it mints a fleet CA and
certificates, starts the secure hall broker (TLS only, a client certificate per kiosk, per-kiosk
ACLs), bosssim, halld (the BOSS gateway) and two `kioskd --simulate`; scripted customers do a
top-up (its BOSS credit travels kiosk → hall → BOSS) and a card sale, hall staff send a command,
and it shows what the hall holds. ``--once`` runs the script once and exits (used by the tests).

Lifecycle: the demo owns its children. SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops every one of them
(kiosks first, so they drain while the hall still listens), and so does the death of any child
the demo cannot bring back. The kiosks are supervised as systemd's `Restart=on-failure` would
(systemd/kioskd.service): a kioskd that exits non-zero or is killed — the hall's `restart`
command exits 75 — is started again after RestartSec, and the demo says so. A lock in the
work directory stops a second demo from wiping it under a running one.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import urllib.request
import subprocess
import sys
import time
from pathlib import Path

from hal.emulators.control import call_sync
from hall.broker import free_port
from hall.halld import fleet, transactions
from transactions.messages import yuan

from .config import load
from .daemon import SIMULATED_CONFIG

ROOT = Path.cwd()
HALL = "DEMO-HALL"
KIOSKS = ["SIM-0001", "SIM-0002"]
# systemd/kioskd.service: Restart=on-failure, RestartSec=2; systemd's default start limit is
# 5 starts within 10 s (StartLimitBurst, StartLimitIntervalSec), after which it gives up.
RESTART_SEC = 2.0
START_LIMIT_BURST, START_LIMIT_INTERVAL_S = 5, 10.0
# Exits systemd counts as clean for Restart=on-failure: code 0 and these signals.
CLEAN_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stop(Exception):
    """The demo must stop: a signal asked for it, or a child died that nothing brings back."""

    def __init__(self, why: str, code: int) -> None:
        super().__init__(why)
        self.code = code


class Signals:
    """Stop signals are noted, never raised mid-statement (a child half-started would be lost);
    Children.wait() wakes on them through the wakeup pipe and raises Stop."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._note)

    def _note(self, signum: int, _frame) -> None:
        self.received = self.received or signum

    def check(self) -> None:
        try:
            os.read(self.wake_r, 512)
        except BlockingIOError:
            pass
        if self.received:
            raise Stop(f"{signal.Signals(self.received).name} received", 0)


def _how(returncode: int) -> str:
    return f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exited with code {returncode}"


class Child:
    def __init__(self, name: str, proc: subprocess.Popen, restart: list[str] | None = None, log: Path | None = None) -> None:
        self.name, self.proc, self.restart, self.log = name, proc, restart, log
        self.pidfd = os.pidfd_open(proc.pid)
        self.starts: list[float] = [time.monotonic()]
        self.restart_at: float | None = None


class Children:
    """The demo's processes. Kiosks (spawned with supervise=True) come back on failure like
    Restart=on-failure; the death of any other child, or a clean kiosk exit, stops the demo."""

    def __init__(self, work: Path, lock_fd: int, signals: Signals) -> None:
        self.work, self.lock_fd, self.signals = work, lock_fd, signals
        self.children: list[Child] = []

    def _popen(self, args: list[str], log: Path) -> subprocess.Popen:
        # Own process group: Ctrl-C reaches the demo alone, which stops the children in order.
        # The work directory's lock is inherited, so a child left behind still holds it.
        with open(log, "a") as out:
            return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, cwd=self.work,
                                    process_group=0, pass_fds=(self.lock_fd,))

    def spawn(self, name: str, args: list[str], log: Path, supervise: bool = False) -> None:
        self.children.append(Child(name, self._popen(args, log), args if supervise else None, log))

    def watch(self, name: str, proc: subprocess.Popen) -> None:
        self.children.append(Child(name, proc))

    def check(self) -> None:
        """Reap what exited: schedule a kiosk's restart, restart what is due, or raise Stop."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    os.close(child.pidfd)
                    child.proc = self._popen(child.restart, child.log)
                    child.pidfd = os.pidfd_open(child.proc.pid)
                    child.starts.append(now)
                    print(f"demo: {child.name} started again (pid {child.proc.pid})", flush=True)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if child.restart is None or code == 0 or -code in CLEAN_SIGNALS:
                raise Stop(f"{child.name} {_how(code)}; stopping the demo (see {self.work}/*.log)", 1)
            recent = [t for t in child.starts if now - t < START_LIMIT_INTERVAL_S]
            if len(recent) >= START_LIMIT_BURST:
                raise Stop(f"{child.name} {_how(code)}, its {len(recent)}th start within "
                           f"{START_LIMIT_INTERVAL_S:.0f} s; giving up as systemd would (start limit)", 1)
            child.restart_at = now + RESTART_SEC
            print(f"demo: {child.name} {_how(code)}; restarting it in {RESTART_SEC:.0f} s, "
                  "as systemd's Restart=on-failure would", flush=True)

    def wait(self, timeout: float) -> None:
        """Sleep up to `timeout`, waking at once on a stop signal or a child's exit; then check()."""
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        self.signals.check()
        select.select([self.signals.wake_r, *(c.pidfd for c in self.children if c.restart_at is None)], [], [], timeout)
        self.signals.check()
        self.check()

    def stop(self) -> None:
        """SIGTERM to each child, newest first (kiosks, halld, bosssim, then the broker), each waited for."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.terminate()
                try:
                    child.proc.wait(15)
                except subprocess.TimeoutExpired:
                    print(f"demo: {child.name} did not stop within 15 s of SIGTERM; killing it", flush=True)
                    child.proc.kill()
                    child.proc.wait()
            os.close(child.pidfd)
        self.children.clear()


def wait_until(what: str, check, children: Children | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not happen within {timeout} s (see var/demo/*.log)")
        if children:
            children.wait(0.1)
        else:
            time.sleep(0.1)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url + "/control/ledger", timeout=1) as response:
        return response.status == 200


class ScriptedVisit:
    """A customer at the screen, through kioskd's local API, as the kiosk's touch UI would be."""

    def __init__(self, sock: str, children: Children | None = None) -> None:
        self.sock, self.children = sock, children

    def bus(self) -> dict:
        return call_sync(self.sock, "emu", name="cctalk", emu_cmd="state")

    def insert_bill(self, fen: int) -> None:
        """Like a person: wait until the validator takes notes, feed one, wait until it is stacked."""
        wait_until("the bill validator accepting", lambda: self.bus()["bill"]["master_enabled"]
                   and self.bus()["bill"]["inhibit_mask"] != 0, self.children, timeout=10)
        before = self.bus()["bills_stacked_fen"]
        call_sync(self.sock, "emu", name="cctalk", emu_cmd="insert_bill", value=fen)
        wait_until("the bill being stacked", lambda: self.bus()["bills_stacked_fen"] > before, self.children, timeout=10)

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
            if self.children:
                self.children.wait(0.05)
            else:
                time.sleep(0.05)
        raise SystemExit(f"demo: the {service} visit did not finish within 60 s (see var/demo/kioskd.log)")


def topup(visit: ScriptedVisit) -> None:
    print("\n== 空中充值 top-up: 13800138000, 50 元 with 20+20+10 bills (BOSS credit through the hall) ==")
    result = visit.run("topup", {"enter_phone": "13800138000", "choose_amount": "5000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


def card_sale(visit: ScriptedVisit) -> None:
    print("\n== 充值卡销售 card sale: 30 元 card, paid with a 20 and a 10 ==")
    result = visit.run("card_sale", {"choose_card": "3000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})],
                        "take_card": [("crt571", "take_card", {})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


def save_receipts(work: Path, socks: dict[str, str]) -> None:
    """The receipt each customer took, as the kiosk's printer emulator drew it; both on one sheet."""
    from hal.printer.example import side_by_side

    pictures = []
    for kiosk, sock in socks.items():
        path = work / kiosk / "receipt.png"
        call_sync(sock, "emu", name="escpos", emu_cmd="render_png", file=str(path))
        pictures.append(path)
    print(f"\n  凭条 receipts: {side_by_side(pictures, work / 'receipts.png')}")


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


def _lock(work: Path) -> int:
    """Hold work/demo.lock for the demo's life (its children inherit it); refuse a second demo."""
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / "demo.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise SystemExit(f"demo: {work} is in use by another demo (pid {holder}) or processes it left behind; "
                         "stop them first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _wipe(work: Path) -> None:
    """A clean work directory for every run, keeping only the lock we hold."""
    import shutil

    for entry in work.iterdir():
        if entry.name == "demo.lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


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
    lock_fd = _lock(work)
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

    _wipe(work)
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
    children.spawn("halld", ["-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port), "--hall", HALL,
                             "--boss", boss_url, "--http", f"127.0.0.1:{api_port}", "--ca", str(certs["ca"]),
                             "--cert", str(certs[f"{HALLD_CN}.crt"]), "--key", str(certs[f"{HALLD_CN}.key"])],
                   work / "halld.log")
    wait_until("halld subscribed", lambda: "listening" in (work / "halld.log").read_text(), children)
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
    save_receipts(work, socks)
    wait_until("both transactions reaching the hall", lambda: len(transactions(db)) >= 2, children)
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

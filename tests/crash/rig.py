"""The crash rig: kioskd as a subprocess on standalone emulators and bosssim, killed and restarted.

Why standalone emulators: a real bill validator keeps a bill in escrow, a dispenser keeps a card
at its gate and a hopper's paid coins stay paid when the controller dies. Inside
``kioskd --simulate`` the emulators would die with kioskd; here they are their own processes
(``python -m hal.emulators NAME --tcp ... --control ...``) that live across every kill, and
kioskd reaches them over ``tcp://`` ports from a normal kiosk.toml. bosssim is a process too.

The rig reads the truth from sources that are not the journal: the emulators' own counters
(money in, coins paid out, cards out/taken/captured) and bosssim's ledger (what was applied).
``Books.check()`` compares them with the journal to the fen (see ``invariants.py``).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from hal.emulators.control import call_sync
from hal.emulators.model import ControlError
from hall.broker import free_port

EMULATORS = ("cctalk", "escpos", "crt571")
CARD_PRICE = 3000  # the one face on sale: [flows] card_prices = {"3000" = 3000}
# identity rigs (issue 11) add: the ID reader, a second CRT-571 holding blank SIMs, a private pcscd
# with vpcd and the virtual USIM as their own processes (a SIM at the contacts outlives kioskd too)
ID_EMULATORS = {"idcard": "idcard", "crt571-sims": "crt571"}  # control label -> emulator
NEW_NUMBER_FEN = 1000  # [flows] new_number_fen


class KioskdDied(Exception):
    """kioskd is gone (killed): the visit stops where it is."""


def _wait_line(proc: subprocess.Popen, log: Path, pattern: str, timeout: float, offset: int = 0) -> str:
    """Wait until ``proc`` has written a line matching ``pattern`` to its log file (past ``offset``
    bytes: a log appended to by an earlier run of the same program holds that run's lines too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            if re.search(pattern, line):
                return line
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited before printing {pattern!r} (see {log})")
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args}: no {pattern!r} within {timeout} s (see {log})")


# What kioskd imports on first use, after it is ready (controller/kiosk.py, transactions/boss.py): in
# a forked child each cost every start again. aiohttp alone took 110-200 ms of the event loop at the
# first BOSS ping, so "ready" came that much later (tests/crash's profile, docs/reliability.md).
LAZY_IMPORTS = ("aiohttp", "aiomqtt", "controller.commands", "controller.desk", "controller.hall_status",
                "controller.ui.server", "controller.updater", "transactions.service")
_preloaded: set[Path] = set()


def preload(config: Path) -> None:
    """Import before the fork what kioskd imports lazily: its drivers by the config, the BOSS client,
    the hall link, the desk and the screen. The child then starts as a fresh one would, minus imports."""
    import importlib

    from controller.config import load
    from hal.registry import load_driver

    if config in _preloaded:
        return
    for name in LAZY_IMPORTS:
        importlib.import_module(name)
    for device in load(config).devices.values():
        load_driver(device.driver)
    _preloaded.add(config)


class Forked:
    """kioskd forked from this process (its modules already imported), with Popen's few methods.

    Why: a fresh interpreter spends most of kioskd's start-up importing; the soak starts kioskd
    hundreds of times. The child is kioskd exactly as ``python -m controller`` runs it (same
    ``controller.daemon.main``, its own stdout/stderr on the log, the crash hook armed from its
    environment), only without the imports. A SIGKILL hits it the same way.
    """

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        from controller import daemon
        from transactions import journal

        preload(config)
        log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller
            code = 1
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                os.environ.update(env)
                journal.arm_crash_hook()  # read KIOSKD_CRASH_AT / _TRACE from this environment
                code = daemon.main(["--config", str(config)])
            except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code if isinstance(code, int) else 1)
        os.close(log_fd)
        self.pid = pid
        self.args = ["kioskd (forked)", "--config", str(config)]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            return self.returncode
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.005)
        return self.returncode


class Rig:
    """Emulators + bosssim started once; kioskd started, killed and restarted many times."""

    def __init__(self, work: Path, fork: bool = True, hall: bool = False, identity: bool = False) -> None:
        self.work = work
        self.fork = fork  # start kioskd by forking this process (fast) or as ``python -m controller``
        self.hall = hall  # a real mosquitto + halld: records drain while kioskd is killed mid-send
        self.broker: Any = None
        self.identity = identity  # with the identity devices (ID_EMULATORS, pcscd, the USIM)
        self.pcscd = None  # hal.simcard.pcscd.PrivatePcscd of an identity rig
        self.hall_key = ""  # the hall's private PII key (what `halld pii open` would use)
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.kioskd: subprocess.Popen | Forked | None = None
        self.notify: socket.socket | None = None
        self.boss_url = ""
        self.starts = 0
        self.start_time = 0.0  # total seconds from spawn to ready

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        """A helper process; its output goes to ``NAME.log`` in the work dir (kept for post-mortems)."""
        log = self.work / f"{name}.log"
        with open(log, "a") as out:
            proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[name] = proc
        return proc, log

    def start(self) -> "Rig":
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "run").mkdir(exist_ok=True)
        self.notify_path.unlink(missing_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(str(self.notify_path))  # kioskd's NOTIFY_SOCKET: its READY=1 ends a start
        started = []
        for name in EMULATORS:
            port = self.ports[name] = free_port()
            started.append(self._spawn(name, ["-m", "hal.emulators", name, "--tcp", f"127.0.0.1:{port}",
                                              "--control", str(self.emu_sock(name))]))
        boss, boss_log = self._spawn("bosssim", ["-m", "bosssim", "--port", "0", "--db", str(self.work / "boss.db")])
        if self.identity:
            started += self._start_identity()
        for proc, log in started:
            _wait_line(proc, log, "serving tcp|card for vpcd", 10)
        self.boss_url = re.search(r"http://[\d.]+:\d+", _wait_line(boss, boss_log, "listening", 10)).group(0)
        if self.hall:
            self._start_hall()
        self.emu("cctalk", "hopper_fill", count=100000)  # payouts are counted, not starved (dry runs: tests/e2e)
        self.emu("crt571", "set_stock", count=100000)
        if self.identity:
            self.emu("crt571-sims", "set_stock", count=100000)
        self.config = self._write_config()
        return self

    def _start_hall(self) -> None:
        from hall.broker import start_broker

        self.broker = start_broker(self.work / "mosquitto")
        halld, log = self._spawn("halld", ["-m", "hall.halld", "serve", "--db", str(self.hall_db), "--mqtt-port",
                                           str(self.broker.port), "--hall", "H-CRASH", "--http", "off"])
        _wait_line(halld, log, "halld: listening", 20)

    @property
    def hall_db(self) -> Path:
        return self.work / "hall.db"

    def _start_identity(self) -> list:
        from hal.simcard.pcscd import PrivatePcscd
        from transactions import pii

        self.hall_key, self.hall_public = pii.new_key_pair()
        started = []
        for label, emulator in ID_EMULATORS.items():
            port = self.ports[label] = free_port()
            started.append(self._spawn(label, ["-m", "hal.emulators", emulator, "--tcp", f"127.0.0.1:{port}",
                                               "--control", str(self.emu_sock(label))]))
        self.pcscd = PrivatePcscd(self.work / "pcscd").start()
        started.append(self._spawn("usim", ["-m", "hal.emulators", "usim", "--vpcd", f"127.0.0.1:{self.pcscd.port}",
                                            "--control", str(self.emu_sock("usim"))]))
        return started

    def stop(self) -> None:
        self.kill_kioskd()
        if self.broker is not None:
            self.broker.stop()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.pcscd is not None:
            self.pcscd.stop()
        if self.notify is not None:
            self.notify.close()

    def __enter__(self) -> "Rig":
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is not None:  # a post-mortem needs the journal, boss.db and every log
            print(f"crash rig: work dir kept at {self.work} (kioskd.log, state/journal.db, boss.db, "
                  f"<emulator>.log)", file=sys.stderr, flush=True)

    def _write_config(self) -> Path:
        w, p = self.work, self.ports
        bus = 'echo = false\npoll_interval_ms = 20\nreply_timeout_ms = 60\ninhibit_check_ms = 200'
        flows_extra = sales_extra = ""
        if self.identity:
            flows_extra = (f'hall_public_key = "{self.hall_public}"\nnew_number_fen = {NEW_NUMBER_FEN}\n'
                           'id_timeout = 5.0\n')
            sales_extra = 'sim_dispenser = "sims"\n'
        path = w / "kiosk.toml"
        path.write_text(f"""
[kiosk]
id = "K-CRASH"
hall = "H-CRASH"
state_dir = "{w}/state"
runtime_dir = "{w}/run"
stop_grace_s = 1.0
log_level = "warning"

[mqtt]
host = "127.0.0.1"
port = {self.broker.port if self.broker else free_port()}  # no hall: nobody listens, the link retries

[boss]
url = "{self.boss_url}"
timeout_s = 1.0

[flows]
idle_timeout = 4.0
stack_timeout = 2.0
take_timeout = 0.5
drain_time = 0.1
card_prices = {{ "{CARD_PRICE}" = {CARD_PRICE} }}
{flows_extra}

[ui]
listen = "127.0.0.1:0"  # rigs side by side: each screen on a port of its own

[sales]
card_dispensers = {{ "{CARD_PRICE}" = "cards" }}
{sales_extra}

[devices.coin]
driver = "cctalk-coin"
port = "tcp://127.0.0.1:{p['cctalk']}"
{bus}

[devices.bill]
driver = "cctalk-bill"
port = "tcp://127.0.0.1:{p['cctalk']}"
{bus}

[devices.hopper]
driver = "cctalk-hopper"
port = "tcp://127.0.0.1:{p['cctalk']}"
coin_fen = 100
{bus}

[devices.printer]
driver = "escpos"
port = "tcp://127.0.0.1:{p['escpos']}"
timeout = 0.3

[devices.cards]
driver = "crt571"
port = "tcp://127.0.0.1:{p['crt571']}"
poll_interval_s = 0.02
response_timeout_s = 1.0
""" + (self._identity_config() if self.identity else ""))
        return path

    def _identity_config(self) -> str:
        p = self.ports
        return f"""
[devices.sims]
driver = "crt571"
port = "tcp://127.0.0.1:{p['crt571-sims']}"
poll_interval_s = 0.02
response_timeout_s = 1.0

[devices.idreader]
driver = "sam-idcard"
port = "tcp://127.0.0.1:{p['idcard']}"
poll_interval_s = 0.3
command_timeout_s = 0.5

[devices.camera]
driver = "camera"
source = "test"

[devices.sim]
driver = "pcsc-sim"
reader = "Kiosk vpcd 00 00"
"""

    # -- kioskd -------------------------------------------------------------------------------
    @property
    def notify_path(self) -> Path:
        return self.work / "run" / "notify.sock"

    @property
    def sock(self) -> str:
        return str(self.work / "run" / "kioskd.sock")

    def emu_sock(self, name: str) -> Path:
        return self.work / "run" / f"emu-{name}.sock"

    def start_kioskd(self, crash_at: str = "", trace: Path | None = None, timeout: float = 20.0,
                     note: str = "") -> None:
        """Start kioskd and wait until it serves (recovery has run by then: it precedes the API)."""
        env = {"KIOSKD_CRASH_AT": crash_at, "KIOSKD_CRASH_TRACE": str(trace) if trace else ""}
        if self.pcscd is not None:  # kioskd's pyscard finds the rig's pcscd (set before it connects)
            env["PCSCLITE_CSOCK_NAME"] = self.pcscd.socket_path
        log = self.work / "kioskd.log"
        with open(log, "a") as out:  # which start a log line belongs to
            out.write(f"--- kioskd start #{self.starts + 1} crash_at={crash_at or '-'} {note}\n")
        self._drain_notify()  # what a killed kioskd said before it died is not this one's READY
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        spawned = time.monotonic()
        if self.fork:
            self.kioskd = Forked(self.config, log, env)
        else:
            with open(log, "a") as out:
                self.kioskd = subprocess.Popen([sys.executable, "-m", "controller", "--config", str(self.config)],
                                               stdout=out, stderr=subprocess.STDOUT,
                                               env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        self._wait_ready(spawned + timeout, timeout, log)
        self.starts += 1
        self.start_time += time.monotonic() - spawned

    def _drain_notify(self) -> None:
        while True:
            try:
                self.notify.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return

    def _wait_ready(self, deadline: float, timeout: float, log: Path) -> None:
        """Wait for kioskd's READY=1 (sd_notify, as systemd waits for it: sent once recovery has run
        and the API serves) or its death, whichever comes first; no polling."""
        assert self.kioskd is not None
        pidfd = os.pidfd_open(self.kioskd.pid)
        try:
            while True:
                ready, _, _ = select.select([self.notify, pidfd], [], [], max(0.0, deadline - time.monotonic()))
                if self.notify in ready:
                    lines = self.notify.recv(4096).decode(errors="replace").splitlines()
                    if "READY=1" in lines and f"MAINPID={self.kioskd.pid}" in lines:
                        status = next((ln[7:] for ln in lines if ln.startswith("STATUS=")), "")
                        if status.split(";")[0] in ("ready", "degraded"):
                            return
                        raise RuntimeError(f"kioskd ready but {status!r} (see {log})")
                elif pidfd in ready:
                    self.kioskd.wait()
                    raise KioskdDied(f"kioskd exited with {self.kioskd.returncode} while starting (see {log})")
                elif not ready:
                    raise RuntimeError(f"kioskd not ready within {timeout} s (see {log})")
        finally:
            os.close(pidfd)

    def alive(self) -> bool:
        return self.kioskd is not None and self.kioskd.poll() is None

    def kill_kioskd(self) -> bool:
        """SIGKILL (no cleanup, as a power cut); returns whether it was still running."""
        if self.kioskd is None:
            return False
        was_alive = self.kioskd.poll() is None
        if was_alive:
            os.kill(self.kioskd.pid, signal.SIGKILL)
        self.kioskd.wait()
        self.kioskd = None
        # the socket file stays behind after a kill; the next kioskd replaces it
        return was_alive

    def wait_dead(self, timeout: float) -> bool:
        if self.kioskd is None:
            return True
        try:
            self.kioskd.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def api(self, cmd: str, **args: Any) -> Any:
        if not self.alive():
            raise KioskdDied(cmd)
        try:
            return call_sync(self.sock, cmd, **args)
        except ControlError:
            raise
        except (OSError, ValueError) as exc:  # refused, reset, or an empty reply: it died mid-call
            if not self.wait_dead(2.0):
                raise
            raise KioskdDied(f"{cmd}: {exc}") from None

    # -- the outside world --------------------------------------------------------------------
    def emu(self, name: str, cmd: str, **args: Any) -> Any:
        return call_sync(str(self.emu_sock(name)), cmd, **args)

    def boss_ledger(self) -> dict:
        with urllib.request.urlopen(self.boss_url + "/control/ledger", timeout=5) as resp:
            return json.loads(resp.read())

    def boss_fault(self, **body: Any) -> None:
        """Queue a bosssim fault (``op``, ``mode``, ``times``, ``delay``, ``code``: bosssim/server.py)."""
        req = urllib.request.Request(self.boss_url + "/control/fault", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["ok"]

    def boss_clear(self) -> None:
        req = urllib.request.Request(self.boss_url + "/control/clear", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def add_boss_bill(self, phone: str, month: str, fen: int) -> None:
        """The operator's billing run adds a month's bill (straight into bosssim's database)."""
        conn = sqlite3.connect(self.work / "boss.db", timeout=10)
        try:
            conn.execute("UPDATE bills SET paid_fen = amount_fen WHERE phone = ?", (phone,))  # paid at the counter
            conn.execute("INSERT INTO bills VALUES (?, ?, ?, 0, ?)", (phone, month, fen, json.dumps([["月费 Fee", fen]])))
            conn.commit()
        finally:
            conn.close()

    def journal(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.work / 'state' / 'journal.db'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

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
import signal
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


class KioskdDied(Exception):
    """kioskd is gone (killed): the visit stops where it is."""


def _wait_line(proc: subprocess.Popen, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args} exited before printing {pattern!r}")
        if re.search(pattern, line):
            return line
    raise RuntimeError(f"{proc.args}: no {pattern!r} within {timeout} s")


class Rig:
    """Emulators + bosssim started once; kioskd started, killed and restarted many times."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.kioskd: subprocess.Popen | None = None
        self.boss_url = ""
        self.starts = 0
        self.start_time = 0.0  # total seconds from spawn to ready

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], log: Path | None = None, env: dict | None = None) -> subprocess.Popen:
        out: Any = subprocess.PIPE if log is None else open(log, "a")
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.procs[name] = proc
        return proc

    def start(self) -> "Rig":
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "run").mkdir(exist_ok=True)
        for name in EMULATORS:
            port = self.ports[name] = free_port()
            proc = self._spawn(name, ["-m", "hal.emulators", name, "--tcp", f"127.0.0.1:{port}",
                                      "--control", str(self.emu_sock(name))])
            _wait_line(proc, "serving tcp", 10)
        boss = self._spawn("bosssim", ["-m", "bosssim", "--port", "0", "--db", str(self.work / "boss.db")])
        self.boss_url = re.search(r"http://[\d.]+:\d+", _wait_line(boss, "listening", 10)).group(0)
        self.emu("cctalk", "hopper_fill", count=100000)  # payouts are counted, not starved (dry runs: tests/e2e)
        self.emu("crt571", "set_stock", count=100000)
        self.config = self._write_config()
        return self

    def stop(self) -> None:
        self.kill_kioskd()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()

    def __enter__(self) -> "Rig":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> Path:
        w, p = self.work, self.ports
        bus = 'echo = false\npoll_interval_ms = 20\nreply_timeout_ms = 60\ninhibit_check_ms = 200'
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
port = {free_port()}  # nobody listens: the hall link just retries; the journal keeps everything

[boss]
url = "{self.boss_url}"
timeout_s = 1.0

[flows]
idle_timeout = 4.0
stack_timeout = 2.0
take_timeout = 0.5
drain_time = 0.1
card_prices = {{ "{CARD_PRICE}" = {CARD_PRICE} }}

[sales]
card_dispensers = {{ "{CARD_PRICE}" = "cards" }}

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
""")
        return path

    # -- kioskd -------------------------------------------------------------------------------
    @property
    def sock(self) -> str:
        return str(self.work / "run" / "kioskd.sock")

    def emu_sock(self, name: str) -> Path:
        return self.work / "run" / f"emu-{name}.sock"

    def start_kioskd(self, crash_at: str = "", trace: Path | None = None, timeout: float = 20.0) -> None:
        """Start kioskd and wait until it serves (recovery has run by then: it precedes the API)."""
        env = {"KIOSKD_CRASH_AT": crash_at, "KIOSKD_CRASH_TRACE": str(trace) if trace else ""}
        spawned = time.monotonic()
        self.kioskd = subprocess.Popen([sys.executable, "-m", "controller", "--config", str(self.config)],
                                       stdout=open(self.work / "kioskd.log", "a"), stderr=subprocess.STDOUT,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        deadline = spawned + timeout
        while True:
            if self.kioskd.poll() is not None:
                raise KioskdDied(f"kioskd exited with {self.kioskd.returncode} while starting (see {self.work}/kioskd.log)")
            try:
                if call_sync(self.sock, "status")["state"] in ("ready", "degraded"):
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kioskd not ready within {timeout} s (see {self.work}/kioskd.log)")
            time.sleep(0.02)
        self.starts += 1
        self.start_time += time.monotonic() - spawned

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

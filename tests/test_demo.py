"""The README's demo: two simulated kiosks, halld, bosssim and a TLS-only mosquitto; both kiosks'
births, a top-up credited through the hall and a card sale reach the hall; a command comes back.

Its lifecycle: SIGTERM, SIGINT or SIGHUP of the demo, or the death of a child it cannot bring back,
leaves no process behind; a kioskd the hall restarts (exit 75) is started again, as systemd's
Restart=on-failure would, and the demo says so."""
from __future__ import annotations

import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from hal.emulators.control import call_sync


def test_demo_runs_its_script_once_and_the_hall_sees_both_kiosks(tmp_path):
    out = subprocess.run([sys.executable, "-m", "demo", "--once", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SIM-0001: 在线 online" in out.stdout and "SIM-0002: 在线 online" in out.stdout
    assert "txn SIM-0001 #1 topup      done" in out.stdout
    assert "txn SIM-0002 #1 card_sale  done" in out.stdout
    assert "txn SIM-0002 #2 new_number done" in out.stdout  # ID card, photo, SIM written, number opened
    from demo.customers import DEMO_ID_CARD
    from tests.identity.kiosk import plaintext_in, scan_files

    # the card's text only masked on the demo's screen, in the kiosk's files and log, in the hall's database
    assert "110105********002X" in out.stdout and plaintext_in(out.stdout.encode(), DEMO_ID_CARD) == []
    assert scan_files(tmp_path / "SIM-0002", DEMO_ID_CARD) == {}
    hall = b"".join(p.read_bytes() for p in tmp_path.glob("hall.db*"))  # with its WAL, if any
    assert plaintext_in((tmp_path / "SIM-0002.log").read_bytes() + hall, DEMO_ID_CARD) == []
    assert "id number" in plaintext_in((tmp_path / "boss.db").read_bytes(), DEMO_ID_CARD)  # the BOSS holds it: the scan sees
    assert "→ ok=True" in out.stdout
    console = re.search(r"hall console: (http://127\.0\.0\.1:\d+)/  login (\S+) / (\S+) \(admin", out.stdout)
    assert console, out.stdout
    done = int(re.search(r"hall history: (\d+) transactions done by 4 other kiosks", out.stdout).group(1))
    _the_history_is_in_the_reports(str(tmp_path / "hall.db"), done, *console.group(2, 3))
    screens = re.findall(r"kioskd (SIM-000[12]) is .*; its screen: http://127\.0\.0\.1:(\d+)/", out.stdout)
    assert sorted(k for k, _ in screens) == ["SIM-0001", "SIM-0002"] and len({p for _, p in screens}) == 2
    from PIL import Image

    with Image.open(tmp_path / "receipts.png") as sheet:  # the two receipts the customers took
        with Image.open(tmp_path / "SIM-0001" / "receipt.png") as one:
            assert sheet.width > 2 * one.width


def _the_history_is_in_the_reports(db_path: str, done: int, user: str, password: str) -> None:
    """Four weeks to yesterday, stored through halld's store: the reports' rollups count every
    seeded transaction (plus the three live ones), on 28 distinct days; the printed login is an admin's."""
    import datetime as dt

    from hall import auth, reports
    from hall.db import connect

    db = connect(db_path, schema=False)
    try:
        [account] = [u for u in auth.users(db) if u["name"] == user]
        assert account["role"] == "admin"
        assert auth.check_password(db.one("SELECT pw_hash FROM staff_users WHERE name = ?", (user,))[0], password)
        today = dt.date.today()
        f = reports.Filter(today - dt.timedelta(days=40), today)
        assert done > 28 * 4 * 15 and reports.services(db, f)["totals"]["count"] == done + 3
        assert len({d for d in reports.daily(db, f, page_rows=10**6)["charts"]["days"]}) >= 28
    finally:
        db.close()


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (children, their children, ...) with its command line."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                todo.append(child)
    return found


class Demo:
    """`python -m demo` running in the background, its output read line by line."""

    def __init__(self, workdir: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "demo", "--workdir", str(workdir)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, pattern: str, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(self.seen)}") from None
            if line is None:
                raise AssertionError(f"the demo ended before {pattern!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m

    def pidfds(self) -> dict[int, tuple[int, str]]:
        """pidfds of every process below the demo, taken now so that a reused pid cannot fool us."""
        fds = {}
        for pid, cmd in descendants(self.proc.pid).items():
            try:
                fds[pid] = (os.pidfd_open(pid), cmd)
            except ProcessLookupError:
                pass
        return fds

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()


def still_running(pidfds: dict[int, tuple[int, str]], timeout: float) -> list[str]:
    """Wait up to `timeout` for every process to exit; return those still running."""
    deadline = time.monotonic() + timeout
    alive = dict(pidfds)
    while alive and time.monotonic() < deadline:
        ready, _, _ = select.select([fd for fd, _ in alive.values()], [], [], deadline - time.monotonic())
        alive = {pid: (fd, cmd) for pid, (fd, cmd) in alive.items() if fd not in ready}
    for fd, _ in pidfds.values():
        os.close(fd)
    return [f"{pid} {cmd}" for pid, (_, cmd) in alive.items()]


@pytest.fixture
def demo(tmp_path):
    running = Demo(tmp_path / "demo")
    yield running
    running.kill()


def test_the_hall_restarting_a_kiosk_brings_it_back_and_sigterm_leaves_no_process_behind(demo, tmp_path):
    token, api = demo.expect(r"HALLD_TOKEN=(\S+) halld cmd SIM-0002 restart --api (\S+)").groups()
    sock = str(tmp_path / "demo" / "SIM-0002" / "run" / "kioskd.sock")
    assert call_sync(sock, "status")["session"] == 1
    request = urllib.request.Request(f"{api}/api/kiosks/SIM-0002/cmd/restart", method="POST",
                                     data=json.dumps({"args": {}}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["ok"] is True
    demo.expect(r"demo: kioskd SIM-0002 exited with code 75; restarting it in 2 s, as systemd's Restart=on-failure would")
    demo.expect(r"demo: kioskd SIM-0002 started again")
    deadline = time.monotonic() + 60
    while True:  # the new kioskd's socket appears when it is up; nothing to wait on but the socket
        try:
            status = call_sync(sock, "status")
            if status["state"] in ("ready", "degraded"):
                break
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, "the restarted kioskd did not become ready within 60 s"
        select.select([], [], [], 0.1)
    assert status["session"] == 2  # a new boot session: a real restart, not the old process

    children = demo.pidfds()
    assert len(children) >= 5, children  # mosquitto, bosssim, halld, two kioskd
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(60) == 0, "".join(demo.seen)
    assert still_running(children, 30) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_stop_every_child(demo, sig):
    demo.expect(r"^Running\.")
    children = demo.pidfds()
    assert len(children) >= 5, children
    demo.proc.send_signal(sig)
    assert demo.proc.wait(60) == 0
    demo.expect(rf"demo: {sig.name} received")
    assert still_running(children, 30) == []


def test_a_dead_child_stops_the_demo_and_every_other_child(demo):
    demo.expect(r"^Running\.")
    children = demo.pidfds()
    bosssim = next(pid for pid, (_, cmd) in children.items() if "-m bosssim" in cmd)
    os.kill(bosssim, signal.SIGKILL)
    assert demo.proc.wait(60) == 1
    demo.expect(r"demo: bosssim was killed by SIGKILL; stopping the demo")
    assert still_running(children, 30) == []


def test_a_second_demo_refuses_the_work_directory_of_a_running_one(demo, tmp_path):
    demo.expect(r"^Running\.")
    out = subprocess.run([sys.executable, "-m", "demo", "--once", "--workdir", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"is in use by another demo (pid {demo.proc.pid})" in out.stderr
    assert (tmp_path / "demo" / "hall.db").exists()  # not wiped under the running demo

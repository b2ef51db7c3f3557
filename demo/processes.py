"""The demo's processes, supervised as systemd would supervise them on a kiosk.

The demo owns its children. SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops every one of them (kiosks
first, so they drain while the hall still listens), and so does the death of any child the demo
cannot bring back. The kiosks are supervised as systemd's `Restart=on-failure` would
(systemd/kioskd.service): a kioskd that exits non-zero or is killed — the hall's `restart` command
exits 75 — is started again after RestartSec, and the demo says so. A lock in the work directory
stops a second demo from wiping it under a running one.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def lock(work: Path) -> int:
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


def wipe(work: Path) -> None:
    """A clean work directory for every run, keeping only the lock we hold."""
    import shutil

    for entry in work.iterdir():
        if entry.name == "demo.lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()



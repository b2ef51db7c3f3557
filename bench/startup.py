"""Start-up cost of kioskd: exec to READY=1 and RSS once ready, against a bare `python -c pass`.

    python bench/startup.py [--runs 7]

Runs the built-in simulated kiosk (every configured device on its emulator), in a temp dir.
Targets on a 2-core x86 box: READY < 1.0 s, RSS < 45 MB. Prints numbers; never fails on them.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def kioskd_once(tmp: Path) -> tuple[float, float]:
    notify_path = tmp / "notify.sock"
    if notify_path.exists():
        notify_path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "controller", "--simulate", "--mqtt-port", "1"],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - start
        rss = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        sock.close()
    return ready, rss


def bare_once() -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import os;print(open(f'/proc/{os.getpid()}/status').read())"],
                         capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    rss = next(int(l.split()[1]) for l in out.stdout.splitlines() if l.startswith("VmRSS:")) / 1024
    return elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    os.environ["PYTHONPATH"] = f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    with tempfile.TemporaryDirectory() as d:
        kiosk = [kioskd_once(Path(d)) for _ in range(args.runs)]
    bare = [bare_once() for _ in range(args.runs)]
    k_ready = statistics.median(r for r, _ in kiosk)
    k_rss = statistics.median(m for _, m in kiosk)
    b_time = statistics.median(r for r, _ in bare)
    b_rss = statistics.median(m for _, m in bare)
    print(f"runs: {args.runs} (medians)")
    print(f"kioskd --simulate exec->READY: {k_ready * 1000:7.1f} ms   (target < 1000 ms)")
    print(f"kioskd RSS at READY:           {k_rss:7.1f} MB   (target < 45 MB)")
    print(f"baseline python -c pass:       {b_time * 1000:7.1f} ms   RSS {b_rss:.1f} MB")
    print(f"ratio kioskd/baseline: time x{k_ready / b_time:.1f}, RSS x{k_rss / b_rss:.1f}")


if __name__ == "__main__":
    main()

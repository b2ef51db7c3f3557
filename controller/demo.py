"""The simulated kiosk with its hall, on one machine: mosquitto, halld and kioskd --simulate.

`./dev demo` runs this. It starts everything on free loopback ports under ./var/demo, lets a
scripted customer use the kiosk, and shows what reaches the hall. Ctrl-C stops it all;
``--once`` runs the script once and exits (used by the tests).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hal.emulators.control import call_sync
from hall.broker import start_broker
from hall.halld import fleet, recent

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


def spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=cwd)


def show_hall(db: str) -> None:
    print("\n== 营业厅 / the hall sees ==")
    for row in fleet(db):
        print(f"  {row['hall']}/{row['kiosk']}: {'在线 online' if row['online'] else '离线 offline'}, boot session {row['session']}")
    for row in reversed(recent(db, 8)):
        payload = {k: v for k, v in row["payload"].items() if k not in ("devices",)}
        print(f"  {row['kind']:<10} {json.dumps(payload, ensure_ascii=False)[:140]}")


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
        procs.append(spawn(["-m", "controller", "--simulate", "--mqtt-port", str(broker.port)], work / "kioskd.log", work))
        sock = str(work / "var" / "sim" / "run" / "kioskd.sock")  # simulated.toml's paths are relative
        wait_until("kioskd ready", lambda: call_sync(sock, "status")["state"] in ("ready", "degraded"))
        status = call_sync(sock, "status")
        print(f"kioskd {status['kiosk']} is {status['state']} with {len(status['devices'])} simulated devices; "
              f"broker on 127.0.0.1:{broker.port}")
        wait_until("the kiosk's birth reaching the hall", lambda: any(r["online"] for r in fleet(db)))
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

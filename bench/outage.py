"""Long outage under continuous traffic, in real time: nothing lost, order kept, the outbox bounded.

    python bench/outage.py [--minutes 10] [--rate 5] [--events 1] [--max-outbox 2000] [--warn 1000] [--workdir DIR]

A real mosquitto and a real halld (SQLite); the kiosk side is kioskd's own Journal + Outbox +
HallLink with cash customers finishing real transactions (``records.new_txn`` / ``add_money`` /
``finish_txn``, as the flows do) at ``--rate`` per second, a chattering device reporting
``--events`` faults per second through kioskd's path for device events (``Outbox.device_event``:
counted, not stored, past ``--warn`` rows), and the flows' gate (no cash-taking visit while the
outbox holds more than ``--max-outbox`` rows). The timeline, as fractions of ``--minutes``:

    0.0 - 0.1  everything up
    0.1 - 0.7  the broker is killed (SIGKILL) and stays down
    0.7 - 0.9  the broker is back on the same port, halld is killed (its will says the hall is offline)
    0.9 - 1.0  halld is back; traffic goes on; then traffic stops and the outbox drains

Prints, every 30 s, the depth, the undelivered bytes, the outbox table's rows (undelivered and the
delivered tail kept) and its size on disk (its and its indexes' pages, SQLite's dbstat), and the
journal's file size; then the alarm times (outbox_high, outbox_full), visits taken and refused,
device events stored and dropped, the drain time, and the check against halld's database: every
finished transaction there exactly once, halld's msg_seq 1..N every row the journal's outbox ever
numbered (delivered rows are pruned to the newest ``--max-outbox``, AUTOINCREMENT numbers them),
transactions' seq increasing with msg_seq, the dropped events' count in its ``events_dropped``
records. Exit 1 if any of that fails.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config import load  # noqa: E402
from controller.link import HallLink  # noqa: E402
from controller.outbox import Outbox  # noqa: E402
from hal.device import DeviceEvent  # noqa: E402
from hall.broker import free_port, start_broker  # noqa: E402
from transactions import Journal, records  # noqa: E402

KIOSK, HALL = "K-OUTAGE", "H-OUTAGE"


def start_halld(work: Path, port: int) -> subprocess.Popen:
    log = open(work / "halld.log", "a")
    proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", str(work / "hall.db"), "--mqtt-port",
                             str(port), "--hall", HALL, "--http", "off"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while "halld: listening" not in (work / "halld.log").read_text(errors="replace").split("--- start")[-1]:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"halld did not start (see {work / 'halld.log'})")
        time.sleep(0.05)
    return proc


def outbox_size(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Undelivered payload bytes, the outbox's rows, and its pages on disk (table and indexes)."""
    undelivered, rows = conn.execute("SELECT COALESCE(SUM(CASE WHEN delivered = 0 THEN LENGTH(payload) END), 0),"
                                     " COUNT(*) FROM outbox").fetchone()
    pages = conn.execute("SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN"
                         " (SELECT name FROM sqlite_schema WHERE tbl_name = 'outbox')").fetchone()[0]
    return undelivered, rows, pages


def sale(conn: sqlite3.Connection, boot: int, now: float) -> int:
    """One cash top-up, journalled as the flow does it: paid 10 yuan, applied 10 yuan, done."""
    txn = records.new_txn(conn, KIOSK, boot, "topup", "13800138000", "begin", now)
    records.add_money(conn, txn, [("cash_in", 1000, "bill:1000"), ("applied", 1000, f"boss:{txn}:credit")], now)
    return records.finish_txn(conn, txn, "done", now)


async def run(args: argparse.Namespace, work: Path) -> int:
    port = free_port()
    broker = start_broker(work / "mosquitto", port=port)
    (work / "halld.log").write_text("--- start\n")
    halld = start_halld(work, port)
    config_path = work / "kiosk.toml"
    config_path.write_text(f'[kiosk]\nid = "{KIOSK}"\nhall = "{HALL}"\nstate_dir = "{work}/state"\n'
                           f'runtime_dir = "{work}/run"\n\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
                           'telemetry_interval_s = 3600.0\n')
    config = load(config_path)
    total = args.minutes * 60
    taken = refused = events = dropped = 0
    alarms: dict[str, float] = {}
    samples: list[tuple[float, int, int, int, int, int]] = []
    status = 0
    async with Journal(work / "state" / "journal.db", kiosk=KIOSK) as journal:
        outbox = Outbox(journal, args.max_outbox, warn=args.warn)
        await outbox.load()

        async def hall_status() -> dict:
            return {"kiosk": KIOSK, "hall": HALL, "outbox_depth": outbox.depth, "alarms": outbox.alarms()}

        async with HallLink(config, journal.boot, hall_status, outbox) as link:
            t0 = time.monotonic()
            phase = "up"
            next_event = next_sample = 0.0
            chatter = DeviceEvent("bill", "fault", "sensor_flicker", "bench: a chattering validator sensor")
            while (elapsed := time.monotonic() - t0) < total:
                want = ("up" if elapsed < 0.1 * total else "broker down" if elapsed < 0.7 * total
                        else "hall down" if elapsed < 0.9 * total else "back")
                if want != phase:
                    print(f"[{elapsed:6.0f} s] {phase} -> {want}", flush=True)
                    if want == "broker down":
                        broker.proc.kill()
                        broker.proc.wait()
                    elif want == "hall down":
                        broker = start_broker(work / "mosquitto", port=port)
                        halld.kill()
                        halld.wait()
                    elif want == "back":
                        (work / "halld.log").open("a").write("--- start\n")
                        halld = start_halld(work, port)
                    phase = want
                now = time.time()
                if outbox.depth > args.max_outbox:  # transactions.service: no cash-taking flow
                    refused += 1
                else:
                    await journal.write(sale, journal.boot, now)
                    taken += 1
                while args.events and elapsed >= next_event:
                    next_event += 1 / args.events
                    events += 1
                    if not await outbox.device_event(chatter):
                        dropped += 1
                outbox.wake()
                await outbox.refresh()
                for code in outbox.alarms():
                    alarms.setdefault(code, elapsed)
                if elapsed >= next_sample:
                    next_sample += 30
                    undelivered, rows, on_disk = await journal.read(outbox_size)
                    disk = sum(p.stat().st_size for p in (work / "state").glob("journal.db*"))
                    samples.append((elapsed, outbox.depth, undelivered, disk, rows, on_disk))
                    print(f"[{elapsed:6.0f} s] {phase:11s} depth {outbox.depth:5d}  undelivered {undelivered / 1024:6.0f} KiB"
                          f"  outbox {rows:5d} rows {on_disk / 1024:6.0f} KiB on disk  journal {disk / 1024 / 1024:5.1f} MiB"
                          f"  alarms {outbox.alarms()}  link {'up' if link.connected.is_set() else 'down'}", flush=True)
                await asyncio.sleep(1 / args.rate)
            drain_from = time.monotonic()
            print(f"[{drain_from - t0:6.0f} s] traffic stops; waiting for the drain", flush=True)
            deadline = drain_from + 600
            while outbox.depth or outbox.alarms():
                if time.monotonic() > deadline:
                    print("NOT DRAINED within 600 s")
                    status = 1
                    break
                await asyncio.sleep(0.1)
            drain_s = time.monotonic() - drain_from
            undelivered, rows, on_disk = await journal.read(outbox_size)
            disk = sum(p.stat().st_size for p in (work / "state").glob("journal.db*"))
            samples.append((time.monotonic() - t0, outbox.depth, undelivered, disk, rows, on_disk))
            print(f"[{samples[-1][0]:6.0f} s] drained     depth {outbox.depth:5d}  outbox {rows:5d} rows "
                  f"{on_disk / 1024:6.0f} KiB on disk  journal {disk / 1024 / 1024:5.1f} MiB", flush=True)
    j = sqlite3.connect(work / "state" / "journal.db")
    finished = dict(j.execute("SELECT id, seq FROM transactions WHERE state != 'open'").fetchall())
    numbered = j.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
    j.close()
    halld.send_signal(signal.SIGTERM)
    halld.wait(30)
    broker.stop()
    hall = sqlite3.connect(work / "hall.db")
    rows = hall.execute("SELECT txn, seq, msg_seq FROM txns WHERE kiosk = ? ORDER BY msg_seq", (KIOSK,)).fetchall()
    rec = [r[0] for r in hall.execute("SELECT msg_seq FROM records WHERE kiosk = ? ORDER BY msg_seq", (KIOSK,))]
    reported = sum(json.loads(p).get("count", 0) for (p,) in hall.execute(
        "SELECT payload FROM events WHERE kiosk = ? AND kind = 'events_dropped'", (KIOSK,)))
    hall.close()
    at_hall = {t: s for t, s, _ in rows}
    missing = set(finished) - set(at_hall)
    extra = set(at_hall) - set(finished)
    seqs = [s for _, s, _ in rows]
    in_order = seqs == sorted(seqs) and all(finished[t] == s for t, s in at_hall.items() if t in finished)
    peak = max(samples, key=lambda s: s[1]) if samples else (0, 0, 0, 0, 0, 0)
    biggest = max(samples, key=lambda s: s[5]) if samples else peak
    print(f"\nrun: {args.minutes} min real, {args.rate}/s cash customers, max_outbox {args.max_outbox}, "
          f"outbox_warn {args.warn}")
    print(f"visits: {taken} taken, {refused} refused over max_outbox; device events {events}: "
          f"{events - dropped} stored, {dropped} dropped past outbox_warn, {reported} counted in events_dropped at the hall")
    print("alarms: " + (", ".join(f"{k} at {v:.0f} s" for k, v in sorted(alarms.items(), key=lambda kv: kv[1]))
                        or "none"))
    if "outbox_high" in alarms and "outbox_full" in alarms:
        print(f"warning ahead of full: {alarms['outbox_full'] - alarms['outbox_high']:.0f} s")
    print(f"outbox peak: {peak[1]} rows, {peak[2] / 1024:.0f} KiB undelivered, journal files {peak[3] / 1024 / 1024:.1f} MiB "
          f"(at {peak[0]:.0f} s)")
    print(f"outbox on disk: largest {biggest[5] / 1024:.0f} KiB ({biggest[4]} rows, at {biggest[0]:.0f} s), "
          f"after the drain {samples[-1][5] / 1024:.0f} KiB ({samples[-1][4]} rows)")
    print(f"drain after the outage: {drain_s:.1f} s")
    print(f"hall: {len(finished)} transactions finished, {len(at_hall)} at the hall; lost {len(missing)}, "
          f"unknown {len(extra)}; halld's records = the outbox 1..{numbered}: {rec == list(range(1, numbered + 1))}; "
          f"order kept (txn seq increasing with msg_seq): {in_order}")
    if missing or extra or rec != list(range(1, numbered + 1)) or not in_order or len(at_hall) != taken \
            or reported != dropped:
        status = 1
    print("RESULT: " + ("ok" if status == 0 else "FAILED") + f" (work dir {work})")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outage")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5.0, help="cash customers finishing per second")
    parser.add_argument("--events", type=float, default=1.0, help="device faults per second (a chattering device)")
    parser.add_argument("--max-outbox", type=int, default=2000)
    parser.add_argument("--warn", type=int, default=1000)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="outage-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    status = asyncio.run(run(args, work))
    if status == 0 and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

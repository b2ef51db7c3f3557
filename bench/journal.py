"""Journal throughput: intent+outcome pairs per second, durable (WAL, synchronous=FULL).

    python bench/journal.py [--pairs 2000] [--concurrency 8]

Baseline, measured in the same run on the same disk: a bare sqlite3 connection doing the same
two INSERT/UPDATE commits per pair, sequentially, in the caller's thread (what a naive journal
would do, blocking the loop). Then the Journal: sequential awaits (one flow), and N concurrent
writers (several flows/devices at once: group commit shares the fsync). Also the event loop's
worst stall while the journal writes, which is what the one-writer-thread design is for.
Prints numbers and ratios; never fails on them.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transactions import records  # noqa: E402
from transactions.journal import Journal  # noqa: E402


def baseline(path: str, pairs: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, txn TEXT, kind TEXT, args TEXT, outcome TEXT,"
                 " opened_at REAL, closed_at REAL)")
    t0 = time.perf_counter()
    for i in range(pairs):
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute("INSERT INTO steps(txn, kind, args, opened_at) VALUES ('t', 'payout', '{}', 0)")
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE steps SET outcome = '{}', closed_at = 1 WHERE id = ?", (cur.lastrowid,))
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return pairs / dt


async def stall_probe(stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - t - 0.001)
    return worst


async def journal_run(path: str, pairs: int, concurrency: int) -> tuple[float, float]:
    async with Journal(path, kiosk="B") as j:
        txn = await j.write(records.new_txn, "B", j.boot, "bench", None, "start", 0.0)

        async def one_flow(n: int) -> None:
            for _ in range(n):
                step = await j.write(records.open_intent, txn, "payout", {"count": 1}, 0.0)
                await j.write(records.close_intent, step, {"paid": 1}, 1.0)

        stop = asyncio.Event()
        probe = asyncio.create_task(stall_probe(stop))
        t0 = time.perf_counter()
        await asyncio.gather(*[one_flow(pairs // concurrency) for _ in range(concurrency)])
        dt = time.perf_counter() - t0
        stop.set()
        worst = await probe
    return (pairs // concurrency) * concurrency / dt, worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        base = baseline(os.path.join(d, "base.db"), args.pairs)
        seq, seq_stall = asyncio.run(journal_run(os.path.join(d, "seq.db"), args.pairs, 1))
        conc, conc_stall = asyncio.run(journal_run(os.path.join(d, "conc.db"), args.pairs, args.concurrency))
    print(f"baseline bare sqlite3, blocking, sequential: {base:8.0f} pairs/s")
    print(f"Journal, 1 writer awaiting each commit:      {seq:8.0f} pairs/s  ratio {seq / base:.2f}"
          f"  worst loop stall {seq_stall * 1000:.2f} ms")
    print(f"Journal, {args.concurrency} concurrent writers (group commit): {conc:8.0f} pairs/s  ratio {conc / base:.2f}"
          f"  worst loop stall {conc_stall * 1000:.2f} ms")


if __name__ == "__main__":
    main()

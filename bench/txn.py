"""Top-ups on the simulated kiosk: controller CPU per top-up and device-event -> decision latency,
with a 10k-row outbox backlog against an empty outbox (baseline, same run, interleaved).

    python bench/txn.py [--topups 30] [--backlog 10000]

Everything is real except the hardware: the ccTalk bill validator / escpos / modem drivers on
ptys against their emulators, bosssim as a child process over HTTP (its CPU is not ours), the
journal on disk (WAL, synchronous=FULL). Two journals share the devices and the BOSS: one with an
empty outbox (baseline), one with ``--backlog`` undelivered outbox rows; top-ups alternate between
them so drift (page cache, bosssim's db growing) hits both alike.

Measured per top-up (10.00 yuan, one 10-yuan bill, no change):
- CPU: ``time.process_time()`` around ``run_flow`` — this process's CPU, which includes the
  emulators (they run in this loop, as under ``kioskd --simulate``); device waits cost no CPU.
- escrow -> stack(): from the driver yielding ``Escrow`` to the flow calling ``stack()``
  (the decision plus the fsync'd stack_bill intent).
- stacked -> journalled: from the driver yielding ``Stacked`` to the flow showing the new paid
  total, which it does after the outcome and the state change are committed.
Prints numbers and ratios; never fails on them.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hal.cash import Escrow, Stacked  # noqa: E402
from hal.cctalk.bill import BillOptions, CcTalkBillValidator  # noqa: E402
from hal.cctalk.coin import CcTalkCoinAcceptor, CoinOptions  # noqa: E402
from hal.cctalk.hopper import CcTalkHopper, HopperOptions  # noqa: E402
from hal.device import DeviceContext  # noqa: E402
from hal.emulators.simports import SimPorts  # noqa: E402
from hal.modem import GsmModem, GsmModemOptions  # noqa: E402
from hal.printer.escpos import EscPosOptions, EscPosPrinter  # noqa: E402
from transactions import records  # noqa: E402
from transactions.boss import http_boss  # noqa: E402
from transactions.customer import ScriptedCustomer  # noqa: E402
from transactions.flow import FlowConfig, Hardware, Services  # noqa: E402
from transactions.journal import Journal  # noqa: E402
from transactions.service import run_flow  # noqa: E402

PHONE = "13800138000"
CCTALK = {"echo": False, "poll_interval_ms": 20, "reply_timeout_ms": 50}


class Probe:
    """Timestamps the bill validator's events as the flow receives them, and its stack() calls."""

    def __init__(self, bill: Any) -> None:
        self.escrow_at: float | None = None
        self.stacked_at: float | None = None
        self.escrow_to_stack: list[float] = []
        self.stacked_to_journal: list[float] = []
        events, stack = bill.events, bill.stack

        async def timed_events():
            async for event in events():
                if isinstance(event, Escrow):
                    self.escrow_at = time.perf_counter()
                elif isinstance(event, Stacked):
                    self.stacked_at = time.perf_counter()
                yield event

        async def timed_stack():
            if self.escrow_at is not None:
                self.escrow_to_stack.append(time.perf_counter() - self.escrow_at)
                self.escrow_at = None
            await stack()
        bill.events, bill.stack = timed_events, timed_stack

    def shown(self, key: str) -> None:
        if key == "paid_so_far" and self.stacked_at is not None:
            self.stacked_to_journal.append(time.perf_counter() - self.stacked_at)
            self.stacked_at = None


async def start_bosssim(db: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "bosssim", "--port", "0", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
    match = re.search(r"http://[\d.]+:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"bosssim did not start: {line!r}")
    return proc, match.group(0)


def fill_outbox(conn: Any, rows: int) -> None:
    now = time.time()
    for i in range(rows):
        records.record_device_event(conn, "bench", "paper_low", "near_end", f"backlog row {i}", {"i": i}, now)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def main(topups: int, backlog: int) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-txn-")
    proc, url = await start_bosssim(os.path.join(tmp, "boss.db"))
    sim = SimPorts()
    ctx = DeviceContext(simulate=True, sim_ports=sim)
    for name in ("cctalk", "escpos", "modem"):
        sim.path(name)
    await sim.started()
    devs = [CcTalkBillValidator("bill", BillOptions(port="sim:cctalk", **CCTALK), ctx),
            CcTalkCoinAcceptor("coin", CoinOptions(port="sim:cctalk", **CCTALK), ctx),
            CcTalkHopper("hopper", HopperOptions(port="sim:cctalk", coin_fen=100, **CCTALK), ctx),
            EscPosPrinter("printer", EscPosOptions(port="sim:escpos", timeout=0.3), ctx),
            GsmModem("modem", GsmModemOptions(port="sim:modem", backoff_s=0.01, command_timeout_s=0.5,
                                              prompt_timeout_s=0.5, result_timeout_s=1.0), ctx)]
    for d in devs:
        await d.start()
    bill = devs[0]
    probe = Probe(bill)
    cash = sim.runner("cctalk")
    hw = Hardware(acceptors=[bill, devs[1]], hopper=devs[2], printer=devs[3], modem=devs[4])
    boss = http_boss(url, timeout=2.0)
    config = FlowConfig(idle_timeout=5.0, stack_timeout=2.0, drain_time=0.05)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        async with Journal(os.path.join(tmp, "empty.db"), kiosk="K01") as empty, \
                Journal(os.path.join(tmp, "backlog.db"), kiosk="K01") as full:
            await full.write(fill_outbox, backlog)
            depth = await full.read(records.outbox_depth)
            arms = {"empty outbox": Services(journal=empty, hw=hw, boss=boss, config=config),
                    f"{depth} outbox rows": Services(journal=full, hw=hw, boss=boss, config=config)}
            for name in arms:
                results[name] = {"cpu": [], "wall": [], "e2s": [], "s2j": []}

            def on_show(key: str, fmt: dict) -> None:
                probe.shown(key)
                if key == "insert_cash":
                    cash.control("insert_bill", {"value": 1000})

            for i in range(topups + 1):  # the first round of each arm warms up
                for name, services in arms.items():
                    customer = ScriptedCustomer([PHONE, "1000"], on_show=on_show)
                    n_e2s, n_s2j = len(probe.escrow_to_stack), len(probe.stacked_to_journal)
                    c0, w0 = time.process_time(), time.perf_counter()
                    result = await run_flow(services, "topup", customer)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                    if result.state != "done":
                        raise SystemExit(f"top-up {i} on {name} ended {result.state}: {customer.shown_keys}")
                    if i < 1:
                        continue
                    r = results[name]
                    r["cpu"].append(cpu)
                    r["wall"].append(wall)
                    r["e2s"].extend(probe.escrow_to_stack[n_e2s:])
                    r["s2j"].extend(probe.stacked_to_journal[n_s2j:])
    finally:
        await boss.close()
        for d in reversed(devs):
            await d.stop()
        await sim.stop()
        proc.terminate()
        proc.wait(5)

    ms = 1000.0
    print(f"top-ups per arm: {topups} (after 1 warm-up), 10.00 yuan each, one bill, real drivers on ptys")
    header = f"{'':>22} {'CPU/top-up ms':>14} {'wall/top-up ms':>15} {'escrow->stack p50/p99 ms':>25} " \
             f"{'stacked->journalled p50/p99 ms':>31}"
    print(header)
    rows = {}
    for name, r in results.items():
        rows[name] = (statistics.mean(r["cpu"]) * ms, statistics.mean(r["wall"]) * ms,
                      pct(r["e2s"], .5) * ms, pct(r["e2s"], .99) * ms, pct(r["s2j"], .5) * ms, pct(r["s2j"], .99) * ms)
        v = rows[name]
        print(f"{name:>22} {v[0]:14.2f} {v[1]:15.1f} {v[2]:11.2f} / {v[3]:8.2f}    {v[4]:13.2f} / {v[5]:10.2f}")
    base, loaded = rows["empty outbox"], rows[next(n for n in rows if n != "empty outbox")]
    print(f"ratio backlog/empty: CPU {loaded[0] / base[0]:.2f}x, wall {loaded[1] / base[1]:.2f}x, "
          f"escrow->stack p50 {loaded[2] / base[2]:.2f}x p99 {loaded[3] / base[3]:.2f}x, "
          f"stacked->journalled p50 {loaded[4] / base[4]:.2f}x p99 {loaded[5] / base[5]:.2f}x")
    print("(CPU is this process's: flows, drivers, journal threads and the in-process emulators; bosssim excluded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topups", type=int, default=30)
    parser.add_argument("--backlog", type=int, default=10000)
    args = parser.parse_args()
    asyncio.run(main(args.topups, args.backlog))

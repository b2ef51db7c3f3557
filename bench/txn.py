"""Top-ups on the simulated kiosk while a 10k-row outbox backlog drains into a real hall: controller
CPU per top-up and device-event -> decision latency, against top-ups with an empty outbox and an
idle hall link (baseline, same run, interleaved).

    python bench/txn.py [--backlog 10000] [--rounds 5] [--max-topups 400] [--budget-s 75]

Everything is real except the hardware: the ccTalk bill validator / coin / hopper, escpos and modem
drivers on ptys against their emulators, bosssim over HTTP, the journals on disk (WAL,
synchronous=FULL), mosquitto (hall/broker.py, with its BROKER_TUNING) and halld (``python -m
hall.halld serve --http off``, SQLite) as child processes. The kiosk side is kioskd's own wiring
(controller/kiosk.py): a Config loaded by controller/config.py from a kiosk.toml the bench writes,
the devices built from it by DeviceSet, the backlog journal's Outbox behind a real HallLink, the
retained status (hall_status.birth) republished on every outbox change, the outbox woken after
each visit -- all in this process and this event loop, as in ``kioskd --simulate``.

Two journals share the devices, the BOSS and the loop: one with an empty outbox (baseline), one
with ``--backlog`` undelivered rows (device events) that the link drains into halld; top-ups
alternate between them. The drain is gated to the draining arm: halld is SIGCONT'd right before a
draining top-up and SIGSTOP'd right after it, and every top-up first waits until the link is quiet
(window of 64 in flight, nothing sent or acked for 40 ms). So a baseline top-up sees an idle link
(what a kiosk with nothing to send has), a draining top-up sees the drain at full speed, and drift
(page cache, other load on the machine) hits both arms alike. Once a backlog has drained, the next
of ``--rounds`` is written into the same journal (10k rows drain in ~20 top-ups: the rounds give
the p99 some samples). The run ends after the rounds, or after ``--max-topups`` per arm or
``--budget-s`` seconds of measurement (then ``finished: no``, with the rows left).

Measured per top-up (10.00 yuan, one 10-yuan bill, no change; one warm-up pair, halld paused):
- CPU: ``time.process_time()`` around ``run_flow``: this process's CPU, which includes the
  emulators (in this loop, as under ``kioskd --simulate``) and, in the draining arm, the hall link
  draining the backlog (publishing rows, PUBACKs, acks committed to the journal, status
  republished). That is the point: the link runs in the controller's process and loop, so its CPU
  is what draining costs the customer in front of the kiosk. Device waits cost no CPU; halld,
  mosquitto and bosssim are other processes, not counted.
- escrow -> stack(): from the driver yielding ``Escrow`` to the flow calling ``stack()``
  (the decision plus the fsync'd stack_bill intent).
- stacked -> journalled: from the driver yielding ``Stacked`` to the flow showing the new paid
  total, which it does after the outcome and the state change are committed.
- the drain: backlog rows halld acknowledged (delivered in the journal), how many of them within
  the measured top-ups, and rows/s over the time halld ran (the draining top-ups).
Caveat: here halld and mosquitto share the machine's cores with the controller (on a kiosk they
are on the hall server), so the draining arm's wall-clock latencies include their CPU; the CPU
numbers do not. Prints numbers and ratios; never fails on them.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller import config as config_mod  # noqa: E402
from controller.devices import DeviceSet  # noqa: E402
from controller.hall_status import birth, telemetry  # noqa: E402
from controller.link import HallLink  # noqa: E402
from controller.outbox import Outbox  # noqa: E402
from hal.cash import Escrow, Stacked  # noqa: E402
from hal.device import DeviceContext  # noqa: E402
from hal.emulators.simports import SimPorts  # noqa: E402
from hall.broker import start_broker  # noqa: E402
from transactions import records  # noqa: E402
from transactions.boss import http_boss  # noqa: E402
from transactions.customer import ScriptedCustomer  # noqa: E402
from transactions.flow import Hardware, Services  # noqa: E402
from transactions.journal import Journal  # noqa: E402
from transactions.service import run_flow  # noqa: E402

PHONE = "13800138000"
KIOSK, HALL = "K-BENCH", "H-BENCH"
QUIET_S = 0.04  # the link counts as idle once nothing moved for this long


def write_config(tmp: Path, mqtt_port: int, boss_url: str, backlog: int) -> Path:
    """A kiosk.toml as a site would write it; ports say sim: (the loader rewrites them anyway)."""
    cctalk = 'port = "sim:cctalk"\necho = false\npoll_interval_ms = 20\nreply_timeout_ms = 50'
    path = tmp / "kiosk.toml"
    path.write_text(f"""
[kiosk]
id = "{KIOSK}"
hall = "{HALL}"
simulate = true
state_dir = "{tmp}/state"
runtime_dir = "{tmp}/run"
[mqtt]
port = {mqtt_port}
[boss]
via = "url"
url = "{boss_url}"
timeout_s = 2.0
[flows]
idle_timeout = 5.0
stack_timeout = 2.0
drain_time = 0.05
max_outbox = {max(20000, 2 * backlog)}  # the backlog must not trip the flows' outbox_full gate
[devices.bill]
driver = "cctalk-bill"
{cctalk}
[devices.coin]
driver = "cctalk-coin"
{cctalk}
[devices.hopper]
driver = "cctalk-hopper"
coin_fen = 100
{cctalk}
[devices.printer]
driver = "escpos"
port = "sim:escpos"
timeout = 0.3
[devices.modem]
driver = "gsm-modem"
port = "sim:modem"
backoff_s = 0.01
command_timeout_s = 0.5
prompt_timeout_s = 0.5
result_timeout_s = 1.0
""")
    return path


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


class KioskView:
    """What controller/hall_status.py reads of a Kiosk, so the birth and telemetry the link
    publishes (and their journal reads) are kioskd's own."""

    def __init__(self, config: config_mod.Config, journal: Any, devices: DeviceSet, outbox: Outbox) -> None:
        self.config, self.journal, self.devices, self.outbox = config, journal, devices, outbox
        self.state = "ready"
        self.started_at = time.time()
        self.disabled_services: set[str] = set()
        self.cash_inhibited = False
        self.link: HallLink | None = None

    @property
    def outbox_depth(self) -> int:
        return self.outbox.depth

    def alarms(self) -> list[str]:
        return ["outbox_full"] if self.outbox.full else []


async def start_bosssim(db: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "bosssim", "--port", "0", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
    match = re.search(r"http://[\d.]+:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"bosssim did not start: {line!r}")
    return proc, match.group(0)


class Halld:
    """halld as a child process; pause()/resume() (SIGSTOP/SIGCONT) gate the drain."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.log = tmp / "halld.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hall.halld", "serve", "--db", str(tmp / "hall.db"), "--mqtt-port", str(port),
             "--worker", "halld-bench", "--hall", HALL, "--http", "off"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
        self.running = True
        self.run_s = 0.0  # time spent running since the last reset
        self._since = time.perf_counter()

    async def ready(self) -> None:
        async with asyncio.timeout(20):
            while "halld: listening" not in self.log.read_text():
                if self.proc.poll() is not None:
                    raise SystemExit(f"halld exited:\n{self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.02)  # its ready line; bounded by the timeout

    def pause(self) -> None:
        if self.running:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.running = False
            self.run_s += time.perf_counter() - self._since

    def resume(self) -> None:
        if not self.running:
            self._since = time.perf_counter()
            os.kill(self.proc.pid, signal.SIGCONT)
            self.running = True

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def settle(outbox: Outbox, background: set[asyncio.Task]) -> None:
    """Until the link is quiet: status publishes done, nothing sent, acked or counted for QUIET_S."""
    async with asyncio.timeout(10):
        while background:
            await asyncio.gather(*background, return_exceptions=True)
        last, since = (outbox.sent, outbox.acked, outbox.depth), time.perf_counter()
        while time.perf_counter() - since < QUIET_S:
            await asyncio.sleep(0.005)
            now = (outbox.sent, outbox.acked, outbox.depth)
            if now != last or background:
                last, since = now, time.perf_counter()


def fill_outbox(conn: Any, rows: int) -> None:
    now = time.time()
    for i in range(rows):
        records.record_device_event(conn, "bench", "paper_low", "near_end", f"backlog row {i}", {"i": i}, now)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


class Drain:
    """One backlog round: rows (lo, hi] of the outbox; ``done(acked)`` of them delivered so far."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.pairs, self.in_topups, self.run_s = 0, 0, 0.0

    def done(self, acked: int) -> int:
        return max(self.lo, min(acked, self.hi)) - self.lo


async def main(backlog: int, rounds: int, max_topups: int, budget_s: float) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-txn-"))
    results: dict[str, dict[str, list[float]]] = {arm: {k: [] for k in ("cpu", "wall", "e2s", "s2j")}
                                                  for arm in ("base", "drain")}
    drains: list[Drain] = []
    boss_proc, url = await start_bosssim(str(tmp / "boss.db"))
    broker = start_broker(tmp / "mosquitto")
    halld = Halld(tmp, broker.port)
    try:
        await halld.ready()
        config = config_mod.load(write_config(tmp, broker.port, url, backlog), simulate=True)
        Path(config.kiosk.state_dir).mkdir(parents=True)
        sim = SimPorts()
        for name in ("cctalk", "escpos", "modem"):
            sim.path(name)
        await sim.started()
        ctx = DeviceContext(simulate=True, sim_ports=sim, runtime_dir=Path(config.kiosk.runtime_dir))
        boss = http_boss(config.boss.url, timeout=config.boss.timeout_s)
        try:
            async with DeviceSet(config, ctx) as devices, \
                    Journal(tmp / "empty.db", kiosk=KIOSK) as empty, \
                    Journal(Path(config.kiosk.state_dir) / "journal.db", kiosk=KIOSK) as full:
                probe = Probe(devices["bill"])
                cash = sim.runner("cctalk")
                hw = Hardware(acceptors=devices.of_kind("cash_acceptor"), hopper=devices.of_kind("payout")[0],
                              printer=devices.of_kind("printer")[0], modem=devices.of_kind("modem")[0])
                # kioskd's wiring (controller/kiosk.py: Kiosk.run, offer_changed, _visit_finished)
                outbox = Outbox(full, config.flows.max_outbox)
                await outbox.load()
                view = KioskView(config, full, devices, outbox)
                link = HallLink(config, full.boot, lambda: birth(view), outbox, lambda: telemetry(view))
                view.link = link
                background: set[asyncio.Task] = set()

                def spawn(coro: Any) -> None:
                    task = asyncio.get_running_loop().create_task(coro)
                    background.add(task)
                    task.add_done_callback(background.discard)

                def offer_changed() -> None:
                    if link.connected.is_set():
                        spawn(link.publish_status())

                async def outbox_moved() -> None:
                    outbox.wake()
                    await outbox.refresh()

                outbox.on_change = offer_changed
                arms = {"base": Services(journal=empty, hw=hw, boss=boss, config=config.flows),
                        "drain": Services(journal=full, hw=hw, boss=boss, config=config.flows)}

                def on_show(key: str, fmt: dict) -> None:
                    probe.shown(key)
                    if key == "insert_cash":
                        cash.control("insert_bill", {"value": 1000})

                async def topup(arm: str, drain: Drain | None) -> None:
                    """One top-up, measured when ``drain`` is given; in the draining arm halld runs meanwhile."""
                    await settle(outbox, background)
                    draining = drain is not None and arm == "drain"
                    if draining:
                        halld.resume()
                    customer = ScriptedCustomer([PHONE, "1000"], on_show=on_show)
                    n_e2s, n_s2j, acked = len(probe.escrow_to_stack), len(probe.stacked_to_journal), outbox.acked
                    c0, w0 = time.process_time(), time.perf_counter()
                    result = await run_flow(arms[arm], "topup", customer)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                    if draining:
                        halld.pause()
                        drain.in_topups += drain.done(outbox.acked) - drain.done(acked)
                    if arm == "drain":
                        spawn(outbox_moved())  # kioskd's visit-finished hook
                    if result.state != "done":
                        raise SystemExit(f"top-up ({arm}) ended {result.state}: {customer.shown_keys}")
                    if drain is not None:  # warm-up top-ups run without one
                        r = results[arm]
                        r["cpu"].append(cpu)
                        r["wall"].append(wall)
                        r["e2s"].extend(probe.escrow_to_stack[n_e2s:])
                        r["s2j"].extend(probe.stacked_to_journal[n_s2j:])

                halld.pause()  # the drain runs during measured draining top-ups only
                async with link:
                    async with asyncio.timeout(15):
                        await link.connected.wait()
                    for arm in arms:
                        await topup(arm, None)
                    started = time.perf_counter()
                    for _ in range(rounds):
                        lo = await full.read(lambda conn: conn.execute("SELECT MAX(seq) FROM outbox").fetchone()[0])
                        await full.write(fill_outbox, backlog)
                        drain = Drain(lo, lo + backlog)
                        drains.append(drain)
                        await outbox_moved()
                        halld.run_s = 0.0
                        while drain.done(outbox.acked) < backlog and time.perf_counter() - started < budget_s \
                                and len(results["drain"]["cpu"]) < max_topups:
                            await topup("base", drain)
                            await topup("drain", drain)
                            drain.pairs += 1
                        drain.run_s = halld.run_s
                        if drain.done(outbox.acked) < backlog:
                            break
                    measured_s = time.perf_counter() - started
                    halld.resume()
                    await settle(outbox, background)
                    acked, rewinds, connects = outbox.acked, outbox.rewinds, link.connects
        finally:
            await boss.close()
            await sim.stop()
    finally:
        halld.stop()
        broker.stop()
        boss_proc.terminate()
        boss_proc.wait(5)
    report(results, drains, backlog, acked, measured_s, rewinds, connects)


def report(results: dict[str, dict[str, list[float]]], drains: list[Drain], backlog: int, acked: int,
           measured_s: float, rewinds: int, connects: int) -> None:
    ms = 1000.0
    n = len(results["drain"]["cpu"])
    print(f"{len(drains)} x a {backlog}-row outbox backlog (device events) drained by kioskd's HallLink + Outbox"
          f" -> mosquitto -> halld (SQLite)")
    print(f"top-ups per arm: {n} (after 1 warm-up), 10.00 yuan each, one bill, real drivers on ptys; "
          f"measured for {measured_s:.1f} s")
    print(f"{'':>24} {'CPU/top-up ms':>14} {'wall/top-up ms':>15} {'escrow->stack p50/p99 ms':>25} "
          f"{'stacked->journalled p50/p99 ms':>31}")
    rows = {}
    for arm, label in (("base", "empty outbox, link idle"), ("drain", "backlog draining")):
        r = results[arm]
        rows[arm] = v = (statistics.mean(r["cpu"]) * ms, statistics.mean(r["wall"]) * ms,
                         pct(r["e2s"], .5) * ms, pct(r["e2s"], .99) * ms, pct(r["s2j"], .5) * ms,
                         pct(r["s2j"], .99) * ms)
        print(f"{label:>24} {v[0]:14.2f} {v[1]:15.1f} {v[2]:11.2f} / {v[3]:8.2f}    {v[4]:13.2f} / {v[5]:10.2f}")
    base, load = rows["base"], rows["drain"]
    print(f"ratio draining/baseline: CPU {load[0] / base[0]:.2f}x, wall {load[1] / base[1]:.2f}x, "
          f"escrow->stack p50 {load[2] / base[2]:.2f}x p99 {load[3] / base[3]:.2f}x, "
          f"stacked->journalled p50 {load[4] / base[4]:.2f}x p99 {load[5] / base[5]:.2f}x")
    for i, d in enumerate(drains, 1):
        done = d.done(acked)
        print(f"drain {i}: {done} of {backlog} rows acked by halld ({d.in_topups} within measured top-ups) over "
              f"{d.pairs} pairs, {done / d.run_s if d.run_s else 0:.0f} rows/s over the {d.run_s:.1f} s halld ran; "
              f"finished: {'yes' if done == backlog else f'no, {backlog - done} rows left'}")
    in_topups = sum(d.in_topups for d in drains)
    if in_topups:
        extra_us = (load[0] - base[0]) * n / in_topups * ms
        print(f"extra controller CPU while draining: {extra_us:.0f} us per backlog row acked within a top-up; "
              f"rewinds {rewinds}, link connects {connects}")
    print("(CPU is this process's: flows, drivers, journal threads, the in-process emulators and, draining, the hall "
          "link; halld, mosquitto and bosssim excluded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5, help="backlogs drained one after another (more samples)")
    parser.add_argument("--max-topups", type=int, default=400, help="per arm; the run stops earlier once drained")
    parser.add_argument("--budget-s", type=float, default=75.0, help="measurement time limit")
    args = parser.parse_args()
    asyncio.run(main(args.backlog, args.rounds, args.max_topups, args.budget_s))

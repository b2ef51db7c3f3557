"""ccTalk driver costs over a real pty: poll round trip, CPU per poll, event -> callback latency.

    /work/main/.venv/bin/python bench/cctalk.py [--polls 2000] [--coins 40]

The emulator runs in a subprocess (``python -m hal.emulators cctalk --pty``) so the CPU time
measured here is the driver side only. Baseline, measured in the same run: a raw pty echo
round trip (a subprocess that writes back what it reads) through the same ByteLink. Numbers,
not pass/fail.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hal.cash import CoinAccepted  # noqa: E402
from hal.cctalk.bus import CcTalkBus  # noqa: E402
from hal.cctalk.coin import CcTalkCoinAcceptor  # noqa: E402
from hal.device import DeviceContext  # noqa: E402
from hal.emulators.control import call  # noqa: E402
from hal.protocols.cctalk import Header  # noqa: E402
from hal.transport import open_link  # noqa: E402

ECHO_SERVER = r"""
import os, sys, tty
master, slave = os.openpty()
tty.setraw(slave)
print(os.ttyname(slave), flush=True)
while True:
    data = os.read(master, 4096)
    os.write(master, data)
"""

POLL_BYTES = 5 + 16  # 229 request (N=0) + reply with 11 data bytes (§1.2: N + 5 each)


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def spawn(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=os.path.join(os.path.dirname(__file__), ".."))
    line = proc.stdout.readline().strip()  # "NAME: serving /dev/pts/N" or the bare path
    return proc, line.split()[-1]


async def baseline(n: int) -> list[float]:
    proc, path = spawn([sys.executable, "-c", ECHO_SERVER])
    link = await open_link(path)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            link.write(b"\x02\x00\x01\xe5\x18")
            got = b""
            while len(got) < 5:
                got += await link.read(1.0)
            times.append(time.perf_counter() - t0)
    finally:
        await link.close()
        proc.terminate()
        proc.wait()
    return times


async def polls(path: str, n: int) -> tuple[list[float], float]:
    bus = CcTalkBus(path, echo=False)
    await bus.open()
    times = []
    cpu0 = time.process_time()
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            await bus.transact(2, Header.READ_BUFFERED_CREDIT)
            times.append(time.perf_counter() - t0)
    finally:
        cpu = time.process_time() - cpu0
        await bus.close()
    return times, cpu / n


async def latency(path: str, sock: str, coins: int, poll_ms: int) -> list[float]:
    ctx = DeviceContext()
    coin = CcTalkCoinAcceptor("coin", CcTalkCoinAcceptor.Options(port=path, echo=False, poll_interval_ms=poll_ms), ctx)
    await coin.start()
    await coin.set_inhibit(False)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def consume() -> None:
        async for event in coin.events():
            if isinstance(event, CoinAccepted):
                arrived.put_nowait(time.perf_counter())

    consumer = asyncio.create_task(consume())
    out = []
    try:
        for i in range(coins):
            await asyncio.sleep((i * 0.037) % (poll_ms / 1000))  # spread inserts over the poll phase
            await call(sock, "insert_coin", value=100)
            t0 = time.perf_counter()
            out.append(await asyncio.wait_for(arrived.get(), 2.0) - t0)
    finally:
        consumer.cancel()
        await coin.stop()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=2000)
    ap.add_argument("--coins", type=int, default=40)
    args = ap.parse_args()

    base = await baseline(args.polls)
    sock = os.path.join(tempfile.mkdtemp(), "emu.sock")
    proc, path = spawn([sys.executable, "-m", "hal.emulators", "cctalk", "--pty", "--control", sock])
    try:
        rtt, cpu = await polls(path, args.polls)
        lat = await latency(path, sock, args.coins, 200)
    finally:
        proc.terminate()
        proc.wait()

    wire = POLL_BYTES * 10 / 9600  # 8N1: 10 bit times per byte
    ms = 1000
    print(f"baseline  raw pty echo round trip (5 bytes): p50 {statistics.median(base) * ms:.3f} ms  "
          f"p99 {pct(base, 99) * ms:.3f} ms  (n={len(base)})")
    print(f"ccTalk    229 poll round trip over pty:       p50 {statistics.median(rtt) * ms:.3f} ms  "
          f"p99 {pct(rtt, 99) * ms:.3f} ms  (n={len(rtt)})")
    print(f"          ratio poll / baseline (p50):        {statistics.median(rtt) / statistics.median(base):.1f}x")
    print(f"          driver CPU per poll:                {cpu * 1e6:.0f} us  "
          f"(= {cpu / (0.2) * 100:.3f} % of one core at one poll per 200 ms)")
    print(f"          wire time at 9600 8N1 ({POLL_BYTES} bytes):   {wire * ms:.1f} ms  "
          f"(pty poll is {wire / statistics.median(rtt):.0f}x faster than the real line)")
    print(f"event -> callback latency at 200 ms polling:  p50 {statistics.median(lat) * ms:.1f} ms  "
          f"p99 {pct(lat, 99) * ms:.1f} ms  (n={len(lat)}; expected ~100 ms mean, <= 200 ms + one poll)")


if __name__ == "__main__":
    asyncio.run(main())

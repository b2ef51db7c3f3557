"""The simulated kiosk end to end: real drivers on real ptys against the emulators, bosssim in its
own process over HTTP, a real journal. No test doubles anywhere: what the tests assert is what
the emulators say physically happened (bills stacked, coins paid, cards out, paper cut, SMS sent).

The device set is controller/simulated.toml's: cctalk-coin / cctalk-bill / cctalk-hopper on one
"cctalk" bus emulator (echo off), escpos, crt571, gsm-modem — with small poll intervals for speed.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from hal.cctalk.bill import BillOptions, CcTalkBillValidator
from hal.cctalk.coin import CcTalkCoinAcceptor, CoinOptions
from hal.cctalk.hopper import CcTalkHopper, HopperOptions
from hal.device import DeviceContext, DeviceEvent
from hal.dispenser.crt571 import Crt571Dispenser
from hal.emulators.simports import SimPorts
from hal.modem import GsmModem, GsmModemOptions
from hal.printer.escpos import EscPosOptions, EscPosPrinter
from transactions import records
from transactions.boss import http_boss
from transactions.flow import FlowConfig, Hardware, Services
from transactions.journal import Journal

CCTALK = {"echo": False, "poll_interval_ms": 20, "reply_timeout_ms": 50}  # simulated.toml: echo = false
EMULATORS = ("cctalk", "escpos", "crt571", "modem")


class BossSim:
    """``python -m bosssim`` as a child process on a free loopback port, with its /control/ face."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.proc: subprocess.Popen | None = None
        self.url = ""

    async def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bosssim", "--port", "0", "--db", str(self.db)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        match = re.search(r"http://[\d.]+:\d+", line)
        assert match, f"bosssim did not say where it listens: {line!r} {self.proc.stderr.read() if not line else ''}"
        self.url = match.group(0)
        async with asyncio.timeout(timeout):  # it printed after binding; still, wait for an answer
            while True:
                try:
                    await self.get("/control/ledger")
                    return
                except OSError:
                    await asyncio.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.stderr.close()

    def _http(self, method: str, path: str, body: dict | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    async def get(self, path: str) -> Any:
        return await asyncio.to_thread(self._http, "GET", path, None)

    async def post(self, path: str, body: dict) -> Any:
        return await asyncio.to_thread(self._http, "POST", path, body)

    async def fault(self, **body: Any) -> None:
        assert (await self.post("/control/fault", body))["ok"]

    async def ledger(self) -> dict:
        return await self.get("/control/ledger")

    async def balance(self, phone: str) -> int:
        return (await self.ledger())["accounts"][phone]["balance_fen"]


@dataclass
class Kiosk:
    """The simulated kiosk under test: emulators, drivers, journal, BOSS, and the flows' services."""

    sim: SimPorts
    boss: BossSim
    journal: Journal
    services: Services
    devices: dict[str, Any]
    reports: list[DeviceEvent] = field(default_factory=list)

    def emu(self, name: str, cmd: str, **args: Any) -> Any:
        """A control command to emulator ``name`` (the same commands its control socket takes)."""
        return self.sim.runner(name).control(cmd, args)

    def cash(self) -> dict:
        return self.emu("cctalk", "state")

    async def txn(self, txn: str) -> dict:
        return await self.journal.read(records.get_txn, txn)


def customer_inserting(bills: list[int] = (), coins: list[int] = (), *, kiosk: Kiosk,
                       also: Callable[[str, dict], None] | None = None) -> Callable[[str, dict], None]:
    """An ``on_show`` hook: a customer who feeds cash when the screen says so.

    Bills go in one at a time (the validator draws in the next only after the last left escrow):
    the first at "insert_cash", each next one when the screen shows the new paid total. Coins all
    go in at "insert_cash" (the acceptor buffers five events per poll, §1.7).
    """
    bills, coins = list(bills), list(coins)

    def on_show(key: str, fmt: dict) -> None:
        if key == "insert_cash":
            for c in coins:
                assert kiosk.emu("cctalk", "insert_coin", value=c) == "accepted"
            coins.clear()
        if key in ("insert_cash", "paid_so_far", "bill_too_large", "note_returned") and bills:
            assert kiosk.emu("cctalk", "insert_bill", value=bills.pop(0)) in ("escrow", "stacked")
        if also is not None:
            also(key, fmt)
    return on_show


@pytest.fixture
async def bosssim(tmp_path):
    boss = BossSim(tmp_path / "boss.db")
    await boss.start()
    yield boss
    boss.stop()


@pytest.fixture
def flow_config() -> FlowConfig:
    return FlowConfig(idle_timeout=3.0, stack_timeout=2.0, take_timeout=0.3, drain_time=0.1)


@pytest.fixture
async def kiosk(tmp_path, bosssim, flow_config):
    sim = SimPorts()  # no control sockets: the tests call the runners directly, in this loop
    reports: list[DeviceEvent] = []
    ctx = DeviceContext(report=reports.append, simulate=True, sim_ports=sim)
    for name in EMULATORS:
        sim.path(name)
    await sim.started()
    devices = {
        "coin": CcTalkCoinAcceptor("coin", CoinOptions(port="sim:cctalk", **CCTALK), ctx),
        "bill": CcTalkBillValidator("bill", BillOptions(port="sim:cctalk", route_timeout_ms=400, **CCTALK), ctx),
        "hopper": CcTalkHopper("hopper", HopperOptions(port="sim:cctalk", coin_fen=100, **CCTALK), ctx),
        "printer": EscPosPrinter("printer", EscPosOptions(port="sim:escpos", timeout=0.3), ctx),
        "cards30": Crt571Dispenser("cards30", Crt571Dispenser.Options(port="sim:crt571", poll_interval_s=0.02,
                                                                       response_timeout_s=1.0), ctx),
        "modem": GsmModem("modem", GsmModemOptions(port="sim:modem", backoff_s=0.01, command_timeout_s=0.5,
                                                   prompt_timeout_s=0.5, result_timeout_s=1.0), ctx),
    }
    started = []
    boss = http_boss(bosssim.url, timeout=1.0)
    try:
        for dev in devices.values():
            await dev.start()
            started.append(dev)
        async with Journal(tmp_path / "journal.db", kiosk="K01") as journal:
            hw = Hardware(acceptors=[devices["bill"], devices["coin"]], hopper=devices["hopper"],
                          printer=devices["printer"], dispensers={3000: devices["cards30"]}, modem=devices["modem"])
            services = Services(journal=journal, hw=hw, boss=boss, config=flow_config)
            yield Kiosk(sim, bosssim, journal, services, devices, reports)
    finally:
        await boss.close()
        for dev in reversed(started):
            await dev.stop()
        await sim.stop()

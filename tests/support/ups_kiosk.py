"""A simulated kiosk with a UPS monitor, run in the caller's loop: the power-fail drill's bed
(tests/controller/test_power_fail.py, bench/powerfail.py).

Its devices are the cash bus emulator (coin, bill, hopper), the card dispenser emulator and the
INA219 register model the driver polls (``ups(kiosk)``), and with ``panel=True`` the GPIO panel on
gpiozero's MockFactory (``door(kiosk, open)`` drives its door switch from a thread, as a real edge
arrives); the hall link points at a port nobody listens on and just retries.
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from controller.config import load
from controller.kiosk import Kiosk
from hal.sensors.base import SIM_BUS_KEY

from .kioskd import write_config

DEVICES = """
[flows]
idle_timeout = 30.0
drain_time = 0.1
card_prices = { "3000" = 3000 }

[sales]
card_dispensers = { "3000" = "cards" }

[devices.power]
driver = "ina219"
bus = -1
poll_interval_s = {poll}
power_fail_v = 11.0
power_ok_v = 11.8
battery_low_v = 10.5

[devices.coin]
driver = "cctalk-coin"
port = "sim:cctalk"
poll_interval_ms = 20

[devices.bill]
driver = "cctalk-bill"
port = "sim:cctalk"
poll_interval_ms = 20

[devices.hopper]
driver = "cctalk-hopper"
port = "sim:cctalk"
coin_fen = 100
poll_interval_ms = 20

[devices.cards]
driver = "crt571"
port = "sim:crt571"
poll_interval_s = 0.02
"""


PANEL = """
[devices.panel]
driver = "gpio-panel"
pin_factory = "mock"
door_pin = 17
tamper_pin = 27
settle_ms = 5
"""
DOOR_PIN, TAMPER_PIN = 17, 27


async def until(what, timeout: float = 15.0):
    async with asyncio.timeout(timeout):
        while not (value := what()):
            await asyncio.sleep(0.01)
    return value


async def start(tmp: Path, poll_s: float = 0.02, panel: bool = False) -> tuple[Kiosk, asyncio.Task]:
    """kioskd's ``run()`` as a task, once it serves."""
    devices = DEVICES.replace("{poll}", str(poll_s)) + (PANEL if panel else "")
    path = write_config(tmp, 9, devices, kiosk_extra="simulate = true")
    k = Kiosk(load(path, simulate=True))
    run = asyncio.get_running_loop().create_task(k.run())
    await until(lambda: k.state in ("ready", "degraded") or run.done())
    if run.done():
        raise RuntimeError(f"kioskd stopped while starting: {run.exception()!r}")
    return k, run


@contextlib.asynccontextmanager
async def running(tmp: Path, poll_s: float = 0.02, panel: bool = False):
    """A started kiosk for one test (its task as ``run_task``), asked to stop afterwards if still running."""
    k, run = await start(tmp, poll_s=poll_s, panel=panel)
    k.run_task = run
    yield k
    if not run.done():
        k.stop_requested.set()
        await asyncio.wait_for(run, 30)


def shown(k: Kiosk) -> set[str]:
    """The message keys on the customer's screen now."""
    return {s["key"] for s in k.desk.screen().get("shown", [])}


def ups(k: Kiosk):
    """The INA219 model the driver reads: set ``bus_mv`` to play the UPS rail."""
    return k.devices.ctx.shared[SIM_BUS_KEY].chip(0x40)


async def door(k: Kiosk, open_: bool, pin_no: int = DOOR_PIN) -> None:
    """The technician opens (or shuts) the panel door (or the tamper switch, ``pin_no=TAMPER_PIN``):
    the switch's pin driven from a worker thread."""
    pin = k.devices.ctx.shared["gpio-mock"].pin(pin_no)
    await asyncio.to_thread(pin.drive_high if open_ else pin.drive_low)  # a switch to ground: open = high


def emu(k: Kiosk, name: str, cmd: str, **args):
    return k.sim_ports.runner(name).control(cmd, args)


def accepting(k: Kiosk, device: str = "coin") -> bool:
    state = emu(k, "cctalk", "state")[device]
    return bool(state["master_enabled"] and state["inhibit_mask"])

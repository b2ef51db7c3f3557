"""kioskd's parts composed in one place: start order, stop order and cleanup are read top to bottom."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from hal.device import DeviceContext, DeviceEvent
from hal.emulators.model import ControlError

from . import __version__, config as config_mod
from .admission import Admission
from .api import LocalApi
from .devices import DeviceSet, log_event
from .link import HallLink
from .logs import fields
from .sdnotify import Notifier, watchdog_interval

log = logging.getLogger("kioskd")


class Kiosk:
    def __init__(self, config: config_mod.Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.admission = Admission()
        self.state = "starting"
        self.started_at = time.time()
        self.stop_requested = asyncio.Event()
        self.devices: DeviceSet | None = None
        self.link: HallLink | None = None
        self.sim_ports: Any = None
        self.session = 0
        self.journal: Any = None
        self.desk: Any = None
        self.outbox_depth = 0
        self._critical: list[asyncio.Task] = []

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "kiosk": self.config.kiosk.id,
            "hall": self.config.kiosk.hall,
            "state": self.state,
            "session": self.session,
            "firmware": __version__,
            "config_hash": self.config.raw_hash,
            "simulate": self.config.simulate,
            "uptime_s": round(time.time() - self.started_at, 1),
            "outbox": self.outbox_depth,
            "hall_link": bool(self.link and self.link.connected.is_set()),
            "devices": self.devices.status() if self.devices else {},
        }

    def _set_state(self, state: str) -> None:
        self.state = state
        self.notifier.status(self._one_line())

    def _one_line(self) -> str:
        devices = self.devices.status() if self.devices else {}
        bad = [n for n, d in devices.items() if d["health"] == "fault"]
        line = f"{self.state}; {len(devices)} devices"
        return line + (f", fault: {', '.join(bad)}" if bad else "")

    # -- events -----------------------------------------------------------------------------
    def _report(self, event: DeviceEvent) -> None:
        log_event(event)
        if self.journal is not None:
            from transactions import books

            async def journal_it() -> None:
                await books.device_event(self.journal, event)
                self.outbox_depth += 1
                if self.link:
                    self.link.wake()

            asyncio.get_running_loop().create_task(journal_it())

    def _visit_finished(self) -> None:
        async def refresh() -> None:
            from transactions import books

            self.outbox_depth = await books.outbox_depth(self.journal)
            if self.link:
                self.link.wake()

        asyncio.get_running_loop().create_task(refresh())

    # -- safety: door, tamper, power ---------------------------------------------------------
    def _wire_safety(self) -> None:
        """Door or tamper open: no new customers and every acceptor inhibited at once (< 100 ms).
        Power fail: the same, then a clean stop before the battery runs out."""
        assert self.devices is not None
        for panel in self.devices.of_kind("panel"):
            panel.on_door_open(lambda event: self._lock_down("door_open"))
            panel.on("door_closed", lambda event: self._unlock("door_open"))
        for device in self.devices.devices.values():
            if hasattr(device, "on_power_fail"):
                device.on_power_fail(lambda reading: self._power_fail())
        if any(panel.door_open for panel in self.devices.of_kind("panel")):
            self._lock_down("door_open")  # a kiosk that boots with its door open takes no money

    async def _close_simulated_cabinet(self) -> None:
        """--simulate: the mock switches start open (pull-ups); a real kiosk boots with its door shut."""
        assert self.devices is not None
        factory = self.devices.ctx.shared.get("gpio-mock")
        for panel in self.devices.of_kind("panel"):
            o = panel.options
            for pin in (o.door_pin, o.tamper_pin, o.cashbox_pin):
                if pin >= 0 and factory is not None:
                    mock = factory.pin(pin)
                    await asyncio.to_thread(mock.drive_low if o.switches_to_ground else mock.drive_high)
            async with asyncio.timeout(2):
                while panel.door_open:
                    await asyncio.sleep(0.01)

    def _inhibit_acceptors(self) -> None:
        assert self.devices is not None
        for acceptor in self.devices.of_kind("cash_acceptor"):
            asyncio.get_running_loop().create_task(acceptor.set_inhibit(True), name=f"inhibit-{acceptor.name}")

    def _lock_down(self, reason: str) -> None:
        self._inhibit_acceptors()
        self.admission.close(reason)
        self._set_state("safe")
        log.warning("locked down", extra=fields(reason=reason))

    def _unlock(self, reason: str) -> None:
        if self.admission.closed_because == reason and not self.stop_requested.is_set():
            self.admission.open()
            self._set_state("ready" if self.devices and self.devices.healthy() else "degraded")
            log.info("unlocked", extra=fields(reason=reason))

    def _power_fail(self) -> None:
        self._lock_down("power_fail")
        self.stop_requested.set()

    # -- commands of the local API -----------------------------------------------------------
    def _register_commands(self, api: LocalApi) -> None:
        api.command("status", lambda args: self.status())
        api.command("devices", lambda args: self.devices.status() if self.devices else {})
        api.command("test", self._cmd_test)
        assert self.desk is not None
        desk = self.desk
        api.command("menu", lambda args: desk.menu())
        api.command("begin", lambda args: desk.begin(str(args["service"])))
        api.command("screen", lambda args: desk.screen())
        api.command("answer", lambda args: desk.answer(args["value"], args.get("n")))
        api.command("cancel", lambda args: desk.cancel())
        api.command("emu", self._cmd_emu)
        api.command("sim_gpio", self._cmd_sim_gpio)

    async def _cmd_test(self, args: dict[str, Any]) -> str:
        assert self.devices is not None
        name = args.get("device", "")
        matches = [d for n, d in self.devices.devices.items() if name in (n, d.kind, self.devices.drivers[n])]
        if not matches:
            raise ControlError(f"no device {name!r}; devices: {', '.join(self.devices.devices)}")
        results = []
        for device in matches:
            try:
                results.append(await device.self_test())
            except Exception as exc:  # a failing device is an answer, not a crash
                results.append(f"{device.name}: FAILED: {exc}")
        return "\n".join(results)

    def _cmd_emu(self, args: dict[str, Any]) -> Any:
        if self.sim_ports is None:
            raise ControlError("emulators exist only in --simulate")
        name = args.pop("name", "")
        if name not in self.sim_ports.ports:
            raise ControlError(f"no emulator {name!r}; running: {', '.join(self.sim_ports.ports)}")
        cmd = args.pop("emu_cmd", "")
        return self.sim_ports.runner(name).control(cmd, args)

    def _cmd_sim_gpio(self, args: dict[str, Any]) -> Any:
        """--simulate: drive a mock GPIO input as the hardware would (door switch, buttons)."""
        if self.sim_ports is None or self.devices is None:
            raise ControlError("mock GPIO exists only in --simulate")
        factory = self.devices.ctx.shared.get("gpio-mock")
        if factory is None:
            raise ControlError("no GPIO device in this simulated kiosk")
        pin = factory.pin(int(args["pin"]))
        threading.Thread(target=pin.drive_high if args.get("high") else pin.drive_low).start()
        return None

    # -- signals ----------------------------------------------------------------------------
    def _reload(self) -> None:
        """SIGHUP: re-read kiosk.toml; apply what can change live, say what needs a restart."""
        self.notifier.reloading()
        try:
            new = config_mod.load(self.config.path, simulate=self.config.simulate)
        except config_mod.ConfigError as exc:
            log.error("reload refused: %s", exc)
        else:
            logging.getLogger().setLevel(new.kiosk.log_level.upper())
            if new.devices != self.config.devices or new.mqtt != self.config.mqtt:
                log.warning("devices or mqtt changed: they take effect at the next restart")
            self.config = new
            log.info("configuration reloaded", extra=fields(config_hash=new.raw_hash))
        self.notifier.ready(self._one_line())

    # -- watchdog ---------------------------------------------------------------------------
    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 only while the loop turns and every critical task is alive."""
        while True:
            await asyncio.sleep(interval)
            dead = [t.get_name() for t in self._critical if t.done()]
            if dead:
                log.error("critical task stopped; withholding watchdog", extra=fields(tasks=dead))
                continue
            self.notifier.watchdog()

    # -- lifecycle --------------------------------------------------------------------------
    def _services(self, journal: Any) -> Any:
        """The flows' view of the kiosk: hardware by role, the BOSS, the flow settings."""
        from transactions import Hardware, Services, http_boss

        assert self.devices is not None
        devices = self.devices
        dispensers = {int(face): devices[name] for face, name in self.config.sales.card_dispensers.items()}
        if not dispensers and devices.of_kind("dispenser"):
            dispensers = {face: devices.of_kind("dispenser")[0] for face in self.config.flows.card_prices}
        hw = Hardware(
            acceptors=devices.of_kind("cash_acceptor"),
            hopper=next(iter(devices.of_kind("payout")), None),
            printer=next(iter(devices.of_kind("printer")), None),
            dispensers=dispensers,
            modem=next(iter(devices.of_kind("modem")), None),
        )
        boss = http_boss(self.config.boss.url, timeout=self.config.boss.timeout_s) if self.config.boss.url else None
        return Services(journal=journal, hw=hw, boss=boss, config=self.config.flows)

    async def run(self) -> int:
        from transactions import Journal, books, recover

        from .desk import Desk

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        kiosk = self.config.kiosk
        runtime_dir = Path(kiosk.runtime_dir)
        runtime_dir.mkdir(parents=True, exist_ok=True)
        state_dir = Path(kiosk.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            journal = await stack.enter_async_context(
                Journal(state_dir / "journal.db", kiosk=kiosk.id, version=__version__))
            self.journal = journal
            self.session = journal.boot
            log.info("kioskd starting", extra=fields(kiosk=kiosk.id, hall=kiosk.hall, session=self.session,
                                                     simulate=kiosk.simulate, config=self.config.path))
            if kiosk.simulate:
                from hal.emulators.simports import SimPorts

                self.sim_ports = SimPorts(control_dir=runtime_dir)
                stack.push_async_callback(self.sim_ports.stop)
            ctx = DeviceContext(report=self._report, simulate=kiosk.simulate, runtime_dir=runtime_dir,
                                sim_ports=self.sim_ports)
            self.devices = await stack.enter_async_context(DeviceSet(self.config, ctx))
            if self.sim_ports:
                await self.sim_ports.started()
                await self._close_simulated_cabinet()
            self._wire_safety()
            services = self._services(journal)
            if services.boss is not None:
                stack.push_async_callback(services.boss.close)
            for item in await recover(services):
                log.warning("recovered a transaction left open", extra=fields(recovered=repr(item)))
            self.desk = Desk(services, self.admission, self.config.flows.idle_timeout)
            api = LocalApi(runtime_dir / "kioskd.sock")
            self._register_commands(api)
            await stack.enter_async_context(api)
            self.outbox_depth = await books.outbox_depth(journal)
            if self.admission.closed_because == "starting" or self.admission.closed_because is None:
                self.admission.open()
                self._set_state("ready" if self.devices.healthy() else "degraded")
            self.notifier.ready(self._one_line())
            log.info("ready", extra=fields(state=self.state, devices=len(self.devices.devices)))
            self.link = await stack.enter_async_context(HallLink(self.config, self.session, self.status, journal))
            self._critical.append(self.link.task)
            self.link.acked = await journal.read(lambda conn: conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE delivered = 1").fetchone()[0])
            self.link.on_depth = lambda depth: setattr(self, "outbox_depth", depth)
            self.desk.on_finished = self._visit_finished
            interval = watchdog_interval()
            if interval:
                watchdog = loop.create_task(self._watchdog(interval), name="watchdog")
                stack.callback(watchdog.cancel)
            await self.stop_requested.wait()
            await self._stop()
        log.info("stopped")
        return 0

    async def _stop(self) -> None:
        log.info("stopping", extra=fields(state=self.state))
        self.notifier.stopping()
        self.state = "stopping"
        self.admission.close("stopping")
        if not await self.admission.drain(self.config.kiosk.stop_grace_s):
            log.warning("customer still in flight at the stop deadline; parked by the journal")
            if self.desk:
                await self.desk.park()
        assert self.devices is not None
        await self.devices.safe_state()

"""kioskd's parts composed in one place: start order, stop order and cleanup are read top to bottom."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hal.device import DeviceContext, DeviceEvent
from hal.emulators.model import ControlError
from transactions.cashlock import HALL_INHIBIT, CashLock

from . import __version__, config as config_mod
from .admission import Admission
from .api import LocalApi
from .devices import DeviceSet, log_event
from .link import HallLink
from .outbox import Outbox
from .power import PowerWatch
from .logs import fields
from .sdnotify import Notifier, watchdog_interval

log = logging.getLogger("kioskd")

STATUS_EVERY_S = 0.5


class Kiosk:
    def __init__(self, config: config_mod.Config, notifier: Notifier | None = None,
                 identity: Path | None = None) -> None:
        self.config = config
        self.identity = identity  # first boot: the card's kiosk-identity.toml (controller/enrolment.py)
        self.enrolment: dict[str, Any] | None = None  # while enrolling: what the screen says about it
        self.enrolled: Any = None  # controller.enrolment.Enrolled: id, hall and TLS kept across reloads
        self.notifier = notifier or Notifier()
        self.admission = Admission()
        self.cash_lock = CashLock()  # door open, mains lost, the hall's inhibit: the flows' intake sees it too
        self.state = "starting"
        self.started_at = time.time()
        self.stop_requested = asyncio.Event()
        self.devices: DeviceSet | None = None
        self.link: HallLink | None = None
        self.sim_ports: Any = None
        self.session = 0
        self.journal: Any = None
        self.desk: Any = None
        self.ui: Any = None  # controller.ui.UiServer once the screen is served
        self.outbox: Outbox | None = None
        self.power = PowerWatch(self)
        self.updater: Any = None  # controller/updater.py: the hall's update command, A/B slots
        self.disabled_services: set[str] = set()  # hall commands enable_service / disable_service
        self.exit_code = 0  # 75 after the hall's restart command: Restart=on-failure brings us back
        self._critical: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._status_dirty = False
        self._status_task: asyncio.Task | None = None
        self._config_lock = asyncio.Lock()
        self._watchdog_task: asyncio.Task | None = None

    @property
    def outbox_depth(self) -> int:
        return self.outbox.depth if self.outbox else 0

    def alarms(self) -> list[str]:
        return self.outbox.alarms() if self.outbox else []

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
            "alarms": self.alarms(),
            "hall_link": bool(self.link and self.link.connected.is_set()),
            "hall_online": self.link.hall_online if self.link else None,
            "disabled_services": sorted(self.disabled_services),
            "cash_inhibited": self.cash_inhibited,
            "devices": self.devices.status() if self.devices else {},
            "screen": self.ui.served_url if self.ui is not None else None,  # None: no page served (yet)
        }

    async def hall_status(self) -> dict[str, Any]:
        from .hall_status import birth

        return await birth(self)

    async def telemetry(self) -> dict[str, Any]:
        from .hall_status import telemetry

        return await telemetry(self)

    # -- what is offered: hall commands, alarms -----------------------------------------------
    @property
    def cash_inhibited(self) -> bool:
        """The hall's inhibit_cash is on (controller/commands.py)."""
        return HALL_INHIBIT in self.cash_lock.reasons

    def offered(self, service: str) -> str | None:
        """Why ``service`` is not offered now on top of the flows' own gates, or None."""
        from transactions import SPECS

        if service not in self.config.kiosk.services:
            return "not offered on this kiosk ([kiosk] services in kiosk.toml)"
        if service in self.disabled_services:
            return "disabled by the hall"
        spec = SPECS.get(service)
        if spec is not None and spec.takes_cash:
            if self.cash_inhibited:
                return "cash inhibited by the hall"
            if self.outbox is not None and self.outbox.full:
                return "outbox_full"
        return None

    async def menu(self) -> dict[str, bool]:
        assert self.desk is not None
        return {name: ok and self.offered(name) is None for name, ok in (await self.desk.menu()).items()}

    async def begin(self, service: str) -> int:
        assert self.desk is not None
        reason = self.offered(service)
        if reason is not None:
            raise ControlError(f"service {service!r} is not available now: {reason}")
        return await self.desk.begin(service)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def offer_changed(self) -> None:
        """State, alarms, the offer or the outbox depth moved: the hall's retained status follows,
        at once, then at most every STATUS_EVERY_S — a draining backlog moves the depth on every
        ack, and a status per ack cost the drain ~6% of its publishes (bench/txn.py)."""
        if self.link is None or not self.link.connected.is_set():
            return
        self._status_dirty = True
        if self._status_task is None or self._status_task.done():
            self._status_task = asyncio.get_running_loop().create_task(self._publish_status())
            self._background.add(self._status_task)
            self._status_task.add_done_callback(self._background.discard)

    async def _publish_status(self) -> None:
        assert self.link is not None
        while self._status_dirty:
            self._status_dirty = False
            try:
                await self.link.publish_status()
            except Exception as exc:  # the link went down meanwhile: the next birth carries it all
                log.info("status not republished", extra=fields(error=repr(exc)))
                return
            await asyncio.sleep(STATUS_EVERY_S)  # a rate limit: changes meanwhile go in the next one

    def require_journal(self) -> Any:
        if self.journal is None:
            from .commands import CommandError

            raise CommandError("refused", "kioskd is starting")
        return self.journal

    async def journal_event(self, event: dict[str, Any]) -> None:
        from transactions import records

        await self.require_journal().write(records.enqueue, "event", {**event, "at": time.time()}, time.time())
        await self.outbox_moved()

    async def outbox_moved(self) -> None:
        if self.outbox is not None:
            self.outbox.wake()
            await self.outbox.refresh()

    def _set_state(self, state: str) -> None:
        changed = state != self.state
        self.state = state
        self.notifier.status(self._one_line())
        if changed:
            self.offer_changed()

    def _one_line(self) -> str:
        devices = self.devices.status() if self.devices else {}
        bad = [n for n, d in devices.items() if d["health"] == "fault"]
        line = f"{self.state}; {len(devices)} devices"
        return line + (f", fault: {', '.join(bad)}" if bad else "")

    # -- events -----------------------------------------------------------------------------
    def _report(self, event: DeviceEvent) -> None:
        log_event(event)
        if self.outbox is not None:  # stored for the hall, or counted past the outbox's cap
            self._spawn(self.outbox.device_event(event))

    def _visit_finished(self) -> None:
        self._spawn(self.outbox_moved())

    # -- safety: door, tamper, power ---------------------------------------------------------
    def _wire_safety(self) -> None:
        """Door or tamper open: no new customers and every acceptor inhibited at once (< 100 ms).
        Power fail: the same, then a clean stop before the battery runs out (controller/power.py)."""
        assert self.devices is not None
        for panel in self.devices.of_kind("panel"):
            panel.on_door_open(lambda event: self._lock_down(event.kind))  # door_open or tamper_open
            panel.on("door_closed", lambda event: self._unlock("door_open"))
            panel.on("tamper_closed", lambda event: self._unlock("tamper_open"))  # each switch its own reason
        for device in self.devices.devices.values():
            if hasattr(device, "on_power_fail"):
                self.power.watch(device)
        for panel in self.devices.of_kind("panel"):  # a kiosk that boots with its door open takes no money
            for switch in ("door", "tamper"):
                if panel.closed.get(switch) is False:
                    self._lock_down(f"{switch}_open")

    def _inhibit_acceptors(self) -> None:
        assert self.devices is not None
        for acceptor in self.devices.of_kind("cash_acceptor"):
            asyncio.get_running_loop().create_task(acceptor.set_inhibit(True), name=f"inhibit-{acceptor.name}")

    def _lock_down(self, reason: str) -> None:
        self.cash_lock.engage(reason)  # first: an intake about to enable its acceptors must see it
        self._inhibit_acceptors()
        self.admission.close(reason)
        self._set_state("safe")
        log.warning("locked down", extra=fields(reason=reason))

    def _unlock(self, reason: str) -> None:
        """One reason for the lock-down is gone; serve again only if it was the last one."""
        self.cash_lock.release(reason)
        if self.admission.closed_because != reason or self.stop_requested.is_set():
            return  # closed for something else (starting, stopping) or already for another reason
        still = [r for r in self.cash_lock.reasons if r != HALL_INHIBIT]  # the hall's alone closes no doors
        if still:  # e.g. the mains back with the door still open
            self.admission.close(still[-1])
            log.warning("still locked down", extra=fields(released=reason, reasons=still))
            return
        self.admission.open()
        self._set_state("ready" if self.devices and self.devices.healthy() else "degraded")
        log.info("unlocked", extra=fields(reason=reason))

    # -- commands of the local API -----------------------------------------------------------
    def _register_commands(self, api: LocalApi) -> None:
        api.command("status", lambda args: self.status())
        api.command("devices", lambda args: self.devices.status() if self.devices else {})
        api.command("test", self._cmd_test)
        assert self.desk is not None
        desk = self.desk
        api.command("menu", lambda args: self.menu())
        api.command("begin", lambda args: self.begin(str(args["service"])))
        api.command("screen", lambda args: desk.screen())
        api.command("answer", lambda args: desk.answer(args["value"], args.get("n")))
        api.command("cancel", lambda args: desk.cancel())
        api.command("emu", self._cmd_emu)
        api.command("sim_gpio", self._cmd_sim_gpio)

    async def _cmd_test(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """One result per matching device: {"device", "ok", "result"}; a self test that raises failed."""
        assert self.devices is not None
        name = args.get("device", "")
        matches = [d for n, d in self.devices.devices.items() if name in (n, d.kind, self.devices.drivers[n])]
        if not matches:
            raise ControlError(f"no device {name!r}; devices: {', '.join(self.devices.devices)}")
        results = []
        for device in matches:
            try:
                results.append({"device": device.name, "ok": True, "result": await device.self_test()})
            except Exception as exc:  # a failing device is an answer, not a crash
                results.append({"device": device.name, "ok": False, "result": f"{device.name}: FAILED: {exc}"})
        return results

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
            new = config_mod.load(self.config.path, simulate=self.config.simulate, settings=self.config.settings or None)
        except config_mod.ConfigError as exc:
            log.error("reload refused: %s", exc)
        else:
            self._apply(new, "configuration reloaded")
        self.notifier.ready(self._one_line())

    def _apply(self, new: config_mod.Config, how: str) -> list[str]:
        """Take a validated config live (SIGHUP, set_config); returns what waits for a restart."""
        if self.enrolled is not None:  # kiosk.toml says "unenrolled": the card and the hall said who we are
            from .enrolment import apply

            new = apply(new, self.enrolled)
        old = self.config
        logging.getLogger().setLevel(new.kiosk.log_level.upper())
        restart = [name for name, a, b in (("devices", old.devices, new.devices), ("sales", old.sales, new.sales),
                                           ("boss", (old.boss.route, old.boss.url), (new.boss.route, new.boss.url)))
                   if a != b]
        restart += [f"mqtt.{f}" for f in ("host", "port", "keepalive_s", "ca_file", "cert_file", "key_file",
                                          "session_expiry_s") if getattr(old.mqtt, f) != getattr(new.mqtt, f)]
        restart += [f"ui.{f}" for f in ("listen", "allow_remote") if getattr(old.ui, f) != getattr(new.ui, f)]
        if restart:
            log.warning("changed settings take effect at the next restart", extra=fields(settings=restart))
        if self.desk is not None:  # flows read their settings per visit
            self.desk.services.config = new.flows
            self.desk.idle_timeout_s = new.flows.idle_timeout
            if self.desk.services.boss is not None:
                self.desk.services.boss.timeout = new.boss.timeout_s
        if self.outbox is not None:
            self.outbox.max_outbox = new.flows.max_outbox
            self.outbox.warn = new.flows.outbox_warn or new.flows.max_outbox // 2
        if self.link is not None:
            self.link.config = dataclasses.replace(new, kiosk=old.kiosk, mqtt=dataclasses.replace(
                old.mqtt, telemetry_interval_s=new.mqtt.telemetry_interval_s))
        self.config = new
        log.info(how, extra=fields(config_hash=new.raw_hash))
        self.offer_changed()
        if self.desk is not None:  # the screen's notices and text size are read per snapshot: push one
            self.desk.on_screen()
        return restart

    async def set_config(self, key: str, value: Any) -> dict[str, Any]:
        """The hall's set_config: validated by the loader kioskd starts with, persisted atomically
        (fsync'd file and directory), then applied as SIGHUP would."""
        done = await self.set_configs({key: value})
        return {"key": key, "value": value, "config_hash": done["config_hash"], "restart_needed": done["restart_needed"]}

    async def set_configs(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Several keys in one validated, atomic write (the hall's apply_settings)."""
        path, over = self.config.path, self.config.settings or None  # over: --settings, else kiosk.toml itself
        async with self._config_lock:  # two set_config at once must not both edit the old text
            text, new = await asyncio.to_thread(config_mod.with_settings, path, settings, simulate=self.config.simulate,
                                                over=over)
            await asyncio.to_thread(config_mod.write_atomically, over or path, text)
            new = config_mod.load(path, simulate=self.config.simulate, settings=over)
            restart = self._apply(new, "configuration set by the hall")
        if self.outbox is not None:
            await self.outbox.refresh()
        return {"config_hash": new.raw_hash, "restart_needed": restart}

    def request_restart(self) -> None:
        """The hall's restart: drain like SIGTERM, then exit 75 so systemd (Restart=on-failure) starts us again."""
        log.warning("restart requested by the hall")
        self.exit_code = 75
        self.stop_requested.set()

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

    def _start_watchdog(self, stack: contextlib.AsyncExitStack) -> None:
        """From the first READY on (systemd checks the watchdog only once start-up is complete)."""
        interval = watchdog_interval()
        if interval and self._watchdog_task is None:
            self._watchdog_task = asyncio.get_running_loop().create_task(self._watchdog(interval), name="watchdog")
            stack.callback(self._watchdog_task.cancel)

    # -- lifecycle --------------------------------------------------------------------------
    async def _serve_screen(self, stack: contextlib.AsyncExitStack) -> None:
        """The customer's screen (controller/ui): bound now, its HTTP code imported on the first page."""
        if self.config.ui.listen and self.ui is None:
            from .ui import UiServer

            self.ui = await stack.enter_async_context(UiServer(self))

    async def _enrol(self, stack: contextlib.AsyncExitStack) -> bool:
        """First boot: enrol at the hall before anything that needs our identity (journal, hall
        link). The screen is served first and says "connecting to the hall" with each attempt;
        no device is opened yet, so no acceptor can take money. READY goes out once the page is
        served, so that kiosk-ui.service (ordered after us) shows it. False: stopped meanwhile."""
        from . import enrolment

        await self._serve_screen(stack)
        if self.ui is not None:
            self.notifier.ready("enrolling at the hall")
            self._start_watchdog(stack)

        def show(p: enrolment.Progress) -> None:
            self.enrolment = None if p.state == "enrolled" else {
                "state": p.state, "kiosk": p.kiosk, "hall": p.hall, "attempt": p.attempt, "error": p.error,
                "retry_at": time.strftime("%H:%M:%S", time.localtime(p.retry_at)) if p.retry_at else None,
                "retry_in_s": round(max(0.0, p.retry_at - time.time()), 1) if p.retry_at else None}
            if self.ui is not None:
                self.ui.changed()

        tls_dir = Path(self.config.kiosk.state_dir) / "tls"
        enrol = asyncio.ensure_future(enrolment.first_boot(self.identity, tls_dir, show, extend_start=self.ui is None))
        stop = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait({enrol, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (enrol, stop):
                if not task.done():
                    task.cancel()
            await asyncio.gather(enrol, stop, return_exceptions=True)
        if not enrol.done() or enrol.cancelled():
            log.info("stopped while enrolling")
            return False
        try:
            self.enrolled = enrol.result()
            self.config = enrolment.apply(self.config, self.enrolled)
        except enrolment.EnrolmentRefused as exc:  # a new token and a new personalise are needed
            print(f"kioskd: {exc}", file=sys.stderr)
            self.exit_code = 1
            return False
        return True

    def _services(self, journal: Any) -> Any:
        """The flows' view of the kiosk: hardware by role, the BOSS, the flow settings."""
        from transactions import Boss, Hardware, Services, http_boss

        assert self.devices is not None
        devices = self.devices
        dispensers = {int(face): devices[name] for face, name in self.config.sales.card_dispensers.items()}
        sims = self.config.sales.sim_dispenser
        card_dispensers = [d for d in devices.of_kind("dispenser") if d.name != sims]
        if not dispensers and card_dispensers:
            dispensers = {face: card_dispensers[0] for face in self.config.flows.card_prices}
        hw = Hardware(
            acceptors=devices.of_kind("cash_acceptor"),
            hopper=next(iter(devices.of_kind("payout")), None),
            printer=next(iter(devices.of_kind("printer")), None),
            dispensers=dispensers,
            modem=next(iter(devices.of_kind("modem")), None),
            id_reader=next(iter(devices.of_kind("id_reader")), None),
            camera=next(iter(devices.of_kind("camera")), None),
            sim_writer=next(iter(devices.of_kind("sim_writer")), None),
            sim_dispenser=devices[sims] if sims else None,
        )
        cfg = self.config.boss
        if cfg.route == "url":
            boss = http_boss(cfg.url, timeout=cfg.timeout_s)
        else:  # docs/mqtt.md "BOSS over the hall"
            from .boss_link import HallBossTransport

            assert self.link is not None
            boss = Boss(HallBossTransport(self.link), timeout=cfg.timeout_s)
        return Services(journal=journal, hw=hw, boss=boss, config=self.config.flows, cash_lock=self.cash_lock)

    async def _link_before_recovery(self, stack: contextlib.AsyncExitStack, journal: Any) -> bool:
        """With the BOSS over the hall, recovery asks the BOSS by key through the link: start the
        link first and give it ``boss.timeout_s`` to connect, or every open BOSS step would be held
        for review just because the link was not up yet. Only when something is left to recover."""
        if self.config.boss.route != "hall":
            return False
        stale = await journal.read(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM transactions WHERE state = 'open' AND boot < ?", (journal.boot,)).fetchone()[0])
        if not stale:
            return False
        await self._enter_link(stack)
        assert self.link is not None
        try:
            async with asyncio.timeout(self.config.boss.timeout_s):
                await self.link.connected.wait()
        except TimeoutError:
            log.warning("hall link not up for recovery: BOSS steps may be held for review")
        return True

    async def _enter_link(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.link is not None
        await stack.enter_async_context(self.link)
        self._critical.append(self.link.task)

    async def run(self) -> int:
        from transactions import Journal, recover

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
            if self.identity is not None and not await self._enrol(stack):
                return self.exit_code
            kiosk = self.config.kiosk  # with the enrolled id and hall
            journal = await stack.enter_async_context(
                Journal(state_dir / "journal.db", kiosk=kiosk.id, version=__version__))
            self.journal = journal
            self.session = journal.boot
            flows = self.config.flows
            self.outbox = Outbox(journal, flows.max_outbox, warn=flows.outbox_warn or flows.max_outbox // 2)
            await self.outbox.load()
            self.outbox.on_change = self.offer_changed
            from .updater import Updater

            self.updater = Updater(self, state_dir)
            self.link = HallLink(self.config, self.session, self.hall_status, self.outbox, self.telemetry)
            from .commands import Commands

            Commands(self, self.link)
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
            self._wire_safety()
            services = self._services(journal)
            if services.boss is not None:
                stack.push_async_callback(services.boss.close)
            link_started = await self._link_before_recovery(stack, journal)
            for item in await recover(services):
                log.warning("recovered a transaction left open", extra=fields(recovered=repr(item)))
            self.desk = Desk(services, self.admission, self.config.flows.idle_timeout)
            api = LocalApi(runtime_dir / "kioskd.sock")
            self._register_commands(api)
            await stack.enter_async_context(api)
            await self._serve_screen(stack)  # already served while enrolling
            if self.ui is not None:
                self.desk.on_screen = self.ui.changed
            await self.outbox.refresh()
            if self.admission.closed_because == "starting" or self.admission.closed_because is None:
                self.admission.open()
                self._set_state("ready" if self.devices.healthy() else "degraded")
            self.notifier.ready(self._one_line())
            log.info("ready", extra=fields(state=self.state, devices=len(self.devices.devices)))
            if not link_started:
                await self._enter_link(stack)
            self.updater.start()  # finish or report what an update left at the last boot
            self.desk.on_finished = self._visit_finished
            self._start_watchdog(stack)
            await self.stop_requested.wait()
            await self._stop()
        log.info("stopped", extra=fields(exit_code=self.exit_code))
        return self.exit_code

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

"""All configured devices as one unit: built from config, started, watched, put safe, stopped.

A device that fails to start does not stop the kiosk: it is marked FAULT and reported, and the
services that need it are refused until a technician mends it.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from hal.device import Device, DeviceContext, DeviceEvent, Health
from hal.registry import load_driver

from .config import Config
from .logs import fields

log = logging.getLogger("kioskd.devices")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class DeviceSet:
    def __init__(self, config: Config, ctx: DeviceContext) -> None:
        self.ctx = ctx
        self.devices: dict[str, Device] = {}
        for name, dev in config.devices.items():
            cls = load_driver(dev.driver)
            self.devices[name] = cls(name, dev.options, ctx)
        self.drivers = {name: dev.driver for name, dev in config.devices.items()}

    def __getitem__(self, name: str) -> Device:
        return self.devices[name]

    def of_kind(self, kind: str) -> list[Device]:
        return [d for d in self.devices.values() if d.kind == kind]

    async def _start_one(self, device: Device) -> None:
        try:
            await asyncio.wait_for(device.start(), START_TIMEOUT_S)
            if device.health is Health.UNKNOWN:
                device.set_health(Health.OK)
        except Exception as exc:  # a broken device must not stop the kiosk
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            device.set_health(Health.FAULT, f"start failed: {detail}")
            device.report("fault", "start_failed", detail)
            log.error("device failed to start", extra=fields(device=device.name, error=detail))

    async def __aenter__(self) -> "DeviceSet":
        await asyncio.gather(*(self._start_one(d) for d in self.devices.values()))
        return self

    async def safe_state(self) -> None:
        async def one(device: Device) -> None:
            try:
                await asyncio.wait_for(device.safe_state(), STOP_TIMEOUT_S)
            except Exception as exc:
                log.error("device safe state failed", extra=fields(device=device.name, error=repr(exc)))

        await asyncio.gather(*(one(d) for d in self.devices.values()))

    async def __aexit__(self, *exc: object) -> None:
        async def one(device: Device) -> None:
            try:
                await asyncio.wait_for(device.stop(), STOP_TIMEOUT_S)
            except Exception as exc:
                log.error("device stop failed", extra=fields(device=device.name, error=repr(exc)))

        await asyncio.gather(*(one(d) for d in self.devices.values()))

    def status(self) -> dict[str, Any]:
        return {
            name: {"driver": self.drivers[name], **device.describe()} for name, device in self.devices.items()
        }

    def healthy(self) -> bool:
        return all(d.health in (Health.OK, Health.DEGRADED) for d in self.devices.values())


def log_event(event: DeviceEvent) -> None:
    level = logging.WARNING if event.kind == "fault" else logging.INFO
    log.log(level, f"{event.kind} {event.code}".strip(), extra=fields(device=event.device, detail=event.detail, **event.data))

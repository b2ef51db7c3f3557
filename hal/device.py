"""What every device driver shares, so kioskd can start, watch and stop any of them alike.

A driver is constructed from its config section (its ``Options`` dataclass), started inside
kioskd's one asyncio loop, and reports what happens through ``DeviceContext.report``. Each
driver declares a safe state (acceptors inhibited, hopper disabled, relays off) that kioskd
enters on shutdown, on power-fail and when the door opens.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar


class Health(str, enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"  # works, but wants attention (paper near end, low stock)
    FAULT = "fault"  # cannot serve customers
    UNKNOWN = "unknown"  # not started, or no answer yet


@dataclass(frozen=True)
class DeviceEvent:
    """Something a device did or suffered, journalled and reported to the hall."""

    device: str  # config name, e.g. "coin"
    kind: str  # "fault", "door_open", "paper_low", "stacker_removed", ...
    code: str = ""  # named code within the kind, e.g. "bill_jammed"
    detail: str = ""  # one line for a technician
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeviceContext:
    """What kioskd hands every driver: how to report, where to put sockets, simulate or not."""

    report: Callable[[DeviceEvent], None] = lambda event: None
    simulate: bool = False
    runtime_dir: Path = Path("/run/kiosk")
    sim_ports: Any = None  # hal.emulators.simports.SimPorts in --simulate, resolves "sim:NAME"
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. one ccTalk bus per port

    def share(self, key: str, factory: Callable[[], Any]) -> Any:
        """One object per key across devices (several ccTalk devices on one multi-drop port)."""
        if key not in self.shared:
            self.shared[key] = factory()
        return self.shared[key]


class DeviceError(Exception):
    """A device could not do what was asked; the message names the device and the reason."""


class Device:
    """Base of every driver: lifecycle, health, safe state.

    Subclasses set ``kind`` (the interface they implement: "cash_acceptor", "payout",
    "printer", "dispenser", "panel", "sensor", "modem") and ``Options`` (a dataclass whose
    fields are the config keys the driver accepts; kioskd validates kiosk.toml against it).
    """

    kind: ClassVar[str] = ""
    Options: ClassVar[type] = object

    def __init__(self, name: str, options: Any, ctx: DeviceContext) -> None:
        self.name = name
        self.options = options
        self.ctx = ctx
        self.health = Health.UNKNOWN
        self.health_detail = ""

    async def start(self) -> None:
        """Open the transport, identify the device, enter a known state."""

    async def stop(self) -> None:
        """Enter the safe state and release the transport. Must not raise."""

    async def safe_state(self) -> None:
        """Put the device where it can do no harm (inhibit, disable, relays off)."""

    async def self_test(self) -> str:
        """Exercise the device once for `kioskctl test`; returns a one-line result."""
        return f"{self.name}: no self test"

    def set_health(self, health: Health, detail: str = "") -> None:
        self.health = health
        self.health_detail = detail

    def describe(self) -> dict[str, Any]:
        """Kind and health for kioskctl, the birth message and telemetry (``status()`` is the
        device's own, e.g. a printer's real-time status)."""
        return {"kind": self.kind, "health": self.health.value, "detail": self.health_detail}

    def report(self, kind: str, code: str = "", detail: str = "", **data: Any) -> None:
        self.ctx.report(DeviceEvent(self.name, kind, code, detail, data))

    async def __aenter__(self) -> "Device":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

"""Which driver a kiosk.toml ``driver = "..."`` names, and which emulator stands in for it.

Imported lazily: kioskd loads only the drivers its config names (Klipper-style), so a kiosk
without a printer never imports python-escpos.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class DriverSpec:
    target: str  # "module:Class" of the Device subclass
    emulator: str | None  # name in hal.emulators.EMULATORS used by --simulate for "sim:" ports


DRIVERS: dict[str, DriverSpec] = {
    # cash (issue: Cash HAL)
    "cctalk-coin": DriverSpec("hal.cctalk.coin:CcTalkCoinAcceptor", "cctalk"),
    "cctalk-bill": DriverSpec("hal.cctalk.bill:CcTalkBillValidator", "cctalk"),
    "cctalk-hopper": DriverSpec("hal.cctalk.hopper:CcTalkHopper", "cctalk"),
    "pulse-acceptor": DriverSpec("hal.pulse:PulseAcceptor", None),
    # peripherals (issue: Peripherals HAL)
    "escpos": DriverSpec("hal.printer.escpos:EscPosPrinter", "escpos"),
    "crt571": DriverSpec("hal.dispenser.crt571:Crt571Dispenser", "crt571"),
    "k720": DriverSpec("hal.dispenser.k720:K720Dispenser", "k720"),
    "gpio-dispenser": DriverSpec("hal.dispenser.gpio:GpioDispenser", None),
    "gpio-panel": DriverSpec("hal.panel:GpioPanel", None),
    "sht3x": DriverSpec("hal.sensors.sht3x:Sht3x", None),
    "ina219": DriverSpec("hal.sensors.ina219:Ina219", None),
    "ds3231": DriverSpec("hal.sensors.ds3231:Ds3231", None),
    "gsm-modem": DriverSpec("hal.modem:GsmModem", "modem"),
    # identity (issue 11)
    "sam-idcard": DriverSpec("hal.idcard.sam:SamIdReader", "idcard"),
    "pcsc-sim": DriverSpec("hal.simcard.writer:PcscSimWriter", None),  # --simulate: private pcscd + virtual USIM
    "camera": DriverSpec("hal.camera:Camera", None),
}


def load_driver(name: str) -> type:
    spec = DRIVERS[name]
    module, _, attr = spec.target.partition(":")
    return getattr(importlib.import_module(module), attr)

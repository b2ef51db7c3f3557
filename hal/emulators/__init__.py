"""Device emulators: the device side of each protocol, for tests, the demo and the rig.

Each emulator is an ``EmulatorModel`` (model.py) run by ``EmulatorRunner`` (runner.py) on a pty,
a serial port or TCP, with a JSON-lines control socket (control.py, docs/emulators.md).
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> "module:Class" of its EmulatorModel; imported only when used.
EMULATORS: dict[str, str] = {
    "cctalk": "hal.emulators.cctalk:CcTalkBus",  # coin 2, bill validator 40, hopper 3 on one bus
    "escpos": "hal.emulators.escpos:EscPosPrinterModel",
    "crt571": "hal.emulators.crt571:Crt571Model",
    "k720": "hal.emulators.k720:K720Model",
    "modem": "hal.emulators.modem:GsmModemModel",
    "idcard": "hal.emulators.idcard:IdCardReaderModel",  # 2nd-generation ID card reader (SAM_V)
}


def create_model(name: str, **options: Any) -> Any:
    try:
        target = EMULATORS[name]
    except KeyError:
        raise ValueError(f"no emulator named {name!r}; known: {', '.join(sorted(EMULATORS))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(**options)

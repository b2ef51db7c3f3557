"""A simulated kiosk with the identity devices: the e2e kiosk (cash, printer, card dispenser, modem,
bosssim) plus the ID reader emulator on a pty, the camera's test source, a second CRT-571 holding
blank SIMs, and the PC/SC writer on real pcscd + vpcd with the virtual USIM.

The SIM dispenser's emulator hands a fresh blank USIM to the reader each time a card leaves its
stack (the next plastic card reaching the IC contacts), as the real machine does.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hal.camera import Camera
from hal.cctalk.bill import BillOptions, CcTalkBillValidator
from hal.cctalk.coin import CcTalkCoinAcceptor, CoinOptions
from hal.cctalk.hopper import CcTalkHopper, HopperOptions
from hal.device import DeviceContext, DeviceEvent
from hal.dispenser.crt571 import Crt571Dispenser
from hal.emulators.simports import SimPorts
from hal.emulators.usim import UsimCard
from hal.idcard.sam import SamIdReader
from hal.printer.escpos import EscPosOptions, EscPosPrinter
from hal.simcard.writer import PcscSimWriter
from tests.e2e.conftest import CCTALK, BossSim, Kiosk
from transactions import pii
from transactions.boss import http_boss
from transactions.flow import FlowConfig, Hardware, Services
from transactions.journal import Journal

EMULATORS = ("cctalk", "escpos", "crt571", "idcard", "crt571-sims")
FAST_CARD = dict(poll_interval_s=0.02, response_timeout_s=1.0)


@dataclass
class IdKiosk(Kiosk):
    usim: Any = None  # the VpcdSlot: .card is the virtual USIM at the writer now
    hall_key: str = field(default="", repr=False)  # the hall's private key (hex): what `halld pii open` would use
    state_dir: Path | None = None

    def place(self, **card: str) -> None:
        self.sim.runner("idcard").control("place_card", card)

    def open_pii(self, blob: str) -> dict:
        return pii.open_sealed(self.hall_key, blob)


def flow_config(public_key: str, **changes: Any) -> FlowConfig:
    base = dict(idle_timeout=3.0, stack_timeout=2.0, take_timeout=0.3, drain_time=0.1, id_timeout=2.0,
                new_number_fen=1000, hall_public_key=public_key)
    return FlowConfig(**{**base, **changes})


@contextlib.asynccontextmanager
async def id_kiosk(tmp_path: Path, bosssim: BossSim, usim: Any, **config: Any):
    private, public = pii.new_key_pair()
    sim = SimPorts()
    reports: list[DeviceEvent] = []
    ctx = DeviceContext(report=reports.append, simulate=True, sim_ports=sim)
    for name in EMULATORS:
        sim.path(name)
    await sim.started()
    sim.model("crt571-sims").cards.on_new_card = lambda: setattr(usim, "card", UsimCard())
    devices = {
        "coin": CcTalkCoinAcceptor("coin", CoinOptions(port="sim:cctalk", **CCTALK), ctx),
        "bill": CcTalkBillValidator("bill", BillOptions(port="sim:cctalk", route_timeout_ms=400, **CCTALK), ctx),
        "hopper": CcTalkHopper("hopper", HopperOptions(port="sim:cctalk", coin_fen=100, **CCTALK), ctx),
        "printer": EscPosPrinter("printer", EscPosOptions(port="sim:escpos", timeout=0.3), ctx),
        "cards30": Crt571Dispenser("cards30", Crt571Dispenser.Options(port="sim:crt571", **FAST_CARD), ctx),
        "sims": Crt571Dispenser("sims", Crt571Dispenser.Options(port="sim:crt571-sims", **FAST_CARD), ctx),
        "idreader": SamIdReader("idreader", SamIdReader.Options(port="sim:idcard", poll_interval_s=0.3,
                                                                command_timeout_s=0.5), ctx),
        "camera": Camera("camera", Camera.Options(source="test"), ctx),
        "sim": PcscSimWriter("sim", PcscSimWriter.Options(reader="Kiosk vpcd 00 00"), DeviceContext(report=reports.append)),
    }
    started = []
    boss = http_boss(bosssim.url, timeout=1.0)
    state = tmp_path / "state"
    try:
        for dev in devices.values():
            await dev.start()
            started.append(dev)
        async with Journal(state / "journal.db", kiosk="K01") as journal:
            hw = Hardware(acceptors=[devices["bill"], devices["coin"]], hopper=devices["hopper"],
                          printer=devices["printer"], dispensers={3000: devices["cards30"]},
                          id_reader=devices["idreader"], camera=devices["camera"], sim_writer=devices["sim"],
                          sim_dispenser=devices["sims"])
            services = Services(journal=journal, hw=hw, boss=boss, config=flow_config(public, **config))
            yield IdKiosk(sim, bosssim, journal, services, devices, reports, usim=usim, hall_key=private,
                          state_dir=state)
    finally:
        await boss.close()
        for dev in reversed(started):
            await dev.stop()
        await sim.stop()


def plaintext_in(data: bytes, card: dict, photo: bytes = b"", jpeg: bytes = b"") -> list[str]:
    """Which of the customer's secrets appear in ``data``, in any encoding a leak would use."""
    import base64

    found = []
    needles = {"id number": [card["id_number"].encode()],
               "name": [card["name"].encode(), card["name"].encode("utf-16-le"), card["name"].encode("gb18030"),
                        card["name"].encode("unicode_escape")],
               "address": [card["address"].encode()]}
    if photo:
        needles["ID photo"] = [photo[:64], photo[:64].hex().encode(), photo[:64].hex().upper().encode(),
                               base64.b64encode(photo[:63])]
    if jpeg:
        needles["live photo"] = [jpeg[200:264], base64.b64encode(jpeg[201:264])]
    for what, forms in needles.items():
        if any(form and form in data for form in forms):
            found.append(what)
    return found


def scan_files(root: Path, card: dict, photo: bytes = b"", jpeg: bytes = b"") -> dict[str, list[str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            hits = plaintext_in(path.read_bytes(), card, photo, jpeg)
            if hits:
                out[str(path)] = hits
    return out


__all__ = ["IdKiosk", "id_kiosk", "flow_config", "plaintext_in", "scan_files", "logging"]

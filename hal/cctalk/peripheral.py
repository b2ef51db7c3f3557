"""What every ccTalk driver shares: its config keys, the shared bus, retries and "device silent".

Mixed in ahead of the HAL interface (``class CcTalkCoinAcceptor(CcTalkAcceptor)`` ->
``CcTalkPeripheral, CashAcceptor``), so the interface keeps its own meaning and this module
only knows how to reach a device on the line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hal.device import DeviceError, Health
from hal.protocols.cctalk import Header, Reply

from .bus import CcTalkBus, NoReply


@dataclass(frozen=True)
class CcTalkOptions:
    """Config keys every ccTalk device takes (kiosk.toml ``[devices.NAME]``)."""

    port: str
    address: int = 0
    echo: bool = True  # the USB adapter hands our own bytes back first (§1.1)
    checksum: str = "simple"  # "simple" (8-bit) or "crc16" (§1.2), per device
    poll_interval_ms: int = 200  # §1.5: 200 ms recommended; coin acceptors self-inhibit after 1 s
    reply_timeout_ms: int = 100  # a simple poll answers within ~10 ms (§1.5)
    retries: int = 3  # §1.5: "the host retries (e.g. 3 tries)"
    silent_after: int = 3  # failed transactions in a row before "device_silent"
    inhibit_check_ms: int = 1000  # acceptors: read back the master inhibit (227) this often

    def __post_init__(self) -> None:
        if self.checksum not in ("simple", "crc16"):
            raise ValueError(f"checksum must be 'simple' or 'crc16', not {self.checksum!r}")
        if not 0 < self.poll_interval_ms <= 200:
            raise ValueError(f"poll_interval_ms must be 1..200 (§1.5), not {self.poll_interval_ms}")
        if not 2 <= self.address <= 255:
            raise ValueError(f"address must be 2..255 (0 is broadcast, 1 the host), not {self.address}")
        if self.retries < 1 or self.silent_after < 1 or self.reply_timeout_ms <= 0:
            raise ValueError("retries, silent_after and reply_timeout_ms must be positive")


def ascii_text(reply: Reply) -> str:
    return reply.data.decode("ascii", "replace").strip()


class CcTalkPeripheral:
    """Bus access for one device address, with the silent/back bookkeeping."""

    # Table 1 category words that identify the right kind of device (matched loosely, §1.4)
    category_words: ClassVar[tuple[str, ...]] = ()

    options: Any
    ctx: Any
    name: str

    def _cc_init(self) -> None:
        self.bus: CcTalkBus | None = None
        self.failures = 0
        self.silent = False
        self.identity: dict[str, Any] = {}
        self.serial_bytes: bytes | None = None  # hdr 242 exactly as the device sent it (LSB first)

    async def _open_bus(self) -> None:
        opts = self.options
        # --simulate: the emulated bus echoes or not as its script says (set_echo); without
        # echo-skipping we understand both, since our own frame is not addressed to the host.
        echo = opts.echo and not opts.port.startswith("sim:")
        bus = self.ctx.share(
            f"cctalk:{opts.port}",
            lambda: CcTalkBus(opts.port, echo=echo, sim_ports=self.ctx.sim_ports),
        )
        if bus.echo != echo:
            raise DeviceError(f"{self.name}: echo = {echo} but another device on {opts.port} says {bus.echo}")
        await bus.open()
        self.bus = bus

    async def _close_bus(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            await bus.close()

    async def ask(self, header: int, data: bytes = b"", *, timeout: float | None = None,
                  retries: int | None = None) -> Reply:
        """One transaction with this device; NoReply after the retries, counted towards silence."""
        if self.bus is None:
            raise DeviceError(f"{self.name}: not started")
        opts = self.options
        try:
            reply = await self.bus.transact(
                opts.address, header, data, checksum=opts.checksum,
                timeout=timeout if timeout is not None else opts.reply_timeout_ms / 1000,
                retries=retries if retries is not None else opts.retries,
            )
        except NoReply as exc:
            self.failures += 1
            if self.failures >= opts.silent_after and not self.silent:
                self.silent = True
                self.set_health(Health.FAULT, f"device silent ({exc.reason})")  # type: ignore[attr-defined]
                self._on_silent(exc.reason)
            raise
        self.failures = 0
        if self.silent:
            self.silent = False
            self._on_back()
        return reply

    async def ask_ack(self, header: int, data: bytes = b"", **kw: Any) -> None:
        """A command answered by ACK; a NAK or data is a DeviceError naming the header."""
        reply = await self.ask(header, data, **kw)
        if not reply.is_ack:
            raise DeviceError(f"{self.name}: header {header} refused (reply header {reply.header}, data {reply.data.hex()})")

    async def identify(self) -> dict[str, Any]:
        """§1.9: category, manufacturer, product, serial, software revision (245, 246, 244, 242, 241).

        Only the category is required; a device silent on the others (out of spec, but seen)
        still works, with None in their place.
        """
        ident: dict[str, Any] = {"category": ascii_text(await self.ask(Header.EQUIPMENT_CATEGORY))}
        for key, header in (("manufacturer", Header.MANUFACTURER_ID), ("product", Header.PRODUCT_CODE),
                            ("serial", Header.SERIAL_NUMBER), ("software", Header.SOFTWARE_REVISION)):
            try:
                reply = await self.ask(header, retries=1)
            except NoReply:
                self.failures = 0
                ident[key] = None
                continue
            # §1.6: the serial number is 3 (or 4) bytes LSB first; the rest ASCII
            if key == "serial":
                self.serial_bytes = reply.data
                ident[key] = int.from_bytes(reply.data, "little")
            else:
                ident[key] = ascii_text(reply)
        self.identity = ident
        words = self.category_words
        if words and not any(word in ident["category"].lower() for word in words):
            self.report("fault", "wrong_device",  # type: ignore[attr-defined]
                        f"address {self.options.address} is a {ident['category']!r}, expected {'/'.join(words)}")
        return ident

    # hooks
    def _on_silent(self, reason: str) -> None:
        self.report("fault", "device_silent", f"no reply after {self.options.silent_after} tries ({reason})")  # type: ignore[attr-defined]

    def _on_back(self) -> None:
        self.set_health(Health.OK, "")  # type: ignore[attr-defined]
        self.report("status", "device_back", "answering again")  # type: ignore[attr-defined]

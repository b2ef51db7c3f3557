"""ccTalk coin hopper (address 3): enable, dispense, watch the payout to its end.

A payout is reported from the hopper's own counters, never from what we asked for (notes
§1.10): hdr 166 gives [event counter][remaining][last paid][last unpaid]; a dispense was
accepted only if the counter moved. An interrupted payout (empty, jam) ends with paid +
unpaid = requested. When the hopper stops answering mid-payout the outcome is unknown and
we say so (HopperOutcomeUnknown) instead of guessing; ``last_payout()`` asks again later.

Header 167 carries 4 to 9 data bytes (generic spec Table 8), and which ones a hopper takes is
a property of the model, set per device with ``security`` (docs/hardware/cash.md):

* ``"serial"`` (default): the hopper's 3-byte serial number, as hdr 242 returns it (LSB
  first), then the count: 4 bytes. Unencrypted hoppers such as the Suzohapp Flow with
  DIP switch 8 off ("ITA serial") want this. The serial is read at start-up, and again after
  the hopper shows it reset (event counter back at 0), came back from silence or said NAK.
* ``"zeros"``: the 9-byte form. Pump RNG (161) with 8 fresh random bytes and Request cipher
  key (160) before every dispense, then 8 security bytes (zeros) and the count. Unencrypted
  9-byte hoppers (Money Controls SCH2-NOENCRYPT) need the 160 but ignore the 8 bytes.
* ``"module:function"``: the same 9-byte sequence for a hopper running encryption; the
  vendor's ``function(key, count) -> 8 bytes`` turns the 160 key into the security bytes
  (the algorithm is not public).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from hal.cash import PayoutDevice, PayoutResult
from hal.device import DeviceContext, DeviceError, Health
from hal.protocols.cctalk import Header
from hal.protocols.cctalk_events import events_between

from .bus import NoReply
from .peripheral import CcTalkOptions, CcTalkPeripheral

ENABLE_CODE = 165  # §1.10: 164 [165] enables, anything else disables
MAX_PER_DISPENSE = 255
SERIAL_FORM = "serial"
KEY_BYTES = 8  # hdr 160 answers, and 167 carries, 8 security bytes

# (key from hdr 160, coin count) -> the 8 security bytes that go before the count
Cipher = Callable[[bytes, int], bytes]
CIPHERS: dict[str, Cipher] = {
    "zeros": lambda key, count: bytes(KEY_BYTES),  # SCH2 manual, Appendix G: any 8 bytes do
}

# §1.10 test hopper register bits -> names
TEST_FLAGS = [
    ["max_current_exceeded", "payout_timeout", "motor_reversed", "opto_blocked_idle",
     "opto_short_idle", "opto_blocked_payout", "power_up_detected", "payout_disabled"],
    ["opto_short_payout", "single_coin_mode", "use_other_hopper", "finger_mismatch",
     "motor_reverse_limit", "coil_fault", "nv_checksum_error", "pin_enabled"],
    ["power_down_during_payout", "unknown_coin_paid", "pin_incorrect", "incorrect_cipher_key",
     "encryption_enabled", "reserved_5", "reserved_6", "reserved_7"],
]
HARMLESS = {"power_up_detected", "payout_disabled", "single_coin_mode", "use_other_hopper",
            "pin_enabled", "encryption_enabled"}


def decode_test(registers: bytes) -> list[str]:
    return [TEST_FLAGS[r][bit] for r, value in enumerate(registers[:3]) for bit in range(8) if value >> bit & 1]


def load_cipher(name: str) -> Cipher | None:
    """The security function ``name`` stands for (None: the serial-number form); ValueError if none."""
    if name == SERIAL_FORM:
        return None
    if name in CIPHERS:
        return CIPHERS[name]
    module, _, attr = name.partition(":")
    if not (module and attr):
        raise ValueError(f"security {name!r}: use {SERIAL_FORM!r}, {', '.join(map(repr, CIPHERS))} "
                         f"or 'module:function' (docs/hardware/cash.md)")
    try:
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"security {name!r}: cannot load it ({exc})") from None


class HopperOutcomeUnknown(DeviceError):
    """The hopper went silent during a payout: ask ``last_payout()`` when it is back."""

    def __init__(self, message: str, paid_so_far: int) -> None:
        super().__init__(message)
        self.paid_so_far = paid_so_far


@dataclass(frozen=True)
class HopperOptions(CcTalkOptions):
    address: int = 3  # §1.4 Table 1: Payout
    coin_fen: int = 100  # value of one coin this hopper pays
    security: str = SERIAL_FORM  # hdr 167's data: "serial", "zeros" or "module:function" (see above)
    coin_time_ms: int = 1000  # allowance per coin before a payout counts as hung

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coin_fen <= 0:
            raise ValueError(f"coin_fen must be positive, not {self.coin_fen}")
        load_cipher(self.security)  # a typo fails --check-config, not the first payout


class CcTalkHopper(CcTalkPeripheral, PayoutDevice):
    Options = HopperOptions
    category_words = ("payout", "hopper")

    def __init__(self, name: str, options: Any, ctx: DeviceContext) -> None:
        super().__init__(name, options, ctx)
        self._cc_init()
        self.coin_fen = options.coin_fen
        self.cipher = load_cipher(options.security)
        self.level = ""  # "low", "high", "ok" from hdr 217
        self._lock = asyncio.Lock()  # one payout at a time
        self._counter_seen: int | None = None  # hdr 166's event counter when we last read it
        self._serial_stale = False  # the hopper reset or was away: read hdr 242 again before paying
        self.refused = ""  # why the last dispense was refused before a coin could move ("" = it was not)

    async def start(self) -> None:
        await self._open_bus()
        try:
            await self.identify()
            await self.safe_state()
            await self.check_level()
            self.set_health(Health.OK if self.level != "low" else Health.DEGRADED, self.level)
        except NoReply as exc:
            self.set_health(Health.FAULT, str(exc))
            self.report("fault", "device_silent", str(exc))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.safe_state()
        await self._close_bus()

    async def safe_state(self) -> None:
        with contextlib.suppress(DeviceError):
            await self.ask_ack(Header.ENABLE_HOPPER, b"\x00")  # §1.10: any value but 165 disables

    async def self_test(self) -> str:
        flags = await self.test()
        status = await self.status()
        ident = self.identity
        return (f"{self.name}: {ident.get('product')} #{ident.get('serial')}, security {self.options.security}, "
                f"counter {status[0]}, level {await self.check_level()}, flags {flags or 'none'}")

    async def test(self) -> list[str]:
        """§1.10 hdr 163: the named flags that are set."""
        return decode_test((await self.ask(Header.TEST_HOPPER)).data)

    async def status(self) -> tuple[int, int, int, int]:
        """§1.10 hdr 166: (event counter, remaining, last paid, last unpaid)."""
        data = (await self.ask(Header.REQUEST_HOPPER_STATUS)).data
        if len(data) != 4:
            raise DeviceError(f"{self.name}: hopper status must be 4 bytes, got {data.hex()}")
        if data[0] == 0 and self._counter_seen:  # §1.10: counter 0 only after power-up or reset
            self._serial_stale = True  # (a technician may have swapped the unit, too)
        self._counter_seen = data[0]
        return data[0], data[1], data[2], data[3]

    async def check_level(self) -> str:
        """§1.10 hdr 217: b0 below low level, b1 at/above high level (when the sensors exist)."""
        try:
            level = (await self.ask(Header.REQUEST_PAYOUT_HIGH_LOW_STATUS, retries=1)).data
        except NoReply:
            self.failures = 0  # optional header: silence means unsupported (§1.5)
            return self.level
        if level:
            self.level = "low" if level[0] & 0x11 == 0x11 else "high" if level[0] & 0x22 == 0x22 else "ok"
            if self.level == "low":
                self.report("stock_low", "hopper_low", "hopper below its low-level sensor")
        return self.level

    async def last_payout(self) -> PayoutResult:
        _, _, paid, unpaid = await self.status()
        return PayoutResult(paid, unpaid, paid * self.coin_fen)

    async def payout_counter(self) -> int:
        """The event counter now (§1.10 hdr 166): journalled with a payout's intent, for recovery."""
        return (await self.status())[0]

    async def payout_since(self, counter: int, count: int, timeout_s: float = 15.0) -> PayoutResult | None:
        """After a restart: what did the payout of ``count`` asked for when the counter was ``counter`` do?

        Why it can be known: the hopper keeps paying and counting when the host dies (§1.10). Counter
        unmoved: it never started (nothing paid). One event on: that payout, read once it ended. Else
        (a reset, another payout since, several batches) None: nobody can tell.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            now, remaining, paid, unpaid = await self.status()
            if now == 0 and counter != 0:
                return None
            since = events_between(counter, now)
            if since == 0:
                return PayoutResult(0, count, 0)
            if since != 1:
                return None
            if remaining == 0:
                return PayoutResult(paid, unpaid, paid * self.coin_fen) if paid + unpaid == count else None
            if loop.time() > deadline:
                return None
            await asyncio.sleep(self.options.poll_interval_ms / 1000)

    async def dispense(self, count: int) -> PayoutResult:
        if count < 0:
            raise ValueError("count must be >= 0")
        paid = unpaid = 0
        async with self._lock:
            try:
                while count - paid - unpaid > 0:
                    batch = min(MAX_PER_DISPENSE, count - paid - unpaid)
                    try:
                        p, u = await self._dispense_batch(batch)
                    except HopperOutcomeUnknown as exc:
                        raise HopperOutcomeUnknown(str(exc), paid + exc.paid_so_far) from None
                    paid, unpaid = paid + p, unpaid + u
                    if u:  # the hopper stopped short: nothing more will come out now
                        unpaid += count - paid - unpaid
                        break
            finally:
                await self.safe_state()
        result = PayoutResult(paid, unpaid, paid * self.coin_fen)
        if unpaid:
            flags = [f for f in await self._flags_quietly() if f not in HARMLESS]
            detail = f"paid {paid} of {count} ({', '.join(flags) or 'no flags'})"
            if self.refused:
                code, detail = "payout_refused", f"{detail}; dispense refused: {self.refused}"
            else:
                code = "hopper_empty" if "payout_timeout" in flags else "payout_incomplete"
            self.set_health(Health.FAULT, code)
            self.report("fault", code, detail, paid=paid, unpaid=unpaid)
        await self.check_level()
        return result

    async def _dispense_data(self, count: int) -> bytes:
        """Hdr 167's data for ``count`` coins, after what the model wants first (module docstring)."""
        if self.cipher is None:
            if self.serial_bytes is None or self._serial_stale:
                self.serial_bytes = (await self.ask(Header.SERIAL_NUMBER)).data  # §1.6: LSB first
                self.identity["serial"] = int.from_bytes(self.serial_bytes, "little")
                self._serial_stale = False
            if len(self.serial_bytes) != 3:
                raise DeviceError(f"{self.name}: serial number {self.serial_bytes.hex()} is not the 3 bytes "
                                  f"security = 'serial' sends; this model needs another setting")
            return self.serial_bytes + bytes([count])
        # A fresh key before every dispense, whether the last one was accepted or refused (§1.10)
        await self.ask_ack(Header.PUMP_RNG, secrets.token_bytes(KEY_BYTES))
        key = (await self.ask(Header.REQUEST_CIPHER_KEY)).data
        if len(key) != KEY_BYTES:
            raise DeviceError(f"{self.name}: cipher key must be {KEY_BYTES} bytes, got {key.hex()}")
        security = bytes(self.cipher(key, count))
        if len(security) != KEY_BYTES:
            raise DeviceError(f"{self.name}: security function gave {len(security)} bytes, not {KEY_BYTES}")
        return security + bytes([count])

    def _on_back(self) -> None:
        super()._on_back()
        self._serial_stale = True  # it may have been power-cycled, or swapped, while silent

    async def _flags_quietly(self) -> list[str]:
        try:
            return await self.test()
        except DeviceError:
            return []

    async def _dispense_batch(self, count: int) -> tuple[int, int]:
        self.refused = ""
        try:
            before = (await self.status())[0]
            await self.ask_ack(Header.ENABLE_HOPPER, bytes([ENABLE_CODE]))
            data = await self._dispense_data(count)
        except DeviceError as exc:  # 167 never went out, so not a coin can have moved
            self.refused = str(exc)
            return 0, count
        # Not retried: a lost reply to an accepted 167 must not pay twice; the counter tells.
        try:
            reply = await self.ask(Header.DISPENSE_HOPPER_COINS, data, retries=1)
        except NoReply:
            reply = None
        if reply is not None and reply.is_nak:
            # §1.10: refused (disabled, busy, wrong serial or cipher, an error flag): nothing moved.
            # A unit swapped for another answers to another serial: read it again before the next try.
            self.refused = "NAK"
            self._serial_stale = True
            return 0, count
        deadline = asyncio.get_running_loop().time() + count * self.options.coin_time_ms / 1000 + 2
        interval = self.options.poll_interval_ms / 1000
        paid_so_far = 0
        while True:
            try:
                counter, remaining, paid, unpaid = await self.status()
            except NoReply:
                raise HopperOutcomeUnknown(f"{self.name}: silent during a payout of {count}", paid_so_far) from None
            if counter == 0 and before != 0:  # §1.10: counter 0 = power-up/reset during the payout
                if remaining == 0 and paid + unpaid == count:  # its NV registers kept the outcome
                    self.report("fault", "hopper_reset_during_payout", f"paid {paid}, unpaid {unpaid}")
                    return paid, unpaid
                raise HopperOutcomeUnknown(f"{self.name}: reset during a payout of {count}", paid_so_far)
            if events_between(before, counter) == 0:
                if reply is None:  # no reply and the counter did not move: never accepted
                    return 0, count
                raise DeviceError(f"{self.name}: dispense acknowledged but event counter stayed at {counter}")
            paid_so_far = paid
            if remaining == 0:
                return paid, unpaid
            if asyncio.get_running_loop().time() > deadline:
                raise HopperOutcomeUnknown(f"{self.name}: payout of {count} still running after the deadline", paid)
            await asyncio.sleep(interval)

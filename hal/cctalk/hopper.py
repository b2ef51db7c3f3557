"""ccTalk coin hopper (address 3): enable, dispense, watch the payout to its end.

A payout is reported from the hopper's own counters, never from what we asked for (notes
§1.10): hdr 166 gives [event counter][remaining][last paid][last unpaid]; a dispense was
accepted only if the counter moved. An interrupted payout (empty, jam) ends with paid +
unpaid = requested. When the hopper stops answering mid-payout the outcome is unknown and
we say so (HopperOutcomeUnknown) instead of guessing; ``last_payout()`` asks again later.

The 167 security bytes are not public (§1.10): the ``cipher`` option names a function that
turns a coin count into the data bytes. "plain" sends the count alone; "zeros" sends eight
zero security bytes and the count (9 bytes, the preferred length). Devices running SCH2/SCH3
encryption need a vendor function registered in ``CIPHERS`` ("module:function" also works).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
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

Cipher = Callable[[int], bytes]
CIPHERS: dict[str, Cipher] = {
    "plain": lambda count: bytes([count]),
    "zeros": lambda count: bytes(8) + bytes([count]),
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


def load_cipher(name: str) -> Cipher:
    if name in CIPHERS:
        return CIPHERS[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"cipher {name!r}: use one of {', '.join(CIPHERS)} or 'module:function'")
    return getattr(importlib.import_module(module), attr)


class HopperOutcomeUnknown(DeviceError):
    """The hopper went silent during a payout: ask ``last_payout()`` when it is back."""

    def __init__(self, message: str, paid_so_far: int) -> None:
        super().__init__(message)
        self.paid_so_far = paid_so_far


@dataclass(frozen=True)
class HopperOptions(CcTalkOptions):
    address: int = 3  # §1.4 Table 1: Payout
    coin_fen: int = 100  # value of one coin this hopper pays
    cipher: str = "plain"  # see CIPHERS
    coin_time_ms: int = 1000  # allowance per coin before a payout counts as hung

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coin_fen <= 0:
            raise ValueError(f"coin_fen must be positive, not {self.coin_fen}")
        if self.cipher not in CIPHERS and ":" not in self.cipher:
            raise ValueError(f"cipher {self.cipher!r}: use one of {', '.join(CIPHERS)} or 'module:function'")


class CcTalkHopper(CcTalkPeripheral, PayoutDevice):
    Options = HopperOptions
    category_words = ("payout", "hopper")

    def __init__(self, name: str, options: Any, ctx: DeviceContext, cipher: Cipher | None = None) -> None:
        super().__init__(name, options, ctx)
        self._cc_init()
        self.coin_fen = options.coin_fen
        self.cipher = cipher or load_cipher(options.cipher)
        self.level = ""  # "low", "high", "ok" from hdr 217
        self._lock = asyncio.Lock()  # one payout at a time

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
        return f"{self.name}: counter {status[0]}, level {await self.check_level()}, flags {flags or 'none'}"

    async def test(self) -> list[str]:
        """§1.10 hdr 163: the named flags that are set."""
        return decode_test((await self.ask(Header.TEST_HOPPER)).data)

    async def status(self) -> tuple[int, int, int, int]:
        """§1.10 hdr 166: (event counter, remaining, last paid, last unpaid)."""
        data = (await self.ask(Header.REQUEST_HOPPER_STATUS)).data
        if len(data) != 4:
            raise DeviceError(f"{self.name}: hopper status must be 4 bytes, got {data.hex()}")
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
            code = "hopper_empty" if "payout_timeout" in flags else "payout_incomplete"
            self.set_health(Health.FAULT, code)
            self.report("fault", code, f"paid {paid} of {count} ({', '.join(flags) or 'no flags'})",
                        paid=paid, unpaid=unpaid)
        await self.check_level()
        return result

    async def _flags_quietly(self) -> list[str]:
        try:
            return await self.test()
        except DeviceError:
            return []

    async def _dispense_batch(self, count: int) -> tuple[int, int]:
        before = (await self.status())[0]
        await self.ask_ack(Header.ENABLE_HOPPER, bytes([ENABLE_CODE]))
        # Not retried: a lost reply to an accepted 167 must not pay twice; the counter tells.
        try:
            reply = await self.ask(Header.DISPENSE_HOPPER_COINS, self.cipher(count), retries=1)
        except NoReply:
            reply = None
        if reply is not None and reply.is_nak:
            return 0, count  # §1.10: refused (disabled, busy, bad cipher): nothing moved
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

"""An emulated ccTalk hopper (category "Payout", address 3), from cctalk.md §1.10.

Coins leave at ``payout_rate`` per second, so a host polling hdr 166 sees "remaining" count
down as on a real hopper. A hopper that runs dry stops after ``dry_timeout`` with the rest
reported as unpaid, sets "payout timeout" in the test register and disables itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cctalk_device import ACK, HDR_REPLY, NAK, Peripheral, Reply, next_counter

H_ENABLE = 164  # [165] enables, any other value disables
H_DISPENSE = 167  # [security bytes...][count]
H_STATUS = 166  # [event counter][remaining][last paid][last unpaid]
H_TEST = 163  # registers 1..3
H_LEVEL_STATUS = 217
H_DISPENSE_COUNT = 168  # 3 bytes LSB first, lifetime coins
ENABLE_CODE = 165

# §1.10 test hopper, register 1 / register 3 bits
R1_PAYOUT_TIMEOUT = 1 << 1
R1_POWER_UP = 1 << 6
R1_PAYOUT_DISABLED = 1 << 7
R3_POWER_DOWN_DURING_PAYOUT = 1 << 0
# §1.10 hdr 217 level status bits
LEVEL_BELOW_LOW = 1 << 0
LEVEL_AT_HIGH = 1 << 1
LOW_SENSOR_FITTED = 1 << 4
HIGH_SENSOR_FITTED = 1 << 5


@dataclass
class Payout:
    started: float
    requested: int
    paid: int = 0


class Hopper(Peripheral):
    category = "Payout"
    default_address = 3

    def __init__(
        self,
        level: int = 100,
        coin_fen: int = 100,
        payout_rate: float = 20.0,
        dry_timeout: float = 0.5,
        low_level: int = 10,
        high_level: int = 1000,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.level = level
        self.coin_fen = coin_fen
        self.payout_rate = payout_rate
        self.dry_timeout = dry_timeout
        self.low_level = low_level
        self.high_level = high_level
        self.empty_after: int | None = None  # coins it can still pay before running dry
        self.enabled = False  # §1.10: disabled after power-up/reset
        self.counter = 0
        self.payout: Payout | None = None
        self.last_paid = 0
        self.last_unpaid = 0
        self.reg1 = R1_POWER_UP
        self.reg3 = 0
        self.total_paid = 0
        self.total_unpaid = 0
        self.lifetime = 0

    # -- time ----------------------------------------------------------------------------
    def _can_pay(self) -> bool:
        return self.level > 0 and (self.empty_after is None or self.empty_after > 0)

    def advance(self, now: float) -> None:
        p = self.payout
        if p is None:
            return
        due = min(p.requested, int((now - p.started) * self.payout_rate))
        while p.paid < due and self._can_pay():
            p.paid += 1
            self.level -= 1
            self.total_paid += 1
            self.lifetime += 1
            if self.empty_after is not None:
                self.empty_after -= 1
        self.last_paid = p.paid
        if p.paid == p.requested:
            self._finish(0)
        elif due > p.paid and now >= p.started + (p.paid + 1) / self.payout_rate + self.dry_timeout:
            self.reg1 |= R1_PAYOUT_TIMEOUT  # §1.10 reg 1 b1: payout timeout (empty?)
            self.enabled = False  # b7 "payout disabled" until the host sends 164 [165]
            self._finish(p.requested - p.paid)

    def _finish(self, unpaid: int) -> None:
        self.last_unpaid = unpaid
        self.total_unpaid += unpaid
        self.payout = None

    # -- requests ------------------------------------------------------------------------
    def handle(self, header: int, data: bytes, now: float) -> Reply:
        if header == H_ENABLE:
            if len(data) != 1:
                return None
            self.enabled = data[0] == ENABLE_CODE
            if self.enabled:
                self.reg1 &= ~R1_POWER_UP  # emulator choice: an enabling host has seen the power-up
            return ACK
        if header == H_DISPENSE:
            return self._dispense(data, now)
        if header == H_STATUS:
            p = self.payout
            remaining = p.requested - p.paid if p else 0
            return (HDR_REPLY, bytes([self.counter, remaining, self.last_paid, self.last_unpaid]))
        if header == H_TEST:
            reg1 = self.reg1 | (0 if self.enabled else R1_PAYOUT_DISABLED)
            return (HDR_REPLY, bytes([reg1, 0, self.reg3]))
        if header == H_LEVEL_STATUS:
            status = LOW_SENSOR_FITTED | HIGH_SENSOR_FITTED
            if self.level < self.low_level:
                status |= LEVEL_BELOW_LOW
            if self.level >= self.high_level:
                status |= LEVEL_AT_HIGH
            return (HDR_REPLY, bytes([status]))
        if header == H_DISPENSE_COUNT:
            return (HDR_REPLY, (self.lifetime & 0xFFFFFF).to_bytes(3, "little"))
        return super().handle(header, data, now)

    def _dispense(self, data: bytes, now: float) -> Reply:
        """§1.10: security bytes are not public, so the LAST data byte is the coin count.
        NAK when disabled, for 0 coins, or while a payout is still running."""
        if not 1 <= len(data) <= 9:
            return None
        count = data[-1]
        if not self.enabled or count == 0 or self.payout is not None:
            return NAK
        self.counter = next_counter(self.counter)  # §1.10: incremented on each valid dispense
        self.payout = Payout(now, count)
        self.last_paid = 0
        self.last_unpaid = 0
        self.advance(now)
        return (HDR_REPLY, bytes([self.counter]))  # SCH2 style: the post-increment counter

    # -- power and script ----------------------------------------------------------------
    def power_up(self, now: float) -> None:
        """hdr 1 (software reset): counter 0, disabled, error flags cleared; a payout stops."""
        super().power_up(now)
        self.advance(now)
        if self.payout is not None:
            self._finish(self.payout.requested - self.payout.paid)
        self.counter = 0
        self.enabled = False
        self.reg1 &= R1_POWER_UP
        self.reg3 = 0

    def power_cycle(self, now: float) -> None:
        """Power lost and back: paid/unpaid of the last payout survive (the register 3 flag
        "power-down during payout" implies non-volatile memory); the rest counts as unpaid."""
        self.advance(now)
        interrupted = self.payout is not None
        self.power_up(now)
        self.reg1 = R1_POWER_UP
        if interrupted:
            self.reg3 |= R3_POWER_DOWN_DURING_PAYOUT

    def fill(self, count: int) -> None:
        self.level = count
        self.empty_after = None

    def snapshot(self) -> dict[str, Any]:
        p = self.payout
        return {
            "address": self.address,
            "checksum": self.checksum,
            "event_counter": self.counter,
            "enabled": self.enabled,
            "remaining": p.requested - p.paid if p else 0,
            "last_paid": self.last_paid,
            "last_unpaid": self.last_unpaid,
            "level": self.level,
            "coin_fen": self.coin_fen,
        }

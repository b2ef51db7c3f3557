"""An emulated ccTalk hopper (category "Payout", address 3), from cctalk.md §1.10 and the
hopper manuals quoted in docs/hardware/cash.md (Money Controls SCH2, Suzohapp Flow 18).

Coins leave at ``payout_rate`` per second, so a host polling hdr 166 sees "remaining" count
down as on a real hopper. A hopper that runs dry stops after ``dry_timeout`` with the rest
reported as unpaid, sets "payout timeout" in the test register and disables itself.

Dispense (167) takes 4 to 9 data bytes (generic spec Table 8) and what goes before the count
depends on the unit, set with ``security`` as a real one is set by DIP switch or product code:

* ``"serial"``: the unit's own 3-byte serial number, LSB first as hdr 242 sends it (Flow 18
  with DIP switch 8 off, "ITA serial"). Another serial: NAK.
* ``"cipher"``: 8 security bytes, accepted only after a Request cipher key (160) since the
  last dispense (SCH2-NOENCRYPT, SCH2 manual Appendix G: without the 160 "a NAK will be
  returned"). The bytes themselves are not checked: the encrypted algorithm is not public.

Shorter than 4 data bytes (or longer than 9) is a malformed command and is not answered, like
every malformed command here (§1.5). Every 167 uses up the key, accepted or refused (§1.10).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .cctalk_device import ACK, HDR_REPLY, NAK, Peripheral, Reply, next_counter

H_ENABLE = 164  # [165] enables, any other value disables
H_DISPENSE = 167  # [security bytes...][count]
H_STATUS = 166  # [event counter][remaining][last paid][last unpaid]
H_TEST = 163  # registers 1..3
H_LEVEL_STATUS = 217
H_DISPENSE_COUNT = 168  # 3 bytes LSB first, lifetime coins
H_PUMP_RNG = 161  # [8 random bytes from the host] -> ACK
H_CIPHER_KEY = 160  # -> [8 key bytes]
ENABLE_CODE = 165
SECURITY_MODES = ("serial", "cipher")
KEY_BYTES = 8

# §1.10 test hopper, register 1 / register 3 bits
R1_PAYOUT_TIMEOUT = 1 << 1
R1_POWER_UP = 1 << 6
R1_PAYOUT_DISABLED = 1 << 7
R3_POWER_DOWN_DURING_PAYOUT = 1 << 0
R3_INCORRECT_CIPHER_KEY = 1 << 3  # set here for a wrong serial too (emulator choice)
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
        security: str = "serial",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if security not in SECURITY_MODES:
            raise ValueError(f"hopper security must be one of {SECURITY_MODES}, not {security!r}")
        self.security = security
        self.key: bytes | None = None  # handed out by 160, good for the next 167 only
        self._rng = hashlib.sha256(self.serial.to_bytes(4, "little"))  # stirred by 161, read by 160
        self.refused = 0  # dispense commands answered with NAK
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
        if header == H_PUMP_RNG:
            if len(data) != KEY_BYTES:
                return None
            self._rng.update(data)
            return ACK
        if header == H_CIPHER_KEY:
            if data:
                return None
            self.key = self._next_key()
            return (HDR_REPLY, self.key)
        return super().handle(header, data, now)

    def _dispense(self, data: bytes, now: float) -> Reply:
        """167: [security bytes][count]. NAK when the security bytes are wrong, when disabled or
        while a payout is still running; 0 coins is handled normally and pays nothing (SCH2)."""
        if not 4 <= len(data) <= 9:  # Table 8: 4..9 data bytes
            return None
        key, self.key = self.key, None  # §1.10: a new key is needed after every dispense
        security, count = data[:-1], data[-1]
        self.reg3 &= ~R3_INCORRECT_CIPHER_KEY
        if self.security == "serial":
            accepted = security == self.serial.to_bytes(3, "little")
        else:
            accepted = len(security) == KEY_BYTES and key is not None
        if not accepted:
            self.reg3 |= R3_INCORRECT_CIPHER_KEY
        if not accepted or not self.enabled or self.payout is not None:
            self.refused += 1
            return NAK
        self.counter = next_counter(self.counter)  # §1.10: incremented on each valid dispense
        self.last_paid = 0
        self.last_unpaid = 0
        if count:
            self.payout = Payout(now, count)
            self.advance(now)
        return (HDR_REPLY, bytes([self.counter]))  # SCH2 style: the post-increment counter

    def _next_key(self) -> bytes:
        self._rng.update(b"key")
        return self._rng.digest()[:KEY_BYTES]

    # -- power and script ----------------------------------------------------------------
    def power_up(self, now: float) -> None:
        """hdr 1 (software reset): counter 0, disabled, error flags cleared; a payout stops."""
        super().power_up(now)
        self.advance(now)
        if self.payout is not None:
            self._finish(self.payout.requested - self.payout.paid)
        self.counter = 0
        self.enabled = False
        self.key = None
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
            "security": self.security,
            "serial": self.serial,
            "refused": self.refused,
        }

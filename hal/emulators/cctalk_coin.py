"""An emulated ccTalk coin acceptor (category "Coin Acceptor", address 2), from cctalk.md §1.6–1.9."""
from __future__ import annotations

from typing import Any

from .cctalk_device import HDR_REPLY, Inhibits, Peripheral, Reply

H_READ_CREDITS = 229  # §1.6/§1.7: read buffered credit or error codes
H_REQUEST_COIN_ID = 184  # 6 ASCII chars CCVVVI
H_REQUEST_STATUS = 248  # [status] 0 = OK
H_OPTO_STATES = 236
H_OPTION_FLAGS = 213
H_INSERTION_COUNTER = 226
H_ACCEPT_COUNTER = 225

POLL_WATCHDOG = 1.0  # §1.5 Part 4: self-inhibit unless polled with 229 at least every 1 s

# Table 2 error codes (result B when A = 0)
REJECT_NO_MATCH = 1
INHIBITED_COIN = 2
COS_ACTIVATED = 20  # coin-on-string mechanism activated: the fraud the notes name for coins

UNPROGRAMMED_COIN = "......"  # §1.6: six dots


def coin_id(country: str, fen: int) -> str:
    """§1.6 coin id ``CCVVVI``: value in minor units, three characters (compact K/M notation above 999)."""
    if fen < 1000:
        value = f"{fen:03d}"
    elif fen % 1000 == 0 and fen < 10000:
        value = f"{fen // 1000}K0"
    else:
        value = f"{fen // 1000}K{fen % 1000 // 100}"
    return f"{country}{value}A"


class CoinAcceptor(Peripheral):
    category = "Coin Acceptor"
    default_address = 2

    def __init__(self, coins: dict[int, int], country: str = "CN", **kw: Any) -> None:
        super().__init__(**kw)
        if not coins or not all(1 <= pos <= 16 for pos in coins):
            raise ValueError("coin positions must be 1..16")
        self.coins = dict(sorted(coins.items()))  # position -> fen
        self.country = country
        self.inhibits = Inhibits()
        self.last_poll = float("-inf")
        self.accepted_fen = 0
        self.inserted = 0
        self.accepted = 0

    def power_up(self, now: float) -> None:
        super().power_up(now)
        self.inhibits.power_up()

    def self_inhibited(self, now: float) -> bool:
        return now - self.last_poll > POLL_WATCHDOG

    def handle(self, header: int, data: bytes, now: float) -> Reply:
        if header == H_READ_CREDITS:
            self.last_poll = now  # polling resumes: the self-inhibit lifts by itself (§1.5)
            return (HDR_REPLY, self.events.encode())
        if header == H_REQUEST_COIN_ID:
            if len(data) != 1:
                return None
            fen = self.coins.get(data[0])
            return (HDR_REPLY, (coin_id(self.country, fen) if fen else UNPROGRAMMED_COIN).encode())
        if header == H_REQUEST_STATUS:
            return (HDR_REPLY, b"\x00")
        if header == H_OPTO_STATES:
            return (HDR_REPLY, b"\x00")
        if header == H_OPTION_FLAGS:
            return (HDR_REPLY, b"\x00")  # b0 = 0: coin positions, not CVF values
        if header == H_INSERTION_COUNTER:
            return (HDR_REPLY, (self.inserted & 0xFFFFFF).to_bytes(3, "little"))
        if header == H_ACCEPT_COUNTER:
            return (HDR_REPLY, (self.accepted & 0xFFFFFF).to_bytes(3, "little"))
        reply = self.inhibits.handle(header, data)
        if reply is not None:
            return reply
        return super().handle(header, data, now)

    # -- script --------------------------------------------------------------------------
    def position_of(self, value: int | None = None, coin: int | str | None = None) -> int | None:
        if coin is not None:
            if isinstance(coin, int) or str(coin).isdigit():
                pos = int(coin)
                return pos if pos in self.coins else None
            for pos, fen in self.coins.items():
                if coin_id(self.country, fen) == coin:
                    return pos
            return None
        for pos, fen in self.coins.items():
            if fen == value:
                return pos
        return None

    def insert(self, position: int | None, now: float) -> str:
        """A coin drops in: credit (pos, sorter path 0), or the error code that refused it."""
        self.inserted += 1
        if position is None:
            self.events.push(0, REJECT_NO_MATCH)
            return "rejected"
        if not self.inhibits.master or not self.inhibits.enabled(position) or self.self_inhibited(now):
            self.events.push(0, INHIBITED_COIN)
            return "inhibited"
        self.events.push(position, 0)  # §1.7: A = coin position, B = sorter path (0 = none)
        self.accepted += 1
        self.accepted_fen += self.coins[position]
        return "accepted"

    def reject(self) -> None:
        self.inserted += 1
        self.events.push(0, REJECT_NO_MATCH)

    def snapshot_at(self, now: float) -> dict[str, Any]:
        return {
            **self.snapshot(),
            **self.inhibits.snapshot(),
            "self_inhibited": self.self_inhibited(now),
            "accepting": self.inhibits.master and self.inhibits.mask != 0 and not self.self_inhibited(now),
            "coins": {str(pos): fen for pos, fen in self.coins.items()},
        }

"""ccTalk coin acceptor (address 2): identify, read the coin table, inhibit, poll 229.

Result pairs (notes §1.7): A = 1..255 is a credit for coin position A; A = 0 carries a
Table 2 error code in B. Every code becomes a named event: ``Rejected(name)`` when the
table says the coin was rejected, ``CashFault(name)`` otherwise (no credit either way; a
technician looks at the "possible"/"no" ones: coin on string, light attack, swallowed coin).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hal.cash import CashFault, CoinAccepted, Rejected
from hal.protocols.cctalk import Header
from hal.protocols.cctalk_events import coin_error, events_between

from .acceptor import CcTalkAcceptor
from .bus import NoReply
from .peripheral import CcTalkOptions

POSITIONS = range(1, 17)  # §1.6 hdr 231: two mask bytes, coins 1..16
UNPROGRAMMED = "......"


def coin_value_fen(coin_id: str) -> int:
    """Value of a §1.6 ``CCVVVI`` coin id in minor units (fen for CN), 0 when unknown.

    VVV is the value with an optional letter as decimal point: ``100`` = 100, ``.50`` = 0.5,
    ``1K0`` = 1000, ``2K5`` = 2500, ``M10`` = 0.1 million. A value that is not a whole
    number of minor units is unknown (0): such a coin is never credited blindly.
    """
    if len(coin_id) != 6 or coin_id == UNPROGRAMMED:
        return 0
    value = coin_id[2:5]
    scale = 1
    for letter, factor in (("K", 1000), ("M", 1_000_000)):
        if letter in value:
            value, scale = value.replace(letter, "."), factor
    try:
        whole, _, frac = value.partition(".")
        numerator = int(whole or "0") * 10 ** len(frac) + int(frac or "0")
    except ValueError:
        return 0
    fen, rest = divmod(numerator * scale, 10 ** len(frac))
    return fen if rest == 0 and fen > 0 else 0


@dataclass(frozen=True)
class CoinOptions(CcTalkOptions):
    address: int = 2  # §1.4 Table 1: Coin Acceptor
    # position ("1".."16") -> fen; overrides (or replaces) the table read with hdr 184
    coin_values: dict[str, int] = field(default_factory=dict)


class CcTalkCoinAcceptor(CcTalkAcceptor):
    Options = CoinOptions
    poll_header = Header.READ_BUFFERED_CREDIT  # 229
    category_words = ("coin",)

    async def _read_values(self) -> None:
        """§1.9: hdr 184 for positions 1..16; the config's coin_values win where given."""
        values: dict[int, int] = {}
        ids: dict[int, str] = {}
        for pos in POSITIONS:
            try:
                reply = await self.ask(Header.REQUEST_COIN_ID, bytes([pos]), retries=1)
            except NoReply:
                break  # some acceptors answer fewer positions: silence ends the table
            ids[pos] = reply.data.decode("ascii", "replace")
            if fen := coin_value_fen(ids[pos]):
                values[pos] = fen
        self.failures = 0  # a short table is not a silent device
        for key, fen in self.options.coin_values.items():
            values[int(key)] = int(fen)
        self.identity["coins"] = ids
        self.values = values

    async def credits_since(self, counter: int) -> tuple[list[int], int] | None:
        """After a restart: the coins credited after event ``counter`` (fen each) and the counter now.

        Why: a coin dropped in as kioskd died is in the box but in no journal; the five-deep buffer
        (§1.7) outlives the host. None when it cannot tell (a reset, more than five events since,
        a coin of unknown value).
        """
        data = (await self.ask(self.poll_header)).data
        if len(data) != 11 or data[0] == 0:
            return None
        since = events_between(counter, data[0])
        if since > 5:
            return None
        fens = []
        for i in reversed(range(since)):  # oldest first
            a = data[1 + 2 * i]
            if a:
                if not self.values.get(a):
                    return None
                fens.append(self.values[a])
        return fens, data[0]

    async def _on_event(self, a: int, b: int) -> None:
        if a:
            fen = self.values.get(a, 0)
            if fen:
                self.emit(CoinAccepted(self.name, fen))
            else:  # in the cash box, value unknown: held for review, never guessed
                self.emit(CashFault(self.name, "unknown_coin", f"coin position {a} (sorter path {b}) has no value"))
            return
        if b == 0:
            return  # Table 2 code 0: null event
        name, rejected = coin_error(b)
        if name.startswith("inhibited_coin") and self.accepting:
            self._reapply = True  # §1.7: an unexpected "inhibited coin" may mean an unseen reset
        if rejected:
            self.emit(Rejected(self.name, name))
        else:
            self.emit(CashFault(self.name, name, f"coin acceptor error code {b} (Table 2)"))

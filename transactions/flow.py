"""Flows as explicit state machines: a table of states and transitions, each side effect journalled.

A ``FlowSpec`` is data: states (with what recovery does with a transaction left there) and
transitions ``(src, event) -> dst``, some naming the side effect (``effect``) they perform. A
``Run`` walks one transaction through its spec: ``go(event)`` for a plain transition;
``effect(event, args, action, settle)`` for a side effect, which

1. writes the intent (step row, new flow state) and waits for the fsync'd commit,
2. performs ``action()`` (stack a bill, pay coins, credit at the BOSS, ...),
3. writes the outcome together with the money it moved and the counters it changed.

A transition missing from the table raises ``IllegalTransition``: a flow cannot take a path
the reviewer did not see. Recovery (transactions/recovery.py) reads the same tables: the open
step's effect kind says how to resolve it, the flow state says what is still owed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from . import records
from .boss import Boss
from .cashlock import CashLock
from .customer import Customer
from .journal import Journal, boundary
from .ledger import Ledger, LedgerUnbalanced

R = TypeVar("R")

# Every side effect a flow may perform, and how recovery resolves it when its intent is open.
EFFECTS: dict[str, str] = {
    "stack_bill": "ask the validator's event buffer since the intent's counter: stacked: cash in; returned or "
                  "still in escrow (returned now): nothing; cannot tell: hold the bill's value for review",
    "payout": "ask the hopper what happened since the intent's event counter (payout_since: final only when it "
              "has finished); what it did not pay goes on a refund voucher; no counter or no answer: held for review",
    "boss_credit": "ask the BOSS by idempotency key; not found: repeat with the same key",
    "boss_pay_bill": "ask the BOSS by idempotency key; not found: repeat with the same key",
    "boss_change_plan": "ask the BOSS by idempotency key; not found: the change was not made",
    "boss_suspend": "ask the BOSS by idempotency key; not found: repeat with the same key",
    "dispense_card": "ask the dispenser: card at the gate: capture it and refund; else hold for review",
    "capture_card": "ask the dispenser: card still at the gate: capture again; gate clear: counted captured; "
                    "no answer: hold for review",
    "print": "no money moved: closed as unknown, never reprinted automatically",
    "sms": "no money moved: closed as unknown, never resent automatically",
    # identity (issue 11): transactions/flows/identity.py resolves these
    "boss_reserve": "release the number under the transaction's key (the customer is gone): a hold that "
                    "never reached the BOSS releases nothing",
    "boss_release": "repeat the release with the same key",
    "sim_to_reader": "no money moved: the state rule captures whatever card is in the channel",
    "write_sim": "the card may be half written: never dispensed, the state rule captures it",
    "boss_open_number": "ask the BOSS by idempotency key; not found: not repeated (the customer is gone), refunded",
    "boss_replace_sim": "ask the BOSS by idempotency key; not found: not repeated, the old card stays valid",
    "boss_register": "ask the BOSS by idempotency key; not found: not repeated",
    "dispense_sim": "ask the SIM dispenser: a card still in the channel is captured; the BOSS step decides "
                    "whether the service was delivered",
    "capture_sim": "ask the SIM dispenser: card still in the channel: capture again; no answer: review",
}


class IllegalTransition(Exception):
    """A flow asked for a transition its table does not have."""


@dataclass(frozen=True)
class State:
    name: str
    doc: str
    # What recovery does with a transaction found in this state once its open steps are resolved:
    # "settle": voucher what is outstanding; finish done if anything was applied, else refunded/failed.
    # "delivered": the service was delivered (voucher any overpayment, finish done).
    # "card_at_gate": ask the dispenser whether the card is still at the gate first.
    # "final": a finished transaction; never open (the final state and the finish share a commit).
    recover: str = "settle"


@dataclass(frozen=True)
class Transition:
    src: str
    event: str
    dst: str
    effect: str | None = None


@dataclass(frozen=True)
class FlowSpec:
    name: str  # the service name recorded on the transaction: topup, card_sale, ...
    title_zh: str
    title_en: str
    needs_boss: bool
    takes_cash: bool
    states: tuple[State, ...]
    transitions: tuple[Transition, ...]
    needs: tuple[str, ...] = ()  # Hardware roles that must be present (id_reader, camera, ...) to offer it

    def __post_init__(self) -> None:
        names = {s.name for s in self.states}
        for t in self.transitions:
            if t.src not in names or t.dst not in names:
                raise ValueError(f"{self.name}: {t} names an unknown state")
            if t.effect is not None and t.effect not in EFFECTS:
                raise ValueError(f"{self.name}: {t} names an unknown effect")

    def state(self, name: str) -> State:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    def find(self, src: str, event: str) -> Transition:
        for t in self.transitions:
            if t.src == src and t.event == event:
                return t
        raise IllegalTransition(f"{self.name}: no transition {event!r} from {src!r}")

    def markdown(self) -> str:
        """The table as it appears in docs/transactions.md."""
        rows = [f"| {t.src} | {t.event} | {t.dst} | {t.effect or ''} |" for t in self.transitions]
        states = [f"| {s.name} | {s.doc} | {s.recover} |" for s in self.states]
        return "\n".join([f"### {self.title_zh} / {self.title_en} (`{self.name}`)", "",
                          "| state | meaning | at recovery |", "| --- | --- | --- |", *states, "",
                          "| from | event | to | side effect (journalled) |", "| --- | --- | --- | --- |", *rows])


def T(src: str, event: str, dst: str, effect: str | None = None) -> Transition:
    return Transition(src, event, dst, effect)


@dataclass
class Hardware:
    """The devices a flow may use; any may be missing (None / empty) and flows say so politely."""

    acceptors: list[Any] = field(default_factory=list)  # hal.cash.CashAcceptor
    hopper: Any = None  # hal.cash.PayoutDevice
    printer: Any = None  # hal.peripherals.Printer
    dispensers: dict[int, Any] = field(default_factory=dict)  # face value fen -> CardDispenser
    modem: Any = None  # hal.peripherals.Modem
    id_reader: Any = None  # hal.idcard.IdReader
    camera: Any = None  # hal.camera.Camera
    sim_writer: Any = None  # hal.simcard.SimWriter (PC/SC reader at the SIM dispenser's IC position)
    sim_dispenser: Any = None  # the dispenser holding blank SIMs (CardDispenser with move_to_read_position)


@dataclass
class FlowConfig:
    topup_amounts: list[int] = field(default_factory=lambda: [1000, 2000, 3000, 5000, 10000])
    overpay: str = "change"  # top-up overpayment: "change" (hopper) or "credit" (to the phone)
    max_change_fen: int = 5000  # bills are stacked only while the change stays within this
    idle_timeout: float = 60.0  # no cash and no touch for this long: the customer has gone
    stack_timeout: float = 10.0  # stack() to Stacked/Returned
    # "accept this note?": unanswered this long, the note goes back (0: no question, every note that
    # fits is kept). Well under the validator's own escrow timeout (ccTalk: "usually 30 s or more").
    note_question_s: float = 15.0
    drain_time: float = 0.5  # after inhibiting, money still arriving within this counts
    take_timeout: float = 30.0  # card at the gate, not taken: captured
    card_prices: dict[int, int] = field(default_factory=lambda: {3000: 3000, 5000: 5000, 10000: 10000})
    boss_attempts: int = 3  # a keyed write is repeated (same key) this often on timeout
    max_outbox: int = 20000  # outbox deeper than this: no new cash-taking flows
    outbox_warn: int = 0  # deeper than this: the outbox_high alarm, before max_outbox stops cash; 0 = half of it
    hotline: str = "10086"
    denominations: list[int] = field(default_factory=lambda: [10, 50, 100, 500, 1000, 2000, 5000, 10000])
    # identity (issue 11)
    hall_public_key: str = ""  # X25519, hex: real-name data is sealed to it (halld pii keygen); "" = no ID flows
    new_number_fen: int = 5000  # a new number with its SIM: the first month's prepaid balance
    new_number_plan: str = "4G-38"
    numbers_shown: int = 6  # numbers offered per search
    id_timeout: float = 30.0  # waiting for the customer to place the ID card


@dataclass
class Services:
    journal: Journal
    hw: Hardware
    boss: Boss | None = None
    config: FlowConfig = field(default_factory=FlowConfig)
    clock: Callable[[], float] = time.time
    cash_lock: CashLock = field(default_factory=CashLock)  # kioskd's lock-down: the intake stops


@dataclass
class Settled:
    """What an effect's result means for the books: the outcome row, money and counter moves."""

    outcome: dict
    money: list[records.Money] = field(default_factory=list)
    counts: list[records.Count] = field(default_factory=list)


class Run:
    """One transaction walking through its spec."""

    def __init__(self, services: Services, spec: FlowSpec, customer: Customer, txn: str) -> None:
        self.services = services
        self.spec = spec
        self.customer = customer
        self.txn = txn
        self.state = spec.states[0].name
        self.journal = services.journal

    @classmethod
    async def begin(cls, services: Services, spec: FlowSpec, customer: Customer) -> "Run":
        j = services.journal
        txn = await j.write(records.new_txn, j.kiosk, j.boot, spec.name, None, spec.states[0].name, services.clock())
        boundary(f"{spec.name}:begin:open")
        return cls(services, spec, customer, txn)

    @property
    def config(self) -> FlowConfig:
        return self.services.config

    def boundary(self, step: str, phase: str) -> None:
        """A journalled step boundary has committed (the crash harness may kill here)."""
        boundary(f"{self.spec.name}:{step}:{phase}")

    def say(self, key: str, **fmt: Any) -> None:
        self.customer.show(key, **fmt)

    async def go(self, event: str, *, data: dict | None = None, phone: str | None = None,
                 amount_fen: int | None = None, money: list[records.Money] = (),
                 counts: list[records.Count] = ()) -> str:
        """A plain transition; ``money``/``counts`` are written in the same commit as the new state."""
        t = self.spec.find(self.state, event)
        if t.effect is not None:
            raise IllegalTransition(f"{self.spec.name}: {event!r} needs its effect {t.effect!r}")
        now = self.services.clock()

        def write(conn: Any) -> None:
            records.set_flow_state(conn, self.txn, t.dst, now, data, phone, amount_fen)
            records.add_money(conn, self.txn, money, now, None, counts)
        await self.journal.write(write)
        self.state = t.dst
        self.boundary(event, "state")
        return t.dst

    async def effect(self, event: str, args: dict, action: Callable[[], Awaitable[R]],
                     settle: Callable[[R | Exception], Settled]) -> R:
        """Intent (fsync'd), action, outcome. An exception from ``action`` is journalled, then re-raised.

        Cancellation (shutdown, power-fail) leaves the intent open on purpose: recovery resolves it.
        """
        t = self.spec.find(self.state, event)
        if t.effect is None:
            raise IllegalTransition(f"{self.spec.name}: {event!r} has no effect")
        step = await self.journal.write(records.open_intent, self.txn, t.effect, args, self.services.clock(), t.dst)
        self.state = t.dst
        self.boundary(t.effect, "intent")
        try:
            result: Any = await action()
        except Exception as exc:  # journalled as the outcome; BaseException (cancel) leaves it open
            result = exc
        s = settle(result)
        await self.journal.write(lambda c: records.close_intent(c, step, s.outcome, self.services.clock(),
                                                                money=s.money, counts=s.counts))
        self.boundary(t.effect, "outcome")
        if isinstance(result, Exception):
            raise result
        return result

    async def money(self, money: list[records.Money], counts: list[records.Count] = ()) -> None:
        await self.journal.write(records.add_money, self.txn, money, self.services.clock(), None, list(counts))
        self.boundary("money", "commit")

    async def ledger(self) -> Ledger:
        return await self.journal.read(records.ledger, self.txn)

    async def finish(self, event: str, note: str = "") -> str:
        """Take the final transition; an unbalanced ledger sends the transaction to review instead."""
        t = self.spec.find(self.state, event)
        final = t.dst if t.dst in records.FINAL_STATES else "done"
        now = self.services.clock()

        def write(conn: Any) -> str:  # one commit: an open transaction never sits in a final state
            records.set_flow_state(conn, self.txn, t.dst, now)
            if records.ledger(conn, self.txn).held_for_review > 0:  # money held: a person must look
                records.finish_for_review(conn, self.txn, note or "money held", now)
                return "review"
            records.finish_txn(conn, self.txn, final, now, note)
            return final
        try:
            final = await self.journal.write(write)
            self.state = t.dst
            self.boundary(event, "finish")
            return final
        except LedgerUnbalanced as exc:
            await self.journal.write(records.finish_for_review, self.txn, f"unbalanced: {exc}", self.services.clock())
            return "review"

    async def review(self, event: str, reason: str) -> str:
        """Take the transition ``event`` to ``review``: what is outstanding is held for a person."""
        t = self.spec.find(self.state, event)
        if t.dst != "review":
            raise IllegalTransition(f"{self.spec.name}: {event!r} does not lead to review")
        now = self.services.clock()

        def write(conn: Any) -> int:
            records.set_flow_state(conn, self.txn, t.dst, now)
            return records.finish_for_review(conn, self.txn, reason, now)
        await self.journal.write(write)
        self.state = "review"
        self.boundary(event, "finish")
        return "review"


@dataclass(frozen=True)
class FlowResult:
    txn: str
    state: str  # done | refunded | declined | failed | review
    ledger: dict
    vouchers: list[str]

"""CREATOR CRT-571/591 (QUIO QU-TK-F3x) card dispenser over its 0xF2 frames (card-dispensers.md §4.2).

Why the retry rules look the way they do: a status enquiry may be sent again at will, but a
*move* whose answer was garbled may already have happened — sending it again could put two
SIMs in the customer's hand. So a move is never repeated after the device ACKed it or after
anything came back; its outcome is read from a fresh status enquiry instead. Only a NAK or total
silence (the command never arrived, §4.2 "otherwise host resends") repeats a move.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..peripherals import DispenseFailed, DispenserStatus
from ..protocols.crt571 import ACK, ENQ, Ack, BadFrame, Command, Crt571Codec, Negative, Nak, Positive
from .common import LinkFault, SerialDispenser

# §4.2 commands (CM, PM)
CM_INIT, CM_STATUS, CM_MOVE = 0x30, 0x31, 0x32
PM_STATUS = 0x30
PM_CAPTURE = 0x33  # 32 33: capture to the error-card bin
CM_VERSION, PM_VERSION = 0xA4, 0x30
INIT_CAPTURE = 0x31  # 30 31: initialise, capturing a card found inside

# st0 / st1 values (§4.2 "Medium/Low": see docs/hardware/dispenser.md)
ST0_NONE, ST0_GATE, ST0_READ = "0", "1", "2"
ST1_EMPTY, ST1_LOW = "0", "1"
ST2_BIN_FULL = "1"

# e1 e0 -> our fault code ("10", "A0", "A1", "B0" assumed, see docs/hardware/dispenser.md)
ERRORS = {"10": "jam", "A0": "empty", "A1": "bin_full", "B0": "not_initialised"}


class _Unsure(Exception):
    """A move may or may not have happened (garbled or missing answer after the ACK)."""


class Crt571Dispenser(SerialDispenser):
    @dataclass(frozen=True)
    class Options:
        port: str
        baudrate: int = 38400  # §4.2: 9600-57600; CRT-591 hosts commonly use 38400
        address: int = 0  # §4.2: binary 0x00-0x0F (DIP or soft-set)
        ack_timeout_s: float = 0.3  # §4.2: the device ACKs within ~300 ms, else resend
        response_timeout_s: float = 5.0  # a motion, ACK to response
        retries: int = 2
        enq_after_ack: bool = False  # older Creator units answer only after ENQ (learnt if needed)
        poll_interval_s: float = 0.25
        dispense_timeout_s: float = 10.0
        take_timeout_s: float = 30.0
        gate_pm: int = 0x30  # 32 30 hold at gate (F3x); one CRT-591 driver says 39: verify
        read_pm: int = 0x31  # 31 IC contact position (SIM writing); 32 RF antenna
        init_pm: int = 0x33  # power-on initialise: 33 leave a card found inside where it is

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self.codec = Crt571Codec(options.address)
        self.firmware = ""
        self._initialised = False
        self._jammed = False  # the status reply has no jam flag: remember the last move's answer
        self._needs_enq = options.enq_after_ack

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.open()
        try:
            await self.reset()
        except DispenseFailed:
            pass  # reported and health set; the next call tries again

    async def self_test(self) -> str:
        try:
            st = await self.reset()
        except DispenseFailed as exc:
            return f"{self.name}: FAIL {exc.code}"
        level = "empty" if st.empty else "low" if st.near_empty else "enough"
        return f"{self.name}: ok, firmware {self.firmware or '?'}, stock {level}, card at gate {st.card_at_gate}"

    # -- the conversation ----------------------------------------------------------------
    async def _transact(self, cm: int, pm: int, idempotent: bool) -> Positive | Negative:
        loop = asyncio.get_running_loop()
        frame = self.codec.encode(Command(cm, pm))
        last = "silent"
        for _ in range(self.options.retries + 1):
            self.send(frame)
            acked = garbled = enq_sent = fallback_enq = False
            deadline = loop.time() + self.options.ack_timeout_s
            while True:
                event = await self.next_event(deadline)
                if event is None:
                    if not acked:
                        if garbled and not idempotent:
                            raise _Unsure("no ACK, only garbage")
                        last = "bad_reply" if garbled else "silent"
                        break
                    if not enq_sent:  # §4.2: older Creator tools send ENQ after the ACK
                        self.send(bytes([ENQ]), fresh=False)
                        enq_sent = fallback_enq = True
                        deadline = loop.time() + self.options.response_timeout_s
                        continue
                    if not idempotent:
                        raise _Unsure("ACK but no response")
                    last = "silent"
                    break
                if isinstance(event, Ack):
                    acked = True
                    deadline = loop.time() + self.options.response_timeout_s
                    if self._needs_enq and not enq_sent:
                        self.send(bytes([ENQ]), fresh=False)
                        enq_sent = True
                elif isinstance(event, Nak):
                    last = "nak"  # the frame was refused: nothing was executed
                    break
                elif isinstance(event, (Positive, Negative)) and (event.cm, event.pm) == (cm, pm):
                    self.send(bytes([ACK]), fresh=False)  # §4.2: host ACKs the response
                    if fallback_enq:
                        self._needs_enq = True  # this unit answers only after ENQ: say it at once
                    return event
                elif isinstance(event, (BadFrame, Positive, Negative)):
                    garbled = True  # before the ACK: noise, keep listening
                    if acked:  # the response itself came back damaged
                        if not idempotent:
                            raise _Unsure(getattr(event, "reason", "answer to another command"))
                        last = "bad_reply"
                        break
        raise LinkFault(last, f"{self.options.retries + 1} attempts, CM {cm:02X} PM {pm:02X}")

    async def _call(self, cm: int, pm: int, idempotent: bool = True) -> Positive | Negative:
        """One command; a device that lost its initialisation is initialised and asked again."""
        reply = await self._transact(cm, pm, idempotent)
        if isinstance(reply, Negative) and ERRORS.get(reply.code) == "not_initialised" and cm != CM_INIT:
            self._initialised = False
            await self._init(self.options.init_pm)
            reply = await self._transact(cm, pm, idempotent)
        return reply

    async def _init(self, pm: int) -> Positive:
        reply = await self._transact(CM_INIT, pm, idempotent=True)
        if isinstance(reply, Negative):
            raise LinkFault(ERRORS.get(reply.code, "device_error"), f"initialise: error {reply.code}")
        self._initialised = True
        self._jammed = False
        self.firmware = reply.data.decode("latin-1", "replace").strip()
        return reply

    def _status_of(self, reply: Positive) -> DispenserStatus:
        self.note_bin(reply.st2 == ST2_BIN_FULL)  # §4.2 st2: error-card bin
        return DispenserStatus(
            known=True,
            empty=reply.st1 == ST1_EMPTY,
            near_empty=reply.st1 == ST1_LOW,
            jammed=self._jammed,
            card_at_gate=reply.st0 == ST0_GATE,
            card_in_read_position=reply.st0 == ST0_READ,
        )

    async def _status(self) -> DispenserStatus:
        reply = await self._call(CM_STATUS, PM_STATUS)
        if isinstance(reply, Negative):
            raise LinkFault(ERRORS.get(reply.code, "device_error"), f"status: error {reply.code}")
        return self.note_status(self._status_of(reply))

    async def _move(self, pm: int, want_st0: str, what: str) -> DispenserStatus:
        """Move and confirm where the card is; see the module docstring for the retry rule."""
        try:
            reply = await self._call(CM_MOVE, pm, idempotent=False)
        except _Unsure as exc:
            st = await self._status()
            if (want_st0 == ST0_GATE and st.card_at_gate) or (want_st0 == ST0_READ and st.card_in_read_position) or (
                want_st0 == ST0_NONE and not (st.card_at_gate or st.card_in_read_position)
            ):
                return st
            raise LinkFault("bad_reply", f"{what}: {exc}; the card is not where it should be") from None
        if isinstance(reply, Negative):
            code = ERRORS.get(reply.code, "device_error")
            self._jammed = code == "jam"
            if code == "bin_full":
                self.note_bin(True)
            raise LinkFault(code, f"{what}: device error {reply.code}")
        self._jammed = False
        return self.note_status(self._status_of(reply))

    # -- CardDispenser -------------------------------------------------------------------
    async def status(self) -> DispenserStatus:
        async with self.lock:
            try:
                return await self._status()
            except LinkFault as exc:
                self.report("fault", exc.code, exc.detail)
                return self.note_status(DispenserStatus(known=False))

    async def reset(self, capture: bool = False) -> DispenserStatus:
        """Initialise (§4.2 30 Pm): required after power-on; ``capture`` bins a card inside."""
        async with self.lock:
            try:
                await self._init(INIT_CAPTURE if capture else self.options.init_pm)
                return await self._status()
            except LinkFault as exc:
                self.fail(exc.code, exc.detail)

    async def dispense_to_gate(self) -> None:
        async with self.lock:
            try:
                if not self._initialised:
                    await self._init(self.options.init_pm)
                st = await self._status()
                if st.card_at_gate:
                    self.fail("card_at_gate", "an earlier card is still at the gate")
                if st.empty and not st.card_in_read_position:
                    self.fail("empty", "card stacker empty")
                self.refuse_if_bin_full()
                st = await self._move(self.options.gate_pm, ST0_GATE, "dispense to gate")
                if not st.card_at_gate:
                    st = await self._await_gate()
            except LinkFault as exc:
                self.fail(exc.code, exc.detail)

    async def _await_gate(self) -> DispenserStatus:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.dispense_timeout_s
        while loop.time() < deadline:
            await asyncio.sleep(self.options.poll_interval_s)
            st = await self._status()
            if st.card_at_gate:
                return st
        raise LinkFault("jam", f"no card at the gate after {self.options.dispense_timeout_s:g} s")

    async def capture(self) -> None:
        async with self.lock:
            try:
                await self._move(PM_CAPTURE, ST0_NONE, "capture to bin")
            except LinkFault as exc:
                self.fail("capture_failed" if exc.code == "device_error" else exc.code, exc.detail)

    async def move_to_read_position(self) -> None:
        async with self.lock:
            try:
                if not self._initialised:
                    await self._init(self.options.init_pm)
                st = await self._status()
                if st.empty and not (st.card_at_gate or st.card_in_read_position):
                    self.fail("empty", "card stacker empty")
                await self._move(self.options.read_pm, ST0_READ, "move to read position")
            except LinkFault as exc:
                self.fail(exc.code, exc.detail)

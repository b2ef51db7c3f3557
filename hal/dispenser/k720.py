"""Mingte / TTCE K720 (K730, K750) card dispenser over its ACK/ENQ protocol (card-dispensers.md §4.3).

Why resending is safe here: the device executes a command only after the host's ENQ, so a
command whose ACK was lost or garbled is simply sent again. Mechanical ("list 2") commands
return nothing after the ENQ; their outcome is read by polling AP (>= 200 ms apart, §4.3).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from ..peripherals import DispenseFailed, DispenserStatus
from ..protocols.k720 import UNDEFINED_COMMAND, Ack, ApStatus, BadFrame, K720Codec, Nak, Negative, Positive, Status
from .common import LinkFault, SerialDispenser


def refused(payload: bytes, reply: Negative) -> LinkFault:
    """§4.3 error reply 'N' CM PM ERR_CD as a named fault: the model lacks the command, or refused it."""
    code = "undefined_command" if reply.code == UNDEFINED_COMMAND else "device_error"
    return LinkFault(code, f"{payload.decode('latin-1')}: the dispenser answered error {reply.code:02X} ({reply.meaning})")


class K720Dispenser(SerialDispenser):
    @dataclass(frozen=True)
    class Options:
        port: str
        baudrate: int = 9600  # §4.3
        address: int = 0  # §4.3: DIP switches, '00'..'15' on the wire
        ack_timeout_s: float = 0.2  # vendor SDK: 200 ms check
        response_timeout_s: float = 1.2  # vendor SDK: 1200 ms action
        retries: int = 2
        poll_interval_s: float = 0.25  # §4.3: two checks at least 200 ms apart
        dispense_timeout_s: float = 10.0
        take_timeout_s: float = 30.0

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self.codec = K720Codec(options.address)
        self.firmware = ""

    async def start(self) -> None:
        await self.open()
        try:
            async with self.lock:
                try:
                    reply = await self._command(b"GV", expect_reply=True)
                    if isinstance(reply, Positive):
                        self.firmware = reply.data.decode("latin-1", "replace").strip()
                except LinkFault:
                    pass  # older units may not know GV; the status below decides
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
    async def _command(self, payload: bytes, expect_reply: bool) -> Any:
        """Command -> ACK -> ENQ (-> reply for "list 1" commands), resent on NAK/silence/garbage."""
        loop = asyncio.get_running_loop()
        frame = self.codec.encode(payload)
        last = "silent"
        for _ in range(self.options.retries + 1):
            self.send(frame)
            deadline = loop.time() + self.options.ack_timeout_s
            answer = None
            garbled = False
            while answer is None:
                event = await self.next_event(deadline)
                if event is None:
                    break
                if isinstance(event, (Ack, Nak)):
                    answer = event
                else:
                    garbled = True
            if answer is None:
                last = "bad_reply" if garbled else "silent"
                continue
            if isinstance(answer, Nak):
                last = "nak"
                continue
            self.send(self.codec.enq())  # §4.3: now execute it
            if not expect_reply:
                return None
            event = await self.next_event(loop.time() + self.options.response_timeout_s)
            if isinstance(event, Negative):
                raise refused(payload, event)  # the unit answered: resending cannot help
            if isinstance(event, (Status, Positive)):
                return event
            last = "bad_reply" if isinstance(event, BadFrame) else "silent"
        raise LinkFault(last, f"{payload.decode('latin-1')}: {self.options.retries + 1} attempts")

    async def _error_reply_within(self, payload: bytes, seconds: float) -> None:
        """A "list 2" command answers nothing after the ENQ, unless the unit refuses it: then the
        error reply (undefined command, say) comes at once. Listen for it instead of sleeping."""
        deadline = asyncio.get_running_loop().time() + seconds
        while (event := await self.next_event(deadline)) is not None:
            if isinstance(event, Negative):
                raise refused(payload, event)

    async def _ap(self) -> ApStatus:
        reply = await self._command(b"AP", expect_reply=True)
        if not isinstance(reply, Status) or len(reply.digits) != 4:
            raise LinkFault("bad_reply", f"AP answered {reply!r}")
        return reply.ap()

    def _status_of(self, ap: ApStatus) -> DispenserStatus:
        self.note_bin(ap.bin_full)  # §4.3 AP digit 1: recycling box full
        return DispenserStatus(
            known=True,
            empty=ap.empty,
            near_empty=ap.pre_empty,
            jammed=ap.jam,
            card_at_gate=ap.sensor3,
            card_in_read_position=(ap.sensor1 or ap.sensor2) and not ap.sensor3,
        )

    async def _status(self) -> DispenserStatus:
        return self.note_status(self._status_of(await self._ap()))

    async def _run(self, payload: bytes, done: Callable[[ApStatus], bool], what: str) -> ApStatus:
        """A mechanical command, then AP polls until ``done`` or a fault flag (§4.3 digits 1-3)."""
        loop = asyncio.get_running_loop()
        await self._command(payload, expect_reply=False)
        await self._error_reply_within(payload, self.options.poll_interval_s)  # §4.3: >= 200 ms to the first AP
        deadline = loop.time() + self.options.dispense_timeout_s
        while True:
            ap = await self._ap()
            self.note_status(self._status_of(ap))
            if ap.dispensing or ap.collecting:
                pass
            elif done(ap):
                return ap
            elif ap.jam:
                raise LinkFault("jam", f"{what}: card jam")
            elif ap.empty and not ap.card_in_channel:
                raise LinkFault("empty", f"{what}: card box empty")
            elif ap.bin_full:
                raise LinkFault("bin_full", f"{what}: recycling box full")
            elif ap.dispense_error or ap.collect_error or ap.cannot_execute:
                raise LinkFault("device_error", f"{what}: device flags {ap}")
            if loop.time() >= deadline:
                raise LinkFault("jam", f"{what}: not done after {self.options.dispense_timeout_s:g} s")
            await asyncio.sleep(self.options.poll_interval_s)

    # -- CardDispenser -------------------------------------------------------------------
    async def status(self) -> DispenserStatus:
        async with self.lock:
            try:
                return await self._status()
            except LinkFault as exc:
                self.report("fault", exc.code, exc.detail)
                return self.note_status(DispenserStatus(known=False))

    async def reset(self) -> DispenserStatus:
        """RS (list 2), then read the status back."""
        async with self.lock:
            try:
                await self._command(b"RS", expect_reply=False)
                await self._error_reply_within(b"RS", self.options.poll_interval_s)
                return await self._status()
            except LinkFault as exc:
                self.fail(exc.code, exc.detail)

    async def dispense_to_gate(self) -> None:
        async with self.lock:
            try:
                ap = await self._ap()
                self.note_status(self._status_of(ap))
                if ap.jam:
                    self.fail("jam", "card jam before dispensing")
                if ap.sensor3:
                    self.fail("card_at_gate", "an earlier card is still at the gate")
                if ap.empty and not ap.card_in_channel:
                    self.fail("empty", "card box empty")
                self.refuse_if_bin_full()
                await self._run(b"DC", lambda ap: ap.sensor3, "dispense to gate")
            except LinkFault as exc:
                self.fail(exc.code, exc.detail)

    async def capture(self) -> None:
        async with self.lock:
            try:
                await self._run(b"CP", lambda ap: not ap.card_in_channel, "capture to bin")
            except LinkFault as exc:
                self.fail("capture_failed" if exc.code == "device_error" else exc.code, exc.detail)

    async def move_to_read_position(self) -> None:
        async with self.lock:
            try:
                ap = await self._ap()
                if ap.jam:
                    self.fail("jam", "card jam")
                if ap.empty and not ap.card_in_channel:
                    self.fail("empty", "card box empty")
                await self._run(b"FC7", lambda ap: (ap.sensor1 or ap.sensor2) and not ap.sensor3, "move to read position")
            except LinkFault as exc:
                self.fail(exc.code, exc.detail)

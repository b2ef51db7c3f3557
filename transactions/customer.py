"""The customer, as a flow sees them: someone the flow asks, shows things to, and who may leave.

Flows never touch the screen. They ``await customer.choose(...)`` / ``await customer.enter(...)``
and call ``customer.show(key, **fmt)`` with a message key (transactions/messages.json). The local
API behind the touch screen implements this for real; ``ScriptedCustomer`` implements it from a
list of answers, for tests, the demo and the crash harness.

Leaving is an exception, so every flow has one exit path for it: ``CustomerCancelled`` (the cancel
button) and its subclass ``CustomerIdle`` (no touch for the idle timeout). While cash goes in the
flow also watches ``customer.cancelled`` (an ``asyncio.Event``), since no question is pending then.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol, Sequence


class CustomerCancelled(Exception):
    """The customer pressed cancel (取消)."""


class CustomerIdle(CustomerCancelled):
    """The customer stopped answering (walked away): treated as a cancel, with its own message."""


class Customer(Protocol):
    cancelled: asyncio.Event

    async def choose(self, prompt: str, options: Sequence[str], **fmt: Any) -> str:
        """One of ``options`` (ids; the screen labels them through messages); raises CustomerCancelled."""
        ...

    async def enter(self, prompt: str, kind: str, **fmt: Any) -> str:
        """Typed input; ``kind`` is phone | password | sms_code | month. Raises CustomerCancelled."""
        ...

    async def decide(self, prompt: str, options: Sequence[str], default: str, within_s: float, **fmt: Any) -> str:
        """A question a device cannot wait on (a note held in escrow): one of ``options``, or ``default``
        when there is no answer within ``within_s`` (touches do not extend it), on cancel, or when the
        customer has gone. Never raises CustomerCancelled: the caller sees ``cancelled`` afterwards."""
        ...

    def show(self, key: str, **fmt: Any) -> None:
        """Put message ``key`` on the screen (no answer expected)."""
        ...


CANCEL = "<cancel>"
IDLE = "<idle>"


class ScriptedCustomer:
    """Answers questions from a list, in order; ``CANCEL``/``IDLE`` in the list leave at that point.

    ``on_show(key, fmt)`` lets a script react to the screen (e.g. insert cash when the flow says
    "insert cash", or press cancel half-way). Everything shown is kept in ``shown``.
    ``decide`` questions (accept this note?) take their answers from ``decisions`` in order, and the
    first option (accept: the script put the note in to pay) when it runs out; IDLE is no answer.
    """

    def __init__(self, answers: Sequence[str] = (), on_show: Callable[[str, dict], None] | None = None,
                 decisions: Sequence[str] = ()) -> None:
        self.answers = list(answers)
        self.on_show = on_show
        self.decisions = list(decisions)
        self.shown: list[tuple[str, dict]] = []
        self.asked: list[tuple[str, tuple]] = []
        self.decided: list[tuple[str, str]] = []
        self.cancelled = asyncio.Event()

    def _next(self, prompt: str, options: tuple) -> str:
        self.asked.append((prompt, options))
        if not self.answers:
            raise CustomerIdle(f"no scripted answer for {prompt}")
        answer = self.answers.pop(0)
        if answer == CANCEL:
            self.cancelled.set()
            raise CustomerCancelled(prompt)
        if answer == IDLE:
            raise CustomerIdle(prompt)
        if options and answer not in options:
            raise AssertionError(f"script answers {answer!r} to {prompt}, options {options}")
        return answer

    async def choose(self, prompt: str, options: Sequence[str], **fmt: Any) -> str:
        await asyncio.sleep(0)
        return self._next(prompt, tuple(options))

    async def enter(self, prompt: str, kind: str, **fmt: Any) -> str:
        await asyncio.sleep(0)
        return self._next(prompt, ())

    async def decide(self, prompt: str, options: Sequence[str], default: str, within_s: float, **fmt: Any) -> str:
        await asyncio.sleep(0)
        answer = self.decisions.pop(0) if self.decisions else options[0]
        if answer == IDLE or self.cancelled.is_set():
            answer = default
        if answer not in options:
            raise AssertionError(f"script decides {answer!r} on {prompt}, options {tuple(options)}")
        self.decided.append((prompt, answer))
        return answer

    def show(self, key: str, **fmt: Any) -> None:
        self.shown.append((key, fmt))
        if self.on_show is not None:
            self.on_show(key, fmt)

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def shown_keys(self) -> list[str]:
        return [k for k, _ in self.shown]

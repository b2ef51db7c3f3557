"""The touch screen, as the flow sees it (transactions.customer.Customer), served over the local API.

The flow asks (``choose``/``enter``) and shows message keys; whoever holds the screen — the
kiosk's UI, the demo's scripted customer, the crash harness — reads ``snapshot()`` and calls
``answer()`` or ``cancel()`` through kioskd.sock. No touch for ``idle_timeout_s`` is a walk-away;
``touch()`` (a key pressed on the keypad) restarts that wait. A ``decide`` question (accept this
note?) has its own short time instead, which touches do not extend, and falls back to its default:
a note cannot wait in escrow longer than the validator keeps it. ``on_change`` is called, synchronously and
cheaply, whenever what the screen should show moves: the web UI pushes a snapshot on it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence

from transactions.customer import CustomerCancelled, CustomerIdle
from transactions.messages import catalogue, in_lang


class AnswerRefused(ValueError):
    """An answer that does not fit the question on the screen (no question, or not an option)."""


def _words(key: str, fmt: dict[str, Any]) -> dict[str, str]:
    entry = catalogue().get(key)
    if entry is None:
        return {"zh": key, "en": key}
    out = {}
    for lang in ("zh", "en"):
        try:
            out[lang] = entry[lang].format(**{k: in_lang(v, lang) for k, v in fmt.items()})
        except (KeyError, IndexError, ValueError):
            out[lang] = entry[lang]
    return out


def _plain(value: Any) -> Any:
    """What a snapshot carries of a shown value: strings, or the per-language pair as strings."""
    return {k: str(v) for k, v in value.items()} if isinstance(value, dict) else str(value)


class ScreenCustomer:
    def __init__(self, idle_timeout_s: float = 60.0) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.cancelled = asyncio.Event()
        self.question: dict[str, Any] | None = None
        self.shown: list[dict[str, Any]] = []
        self.shown_n = 0
        self._answer: asyncio.Future[str] | None = None
        self.asked = 0  # questions so far: lets a script wait for "the next question"
        self.deadline = 0.0  # loop time at which the question on screen becomes a walk-away
        self._fixed = False  # the question's time is its own (decide): touches do not extend it
        self.on_change: Callable[[], None] = lambda: None

    # -- the flow's side ------------------------------------------------------------------
    async def choose(self, prompt: str, options: Sequence[str], **fmt: Any) -> str:
        """``labels={option: {"zh": .., "en": ..}}`` names options that have no message of their own
        (plans by their BOSS names); the page shows the option id only when it has neither."""
        labels = fmt.pop("labels", None) or {}
        return await self._ask({"prompt": prompt, "options": list(options), "fmt": fmt, "words": _words(prompt, fmt),
                                "labels": {o: _plain(labels[o]) for o in options if o in labels}})

    async def enter(self, prompt: str, kind: str, **fmt: Any) -> str:
        return await self._ask({"prompt": prompt, "kind": kind, "fmt": fmt, "words": _words(prompt, fmt)})

    async def decide(self, prompt: str, options: Sequence[str], default: str, within_s: float, **fmt: Any) -> str:
        if default not in options:
            raise ValueError(f"default {default!r} is not one of {list(options)}")
        try:
            return await self._ask({"prompt": prompt, "options": list(options), "fmt": fmt, "default": default,
                                    "words": _words(prompt, fmt)}, within_s)
        except CustomerCancelled:  # cancelled, or no answer in time: the safe default
            return default

    def show(self, key: str, **fmt: Any) -> None:
        self.shown_n += 1  # the screen keeps the last 20: the number says which is new
        self.shown.append({"n": self.shown_n, "key": key, "fmt": {k: _plain(v) for k, v in fmt.items()},
                           "words": _words(key, fmt)})
        del self.shown[:-20]
        self.on_change()

    async def _ask(self, question: dict[str, Any], within_s: float | None = None) -> str:
        if self.cancelled.is_set():
            raise CustomerCancelled(question["prompt"])
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self.asked += 1
        self.question = {"n": self.asked, **question}
        self._fixed = within_s is not None
        self.deadline = loop.time() + (self.idle_timeout_s if within_s is None else within_s)
        self.on_change()
        cancel = loop.create_task(self.cancelled.wait())
        try:
            while True:  # touch() may move the deadline while we wait
                done, _ = await asyncio.wait({self._answer, cancel}, timeout=max(0.0, self.deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if done or loop.time() >= self.deadline:
                    break
        finally:
            cancel.cancel()
            self.question = None
            self.on_change()
        if self._answer in done:
            return self._answer.result()
        if self.cancelled.is_set():
            raise CustomerCancelled(question["prompt"])
        raise CustomerIdle(question["prompt"])

    # -- the screen's side (local API) ----------------------------------------------------
    def answer(self, value: str, n: int | None = None) -> None:
        q = self.question
        if q is None or self._answer is None or self._answer.done():
            raise AnswerRefused("no question on the screen")
        if n is not None and n != q["n"]:
            raise AnswerRefused(f"question {n} is gone; the screen shows question {q['n']}")
        if "options" in q and value not in q["options"]:
            raise AnswerRefused(f"{value!r} is not one of {q['options']}")
        self._answer.set_result(str(value))

    def cancel(self) -> None:
        self.cancelled.set()
        self.on_change()

    def touch(self) -> None:
        """The customer is still there (a key on the keypad): the question's walk-away wait starts again."""
        if self.question is not None and not self._fixed:
            self.deadline = asyncio.get_running_loop().time() + self.idle_timeout_s
            self.on_change()

    def snapshot(self) -> dict[str, Any]:
        return {"question": self.question, "shown": self.shown[-5:], "cancelled": self.cancelled.is_set()}

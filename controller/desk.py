"""The service desk: one customer at a time, a flow per visit, driven through the screen.

The local API's ``begin``/``screen``/``answer``/``cancel`` commands land here. A visit runs
inside ``Admission.customer()``, so SIGTERM, an open door or a power fail stop new visits and
shutdown waits for the one in flight.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from hal.emulators.model import ControlError
from transactions import Services, available, recover, run_flow

from .admission import Admission, Refused
from .logs import fields
from .screen import AnswerRefused, ScreenCustomer

log = logging.getLogger("kioskd.desk")


class Desk:
    def __init__(self, services: Services, admission: Admission, idle_timeout_s: float) -> None:
        self.services = services
        self.admission = admission
        self.idle_timeout_s = idle_timeout_s
        self.visits = 0
        self.customer: ScreenCustomer | None = None
        self.task: asyncio.Task | None = None
        self.last: dict[str, Any] | None = None  # the previous visit's result, for the screen
        self.service: str | None = None  # the visit's (or the last visit's) service, for the screen
        self.on_finished: Callable[[], None] = lambda: None  # the link: something new in the outbox
        self.on_screen: Callable[[], None] = lambda: None  # the web UI: what the screen shows moved

    async def menu(self) -> dict[str, bool]:
        return await available(self.services)

    async def begin(self, service: str) -> int:
        if self.task is not None and not self.task.done():
            raise ControlError("a customer is being served")
        if self.admission.closed_because:
            raise ControlError(f"not serving: {self.admission.closed_because}")
        menu = await self.menu()
        if service not in menu:
            raise ControlError(f"unknown service {service!r}; services: {', '.join(menu)}")
        if not menu[service]:
            raise ControlError(f"service {service!r} is not available now")
        self.visits += 1
        self.customer = ScreenCustomer(self.idle_timeout_s)
        self.customer.on_change = self.on_screen
        self.service, self.last = service, None
        self.task = asyncio.get_running_loop().create_task(self._visit(service, self.visits, self.customer),
                                                           name=f"visit-{self.visits}")
        return self.visits

    async def _visit(self, service: str, visit: int, customer: ScreenCustomer) -> None:
        try:
            async with self.admission.customer():
                result = await run_flow(self.services, service, customer)
            self.last = {"visit": visit, "service": service, "txn": result.txn, "state": result.state,
                         "vouchers": list(getattr(result, "vouchers", []) or [])}
            log.info("visit finished", extra=fields(visit=visit, service=service, txn=result.txn, state=result.state))
        except Refused as exc:
            self.last = {"visit": visit, "service": service, "state": "refused", "reason": str(exc)}
        except asyncio.CancelledError:
            self.last = {"visit": visit, "service": service, "state": "parked"}  # recovery resolves it at boot
            raise
        except Exception as exc:  # a flow bug must not take the kiosk down
            log.exception("visit failed", extra=fields(visit=visit, service=service))
            self.last = {"visit": visit, "service": service, "state": "error", "error": repr(exc)}
            try:  # nothing else will finish its transaction before the next reboot: recovery's rules now
                settled = await recover(self.services, this_boot=True)
                self.last["settled"] = [{"txn": r.txn, "final": r.final, "vouchers": r.vouchers} for r in settled]
            except Exception:
                log.exception("settling the failed visit's transaction failed", extra=fields(visit=visit))
        finally:
            self.on_finished()
            self.on_screen()

    def screen(self) -> dict[str, Any]:
        busy = self.task is not None and not self.task.done()
        return {"busy": busy, "visit": self.visits, "last": self.last,
                **(self.customer.snapshot() if self.customer and busy else {"question": None, "shown": []})}

    def answer(self, value: Any, n: int | None = None) -> None:
        if self.customer is None or self.task is None or self.task.done():
            raise ControlError("no customer is being served")
        try:
            self.customer.answer(str(value), n)
        except AnswerRefused as exc:
            raise ControlError(str(exc)) from None

    def cancel(self) -> None:
        if self.customer is not None:
            self.customer.cancel()

    async def park(self) -> None:
        """Shutdown past the grace period: stop the flow where it is; its journal is the record."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

"""kioskd's screen server: a loopback listener in kioskd's own loop, and the snapshot push.

Why it cannot slow the device path: the flow only calls ``changed()``, which sets a flag and
schedules one push for the next turn of the loop (many changes in one turn make one snapshot);
the push writes to each page's socket without awaiting it, and a page that does not read its
snapshots is dropped (it reconnects and gets the current one). The listener is bound before
READY; the HTTP/WebSocket code (h11, wsproto) is imported when the first page connects.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ..config import ui_address
from ..logs import fields
from . import view

log = logging.getLogger("kioskd.ui")

MENU_EVERY_S = 10.0  # the flows' gates (BOSS reachable, outbox) are asked again this often while idle
WATCH_EVERY_S = 0.25  # door, hall commands, alarms: looked at this often (a few attribute reads)
BIND_RETRY_S = 2.0


class UiServer:
    def __init__(self, kiosk: Any) -> None:
        self.kiosk = kiosk
        self.listen = kiosk.config.ui.listen
        self.host, self.port = ui_address(self.listen)
        self.sessions: set[Any] = set()
        self.seq = 0
        self.menu: dict[str, bool] = {}
        self._server: asyncio.AbstractServer | None = None
        self._dirty = False
        self._tasks: list[asyncio.Task] = []
        self._menu_poke = asyncio.Event()

    # -- the flow's side: cheap, synchronous, never waits -----------------------------------
    def changed(self) -> None:
        if not self._dirty:
            self._dirty = True
            asyncio.get_running_loop().call_soon(self._push)

    def _push(self) -> None:
        self._dirty = False
        if not self.sessions:
            return
        text = json.dumps(self.snapshot(), ensure_ascii=False)
        for session in list(self.sessions):
            session.send_text(text)

    def snapshot(self) -> dict[str, Any]:
        self.seq += 1
        return view.snapshot(self.kiosk, self.menu, self.seq)

    # -- what the page may ask --------------------------------------------------------------
    def allowed_hosts(self) -> set[str] | None:
        """Host headers this server answers to (a DNS-rebinding page names another); None: any."""
        if self.kiosk.config.ui.allow_remote:
            return None
        port = self.bound_port
        return {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", self.host)}

    @property
    def bound_port(self) -> int:
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.bound_port}/"

    @property
    def served_url(self) -> str | None:
        """The page's address once the listener is bound (``listen = "127.0.0.1:0"`` picks a free
        port); None while the port is taken and the bind is retried."""
        return self.url if self._server is not None else None

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> "UiServer":
        loop = asyncio.get_running_loop()
        if not await self._bind():
            self._tasks.append(loop.create_task(self._bind_later(), name="ui-bind"))
        self._tasks.append(loop.create_task(self._menu_loop(), name="ui-menu"))
        self._tasks.append(loop.create_task(self._watch(), name="ui-watch"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close(1001, "kioskd stopping")
        if self._server is not None:
            await self._server.wait_closed()

    async def _bind(self, quiet: bool = False) -> bool:
        try:
            self._server = await asyncio.start_server(self._client, self.host, self.port)
        except OSError as exc:
            if not quiet:  # said once; the retries every BIND_RETRY_S stay quiet
                log.error("customer screen not served yet: cannot listen; retrying",
                          extra=fields(listen=self.listen, error=str(exc)))
            return False
        log.info("customer screen served", extra=fields(url=self.url))
        return True

    async def _bind_later(self) -> None:
        while not await self._bind(quiet=True):
            await asyncio.sleep(BIND_RETRY_S)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from .wire import serve_connection  # h11 + wsproto: only once a page connects

        try:
            await serve_connection(self, reader, writer)
        except Exception:  # a page must never take kioskd down
            log.exception("customer screen connection failed")
        finally:
            writer.close()

    def opened(self, session: Any) -> None:
        self.sessions.add(session)
        self._menu_poke.set()
        session.send_text(json.dumps(self.snapshot(), ensure_ascii=False))

    def closed(self, session: Any) -> None:
        self.sessions.discard(session)

    async def _menu_loop(self) -> None:
        """The flows' own gates ask the BOSS: done here, in the background, never per snapshot."""
        while True:
            desk = self.kiosk.desk
            if desk is not None and (self.sessions or not self.menu) and not (desk.task is not None and not desk.task.done()):
                try:
                    menu = await desk.menu()
                except Exception as exc:
                    log.warning("menu not refreshed", extra=fields(error=repr(exc)))
                else:
                    if menu != self.menu:
                        self.menu = menu
                        self.changed()
            # Python 3.11's wait_for returns the result when the inner await finishes just as the
            # task is cancelled (gh-86296): the menu's device status calls can swallow kioskd's
            # stop that way, and this loop then ran on and held the shutdown forever. Honour it.
            if asyncio.current_task().cancelling():
                raise asyncio.CancelledError
            self._menu_poke.clear()
            try:
                await asyncio.wait_for(self._menu_poke.wait(), MENU_EVERY_S)
            except TimeoutError:
                pass

    async def _watch(self) -> None:
        last = None
        busy = False
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            now = view.fingerprint(self.kiosk)
            desk = self.kiosk.desk
            now_busy = desk is not None and desk.task is not None and not desk.task.done()
            if busy and not now_busy:
                self._menu_poke.set()  # a visit ended: stock, BOSS and outbox may have moved
            busy = now_busy
            if now != last:
                last = now
                self.changed()

    # -- the page's requests --------------------------------------------------------------------
    async def handle(self, msg: dict[str, Any]) -> None:
        """One request from the page; raises ValueError (refused, nothing changed) with the reason."""
        from hal.emulators.model import ControlError

        kind = msg.get("type")
        desk = self.kiosk.desk
        if desk is None:
            raise ValueError("kioskd is starting")
        try:
            if kind == "begin":
                service = msg.get("service")
                if not isinstance(service, str):
                    raise ValueError('begin needs a string "service"')
                await self.kiosk.begin(service)
                self.changed()
            elif kind == "answer":
                value, n = msg.get("value"), msg.get("n")
                if not isinstance(value, str) or len(value) > 64:
                    raise ValueError('answer needs a string "value" (at most 64 characters)')
                if not isinstance(n, int) or isinstance(n, bool):
                    raise ValueError('answer needs the question\'s number "n"')
                desk.answer(value, n)
            elif kind == "cancel":
                if desk.customer is None or desk.task is None or desk.task.done():
                    raise ValueError("no customer is being served")
                desk.cancel()
            elif kind == "touch":
                if desk.customer is not None and desk.task is not None and not desk.task.done():
                    desk.customer.touch()
            else:
                raise ValueError(f"unknown type {kind!r} (begin, answer, cancel, touch)")
        except ControlError as exc:
            raise ValueError(str(exc)) from None

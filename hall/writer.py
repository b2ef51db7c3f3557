"""The database writer thread: take everything queued, commit once, then hand back the acks.

Why a thread and batches: a commit (an fsync on SQLite, a round trip on PostgreSQL) costs far
more than the rows in it, and the kiosks keep a window of records in flight, so under load many
messages wait while one commit runs; the next commit takes them all. The event loop never waits on
the database: it only queues, and gets the acks back through `call_soon_threadsafe` *after* the
commit (a kiosk forgets what we ack). Other writes (command log, resolutions) ride in the same
batches as plain functions.

A malformed message never fails a batch: the store checks every value before any SQL and
quarantines what the database could not hold (hall/store.py). A batch that fails all the same (a
PostgreSQL deadlock or serialization error with a sibling worker, a row the database refuses for
a reason the store did not foresee) is rolled back and tried once more whole, then item by item;
a message the database still refuses is quarantined with the database's error, so even then it is
acked and costs only itself. `stats["rollbacks"]` counts the batches that failed.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .db import Database, connect
from .store import Ack, Inbound, Store

log = logging.getLogger("halld.writer")

MAX_BATCH = 2000


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple
    future: asyncio.Future


class Writer:
    """``async with Writer(url, store, on_acks) as w``: ``w.put(inbound)`` and ``await w.call(fn, ...)``."""

    def __init__(self, url: str, store: Store, on_acks: Callable[[list[Ack]], None]) -> None:
        self.url = url
        self.store = store
        self.on_acks = on_acks
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0

    async def __aenter__(self) -> "Writer":
        self._loop = asyncio.get_running_loop()
        db = await asyncio.to_thread(connect, self.url)
        self._thread = threading.Thread(target=self._run, args=(db,), name="halld-writer", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Commit what is queued, then stop."""
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def put(self, m: Inbound) -> None:
        self._queue.put(m)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(db, *args)`` in a write transaction; returns its result once committed."""
        assert self._loop is not None
        future = self._loop.create_future()
        self._queue.put(_Job(fn, args, future))
        return await future

    def _run(self, db: Database) -> None:
        try:
            stopping = False
            while not stopping:
                try:
                    items = [self._queue.get(timeout=self.store.holes_due())]
                except queue.Empty:  # quiet, and a hole has stood long enough: ask for it
                    self._sweep(db)
                    continue
                while len(items) < MAX_BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if items[-1] is None or None in items:
                    stopping = True
                    items = [i for i in items if i is not None]
                if items:
                    self._commit(db, items)
        finally:
            db.close()

    def _commit(self, db: Database, items: list) -> None:
        for attempt in range(2):
            try:
                self._deliver(*self._apply(db, items))
                return
            except Exception as exc:  # deadlock/serialization with a sibling worker, or a bad row
                self.store.stats["rollbacks"] += 1
                log.warning("batch of %d rolled back (%s); %s", len(items), exc,
                            "retrying" if attempt == 0 else "going item by item")
        for item in items:
            try:
                self._deliver(*self._apply(db, [item]))
            except Exception as exc:  # one poison item must not stop the writer
                self.store.stats["failed"] += 1
                log.error("could not store %r: %s", item if isinstance(item, _Job) else item.leaf, exc)
                if isinstance(item, _Job):
                    self._settle(item.future, exc=exc)
                else:
                    self._quarantine(db, item, f"database refused it: {str(exc)[:200]}")

    def _quarantine(self, db: Database, item: Inbound, reason: str) -> None:
        try:
            with db.transaction():
                acks = self.store.apply(db, [item], refused=reason)
        except Exception as exc:  # not even the quarantine row: logged above, the kiosk will resend
            log.error("could not quarantine a message of %s/%s: %s", item.hall, item.kiosk, exc)
            return
        self._deliver(acks, [])

    def _sweep(self, db: Database) -> None:
        try:
            with db.transaction():
                acks = self.store.sweep(db)
        except Exception as exc:  # a sibling's lock or a lost connection: the next sweep tries again
            log.warning("hole sweep rolled back: %s", exc)
            return
        self._deliver(acks, [])

    def _apply(self, db: Database, items: list) -> tuple[list[Ack], list[tuple[_Job, Any]]]:
        inbound = [i for i in items if isinstance(i, Inbound)]
        with db.batch():  # on PostgreSQL in a pipeline: a few round trips a batch, the last one the COMMIT
            acks = self.store.apply(db, inbound) if inbound else []
            done = [(job, job.fn(db, *job.args)) for job in items if isinstance(job, _Job)]
        self.batches += 1
        return acks, done

    def _deliver(self, acks: list[Ack], done: list[tuple[_Job, Any]]) -> None:
        assert self._loop is not None
        if acks:
            self._loop.call_soon_threadsafe(self.on_acks, acks)
        for job, result in done:
            self._settle(job.future, result)

    def _settle(self, future: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
        def settle() -> None:
            if not future.done():
                future.set_exception(exc) if exc is not None else future.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

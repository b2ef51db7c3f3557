"""The journal: the kiosk's single source of truth, in SQLite, written by one thread.

Why one writer thread: sqlite3 blocks, and kioskd has one event loop that must never wait on
an fsync. Every write is a function ``fn(conn, *args)`` queued to the writer; the writer runs
a batch of queued functions in one ``BEGIN IMMEDIATE ... COMMIT`` (each in its own SAVEPOINT,
so one failing function does not undo the others) and only then resolves the callers' futures.
With ``journal_mode=WAL`` and ``synchronous=FULL`` the COMMIT is an fsync of the WAL: when
``await journal.write(...)`` returns, the row survives a power cut. That is what makes
"write the intent, then touch the device" safe.

Reads go to a second thread with its own connection (WAL lets readers run beside the writer).
"""
from __future__ import annotations

import asyncio
import os
import queue
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from .schema import MIGRATIONS

T = TypeVar("T")

_STOP = object()


class JournalClosed(Exception):
    """The journal is not open (or was closed while a caller waited)."""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # fsync on every COMMIT: the intent is on disk
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one ``user_version`` step per transaction; returns the version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"journal schema v{version} is newer than this kioskd (v{len(MIGRATIONS)})")
    for target in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


class _Worker:
    """A thread owning one connection, running queued functions and answering futures."""

    def __init__(self, path: str, name: str, writer: bool, batch: int) -> None:
        self.path = path
        self.writer = writer
        self.batch = batch
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.ready.wait()
        if self.error:
            raise self.error

    def submit(self, fn: Callable, args: tuple, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        fut = loop.create_future()
        self.jobs.put((fn, args, fut, loop))
        return fut

    def stop(self) -> None:
        self.jobs.put(_STOP)
        self.thread.join()

    def _main(self) -> None:
        try:
            conn = _connect(self.path)
        except BaseException as exc:  # reported to start()
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            while True:
                job = self.jobs.get()
                if job is _STOP:
                    return
                batch = [job]
                while len(batch) < self.batch:
                    try:
                        nxt = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        self.jobs.put(_STOP)
                        break
                    batch.append(nxt)
                results = self._run_batch(conn, batch) if self.writer else self._run_reads(conn, batch)
                for (_, _, fut, loop), (ok, value) in zip(batch, results):
                    loop.call_soon_threadsafe(_settle, fut, ok, value)
        finally:
            conn.close()

    @staticmethod
    def _run_reads(conn: sqlite3.Connection, batch: list) -> list:
        results = []
        for fn, args, _, _ in batch:
            try:
                conn.execute("BEGIN")  # one consistent snapshot per read function
                try:
                    results.append((True, fn(conn, *args)))
                finally:
                    conn.execute("COMMIT")
            except BaseException as exc:
                results.append((False, exc))
        return results

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list) -> list:
        """Group commit: one fsync for every write queued meanwhile, each isolated by a savepoint."""
        results = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, args, _, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = fn(conn, *args)
                    conn.execute("RELEASE job")
                    results.append((True, value))
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((False, exc))
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nothing of the batch is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(False, exc) for _ in batch]
        return results


def _settle(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class Journal:
    """``async with Journal(path, kiosk="K01") as j: await j.write(fn, ...)``.

    ``boot`` is this process's boot session id (a counter kept in the ``boots`` table), used in
    transaction ids and in the MQTT birth/will so a late will from an old session is recognised.
    """

    def __init__(self, path: str | Path, kiosk: str = "kiosk", *, version: str = "", batch: int = 64,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self.kiosk = kiosk
        self.version = version
        self.clock = clock
        self.boot = 0
        self.schema_version = 0
        self._batch = batch
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None

    async def open(self) -> "Journal":
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(_sync_directories, Path(self.path))
        conn = _connect(self.path)  # migrations before the workers start: nobody sees a half schema
        try:
            self.schema_version = await asyncio.to_thread(migrate, conn)
        finally:
            conn.close()
        self._writer = _Worker(self.path, "journal-writer", True, self._batch)
        self._reader = _Worker(self.path, "journal-reader", False, 16)
        await asyncio.to_thread(self._writer.start)
        await asyncio.to_thread(self._reader.start)
        self.boot = await self.write(_register_boot, self.clock(), self.version)
        return self

    async def close(self) -> None:
        for worker in (self._writer, self._reader):
            if worker is not None:
                await asyncio.to_thread(worker.stop)
        self._writer = self._reader = None

    async def __aenter__(self) -> "Journal":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a committed (fsync'd) transaction; returns its result."""
        if self._writer is None:
            raise JournalClosed(self.path)
        return await self._writer.submit(fn, args, asyncio.get_running_loop())

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a consistent snapshot; must not write."""
        if self._reader is None:
            raise JournalClosed(self.path)
        return await self._reader.submit(fn, args, asyncio.get_running_loop())

    async def sync(self) -> tuple[int, int, int]:
        """Every commit so far copied from the WAL into the database file, fsync'd, and the WAL
        emptied (checkpoint TRUNCATE): on battery, nothing is left to replay if the UPS dies early.
        Returns SQLite's (busy, WAL frames, frames checkpointed)."""
        await self.write(lambda conn: None)  # a barrier: whatever was queued before has committed
        return await asyncio.to_thread(_checkpoint, self.path)


def _checkpoint(path: str) -> tuple[int, int, int]:
    conn = _connect(path)
    try:
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy, frames, done
    finally:
        conn.close()


# -- test hook: the crash harness (tests/crash, bench/crash_soak.py) ------------------------------
# Inert unless the environment asks. KIOSKD_CRASH_AT="topup:stack_bill:intent:2" makes kioskd
# SIGKILL itself right after the 2nd commit of that boundary in this process, as a power cut
# would; KIOSKD_CRASH_TRACE=FILE appends every boundary label (with its count) to FILE, so the
# harness can list the boundaries a scripted visit passes and then kill at each of them.
_CRASH_AT = os.environ.get("KIOSKD_CRASH_AT", "")
_CRASH_TRACE = os.environ.get("KIOSKD_CRASH_TRACE", "")
_boundaries_seen: dict[str, int] = {}


def arm_crash_hook() -> None:
    """Read the two variables again: the rig forks kioskd from a process that imported this early."""
    global _CRASH_AT, _CRASH_TRACE
    _CRASH_AT = os.environ.get("KIOSKD_CRASH_AT", "")
    _CRASH_TRACE = os.environ.get("KIOSKD_CRASH_TRACE", "")
    _boundaries_seen.clear()


def boundary(label: str) -> None:
    """Called right after a journalled step boundary committed (``flow:step:intent|outcome|...``)."""
    if not (_CRASH_AT or _CRASH_TRACE):
        return
    n = _boundaries_seen[label] = _boundaries_seen.get(label, 0) + 1
    if _CRASH_TRACE:
        with open(_CRASH_TRACE, "a") as trace:
            trace.write(f"{label}:{n}\n")
    if _CRASH_AT == f"{label}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)


def _sync_directories(db: Path) -> None:
    """Make the journal's directory itself survive a power cut, not only what is in it.

    SQLite fsyncs the directory it creates the WAL in, which makes ``journal.db``'s name durable;
    nothing makes a freshly made state directory's own name durable: POSIX needs an fsync of the
    parent (and of its parent, if that is new too). Without it, a new card whose first power cut
    comes early loses the whole journal, committed rows and all (tests/transactions/
    test_power_loss.py found it). So fsync every directory from the journal's up to the root of
    its filesystem: a few cheap fsyncs per boot, whoever created the directories.
    """
    d = db.resolve().parent
    while True:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        except OSError:  # a filesystem that cannot fsync a directory: nothing more to do there
            pass
        finally:
            os.close(fd)
        if d.parent == d or d.parent.stat().st_dev != d.stat().st_dev:
            return  # the filesystem's root: its own name is the mount point, not ours to sync
        d = d.parent


def _register_boot(conn: sqlite3.Connection, now: float, version: str) -> int:
    cur = conn.execute("INSERT INTO boots(started_at, version) VALUES (?, ?)", (now, version))
    return int(cur.lastrowid)

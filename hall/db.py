"""One small database interface over SQLite (default) and PostgreSQL (given a URL), same SQL.

Why not an ORM: halld's SQL is a dozen statements, and the few places where the two engines
differ are named here once — placeholders (`?` is rewritten to `%s` for psycopg), the
auto-numbered id column, how a write transaction starts (SQLite `BEGIN IMMEDIATE` takes the write
lock up front so two SQLite writers serialise instead of failing at commit), and row locks
(`FOR UPDATE` on PostgreSQL, nothing on SQLite where the write lock is already exclusive).
Everything else is portable SQL: `INSERT ... ON CONFLICT ... DO NOTHING/UPDATE`, `DOUBLE
PRECISION` (SQLite reads it as REAL), `BIGINT`.

Both drivers are synchronous and run on threads (hall/writer.py for writes, `asyncio.to_thread`
for the API's reads): the event loop never waits on the database. Connections are opened in
autocommit mode and transactions are explicit (`with db.transaction():`), so the same code drives
both engines.
"""
from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id {serial}, hall TEXT, kiosk TEXT, kind TEXT, received_at DOUBLE PRECISION, payload TEXT);
CREATE TABLE IF NOT EXISTS records (
    hall TEXT, kiosk TEXT NOT NULL, msg_seq BIGINT NOT NULL, kind TEXT, txn TEXT,
    received_at DOUBLE PRECISION, payload TEXT, PRIMARY KEY (kiosk, msg_seq));
CREATE TABLE IF NOT EXISTS highwater (
    kiosk TEXT PRIMARY KEY, hall TEXT, msg_seq BIGINT NOT NULL, updated_at DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS fleet (
    hall TEXT NOT NULL, kiosk TEXT NOT NULL, online BIGINT, session BIGINT, last_seen DOUBLE PRECISION,
    state TEXT, version TEXT, config_hash TEXT, outbox_depth BIGINT, alarms TEXT, devices TEXT,
    cashbox_fen BIGINT, cashbox TEXT, card_stock TEXT, hopper_fen BIGINT, status TEXT,
    status_at DOUBLE PRECISION, PRIMARY KEY (hall, kiosk));
CREATE TABLE IF NOT EXISTS txns (
    hall TEXT, kiosk TEXT NOT NULL, txn TEXT NOT NULL, seq BIGINT, msg_seq BIGINT, service TEXT,
    phone TEXT, amount_fen BIGINT, state TEXT, finished_at DOUBLE PRECISION, received_at DOUBLE PRECISION,
    payload TEXT, PRIMARY KEY (kiosk, txn));
CREATE TABLE IF NOT EXISTS events (
    hall TEXT, kiosk TEXT NOT NULL, msg_seq BIGINT NOT NULL, kind TEXT, device TEXT, code TEXT,
    detail TEXT, txn TEXT, at DOUBLE PRECISION, received_at DOUBLE PRECISION, payload TEXT,
    PRIMARY KEY (kiosk, msg_seq));
CREATE TABLE IF NOT EXISTS refunds (
    hall TEXT, kiosk TEXT NOT NULL, claim_code TEXT NOT NULL, txn TEXT, fen BIGINT, reason TEXT,
    state TEXT, created_at DOUBLE PRECISION, resolved_at DOUBLE PRECISION, note TEXT,
    PRIMARY KEY (kiosk, claim_code));
CREATE TABLE IF NOT EXISTS reviews (
    hall TEXT, kiosk TEXT NOT NULL, txn TEXT NOT NULL, reason TEXT, held_fen BIGINT, state TEXT,
    opened_at DOUBLE PRECISION, resolution TEXT, resolved_at DOUBLE PRECISION, note TEXT,
    PRIMARY KEY (kiosk, txn));
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, hall TEXT, kiosk TEXT, name TEXT, args TEXT, sent_at DOUBLE PRECISION,
    answered_at DOUBLE PRECISION, ok BIGINT, reply TEXT);
CREATE TABLE IF NOT EXISTS quarantine (
    id {serial}, hall TEXT, kiosk TEXT, leaf TEXT, msg_seq BIGINT, reason TEXT, size BIGINT,
    received_at DOUBLE PRECISION, payload TEXT);
CREATE INDEX IF NOT EXISTS txns_received ON txns (received_at);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
"""


class Pending:
    """Statements sent; their rows read only when asked (in a pipeline, that is when it waits)."""

    def __init__(self, cursors: list[Any]) -> None:
        self._cursors = cursors

    def fetch(self) -> list[tuple]:
        return [row for cur in self._cursors for row in cur.fetchall()]


class Database:
    """A connection with the dialect's differences folded in. Not thread-safe: one per thread,
    or guard it (``lock``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._pipeline: contextlib.ExitStack | None = None  # a batch's, on PostgreSQL
        if self.postgres:
            import psycopg  # imported only when PostgreSQL is asked for

            self._conn: Any = psycopg.connect(url, autocommit=True)
            self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        else:
            path = url.removeprefix("sqlite://")
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # an acked row must survive a power cut
            self.errors = (sqlite3.Error,)

    @property
    def for_update(self) -> str:
        return " FOR UPDATE" if self.postgres else ""

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._sql(sql), [tuple(r) for r in rows])

    def rows(self, types: Sequence[str], rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any]]]:
        """Many rows as one table expression, ``(sql, params)``, for ``INSERT ... {sql}`` or
        ``WITH t (...) AS ({sql})``; ``types``: each column's SQL type. On PostgreSQL one
        ``unnest`` of one array per column, whatever the number of rows (a constant statement,
        planned once: a VALUES list of hundreds of rows cost more to plan than to run); on SQLite
        VALUES lists within its 32766 parameters a statement."""
        if not rows:
            return
        if self.postgres:
            floats = [i for i, t in enumerate(types) if t == "DOUBLE PRECISION"]  # an int among floats
            columns = [list(c) for c in zip(*rows)]  # would make psycopg dump the array as integers
            for i in floats:
                columns[i] = [None if v is None else float(v) for v in columns[i]]
            # %b: arrays in binary, where the text form escapes every quote of a JSON payload (a
            # regex per element, more CPU than all the rest of the batch)
            yield "SELECT * FROM unnest(" + ", ".join(f"CAST(%b AS {t}[])" for t in types) + ")", columns
            return
        per = max(1, 30000 // len(types))
        row = "(" + ", ".join(["?"] * len(types)) + ")"
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            yield "VALUES " + ", ".join([row] * len(chunk)), [v for r in chunk for v in r]

    def insert(self, head: str, types: Sequence[str], rows: Sequence[Sequence[Any]], tail: str = "") -> "Pending":
        """``head`` (``INSERT INTO t (columns)``) for every row in as few statements as it takes
        (`rows`); ``.fetch()`` on the result gives what a ``RETURNING`` tail returns. Why not
        executemany: on PostgreSQL that is one execution (and one result to read) per row, and
        with one batch spread over many kiosks those were most of the writer's time."""
        return Pending([self.execute(f"{head} {source} {tail}", params) for source, params in self.rows(types, rows)])

    def stage(self, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> None:
        """PostgreSQL: ``rows`` into this connection's temporary table ``table`` (``columns``: name
        and SQL type; made on first use, emptied first) for the transaction's next statements to
        read, by COPY in binary: for the client a quarter of the CPU of the same rows as unnest
        arrays, and one load of the rows for several statements. libpq has no COPY in a pipeline,
        so a `batch` leaves its pipeline for the COPY and enters a new one (a wait more)."""
        assert self.postgres, "SQLite, in-process, takes rows straight in (`rows`)"
        cols = ", ".join(f"{name} {kind}" for name, kind in columns)
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({cols}) ON COMMIT DELETE ROWS")
        self.execute(f"DELETE FROM {table}")  # a second stage in one transaction holds its own rows only
        piped = self._pipeline is not None
        if piped:
            self._leave_pipeline()
        with self._conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([kind.lower() for _, kind in columns])
            for row in rows:
                copy.write_row(row)
        if piped:
            self._enter_pipeline()

    def _enter_pipeline(self) -> None:
        self._pipeline = contextlib.ExitStack()
        self._pipeline.enter_context(self._conn.pipeline())

    def _leave_pipeline(self, *exc: Any) -> None:
        """Out of pipeline mode once every statement sent has been answered (a statement's error
        is raised here, unless ``exc`` is already on its way)."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.__exit__(*(exc or (None, None, None)))

    @contextlib.contextmanager
    def batch(self) -> Iterator["Database"]:
        """A write transaction (`transaction`), on PostgreSQL in libpq's pipeline mode: statements
        go out without waiting for each reply, and the client waits only where it reads a result
        (a fetch), for a `stage`, and at the end, for the COMMIT; it returns once the COMMIT is
        done. A statement that failed is reported at the next wait, maybe after COMMIT was queued
        (and skipped): whatever the failure, the transaction is rolled back before the error goes
        on. On SQLite, in-process, it is just `transaction`."""
        if not self.postgres:
            with self.transaction():
                yield self
            return
        from psycopg.pq import TransactionStatus

        try:
            self._enter_pipeline()
            try:
                with self.transaction():
                    yield self
            except BaseException:
                self._leave_pipeline(*sys.exc_info())
                raise
            self._leave_pipeline()
        except BaseException:
            if self._conn.info.transaction_status != TransactionStatus.IDLE:
                self._conn.execute("ROLLBACK")
            raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Database"]:
        self.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def create_schema(self) -> None:
        serial = "BIGSERIAL PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY"
        with self.transaction():
            if self.postgres:  # two workers starting together must not race on CREATE TABLE
                self.execute("SELECT pg_advisory_xact_lock(4242)")
            self._migrate()
            for statement in SCHEMA.format(serial=serial).split(";"):
                if statement.strip():
                    self.execute(statement)
            from . import rollups  # the report rollups the writer keeps beside txns

            rollups.create_schema(self)

    def _migrate(self) -> None:
        """The first halld kept a thinner fleet table: it is derived state (rebuilt from the
        retained birth messages), so an old one is dropped rather than converted."""
        try:
            cols = self.columns("fleet")
        except self.errors:
            return
        if cols and "outbox_depth" not in cols:
            self.execute("DROP TABLE fleet")

    def columns(self, table: str) -> list[str]:
        if self.postgres:
            return [r[0] for r in self.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
                " AND table_schema = current_schema()", (table,))]
        return [r[1] for r in self.query(f"PRAGMA table_info({table})")]

    def close(self) -> None:
        self._conn.close()


def connect(url: str, schema: bool = True) -> Database:
    """``url``: a SQLite path (or ``sqlite://path``) or ``postgresql://user@host:port/db``."""
    db = Database(url)
    if schema:
        db.create_schema()
    return db

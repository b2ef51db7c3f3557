"""The journal: migrations, one writer, and durability across a kill -9."""
import asyncio
import os
import signal
import sqlite3
import sys
import textwrap

import pytest

from transactions import records
from transactions.journal import Journal, JournalClosed, migrate
from transactions.schema import MIGRATIONS


async def test_a_fresh_journal_is_migrated_to_the_latest_schema_in_wal_mode(tmp_path):
    async with Journal(tmp_path / "j.db", kiosk="K1") as j:
        assert j.schema_version == len(MIGRATIONS)
        mode = await j.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        tables = await j.read(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")})
    assert mode == "wal"
    assert {"transactions", "steps", "outbox", "counters", "device_events", "boots", "refunds", "money",
            "collections"} <= tables
    conn = sqlite3.connect(tmp_path / "j.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_an_old_journal_is_upgraded_step_by_step_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO boots(started_at, version) VALUES (1, 'old')")
    conn.close()
    async with Journal(path) as j:
        assert j.boot == 2  # the old boot row is kept, this is the second
        indexes = await j.read(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")})
    assert "outbox_pending" in indexes


def test_a_journal_newer_than_the_code_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)


async def test_each_open_is_a_new_boot_session(tmp_path):
    boots = []
    for _ in range(3):
        async with Journal(tmp_path / "j.db") as j:
            boots.append(j.boot)
    assert boots == [1, 2, 3]


async def test_a_failing_write_is_undone_alone_while_writes_batched_with_it_commit(tmp_path):
    def boom(conn):
        records.enqueue(conn, "event", {"n": "lost"}, 0)
        raise ValueError("boom")

    async with Journal(tmp_path / "j.db") as j:
        results = await asyncio.gather(
            *[j.write(records.enqueue, "event", {"n": i}, 0) for i in range(5)], j.write(boom),
            *[j.write(records.enqueue, "event", {"n": i}, 0) for i in range(5, 10)], return_exceptions=True)
        assert isinstance(results[5], ValueError)
        pending = await j.read(records.outbox_pending)
    assert [p["payload"]["n"] for p in pending] == list(range(10))


async def test_writes_after_close_are_refused(tmp_path):
    j = await Journal(tmp_path / "j.db").open()
    await j.close()
    with pytest.raises(JournalClosed):
        await j.write(records.enqueue, "event", {}, 0)


WRITER = textwrap.dedent("""
    import asyncio, sys
    from transactions import records
    from transactions.journal import Journal

    async def main(path):
        async with Journal(path, kiosk="K9") as j:
            n = 0
            while True:
                # several writers at once, as in kioskd: they share commits (group commit)
                batch = [j.write(records.record_device_event, "bv", "test", str(n + k), "", {}, 0.0)
                         for k in range(8)]
                await asyncio.gather(*batch)
                for k in range(8):
                    print(n + k, flush=True)  # printed only after the commit returned
                n += 8

    asyncio.run(main(sys.argv[1]))
""")


async def test_nothing_committed_is_lost_when_the_writer_is_killed_mid_way(tmp_path):
    path = str(tmp_path / "crash.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, path, stdout=asyncio.subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    acknowledged = []
    async with asyncio.timeout(30):
        while len(acknowledged) < 400:
            line = await proc.stdout.readline()
            assert line, "writer died early"
            acknowledged.append(line.decode().strip())
    proc.send_signal(signal.SIGKILL)  # mid-way: it is still writing
    await proc.wait()
    async with Journal(path) as j:
        codes = await j.read(lambda c: {r[0] for r in c.execute("SELECT code FROM device_events")})
        assert j.boot == 2
    assert set(acknowledged) <= codes

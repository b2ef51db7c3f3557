"""Faults between the kiosks and the hall: whatever breaks, every outbox row reaches the hall
database exactly once, in each kiosk's sequence order, and each kiosk counts it delivered.

Real processes throughout: mosquitto (restarted on the same port with its persistence dir),
``halld serve`` on SQLite, ``kioskd`` (no devices: the link is what is under test). The traffic
is a kiosk that was offline for a while: its journal outbox pre-filled, through the journal's
own API, with finished transactions and device events (docs/mqtt.md "Records and acks").
Faults strike when the hall holds part of the backlog; the check then waits (with a deadline)
for the kiosks' outboxes to drain and compares both ends row by row.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hal.emulators.control import call_sync
from hall.broker import Broker, free_port, start_broker
from hall.db import Database
from tests.support.kioskd import Kioskd, start_kioskd, write_config
from tests.support.tcpproxy import TcpProxy
from transactions import records
from transactions.journal import Journal

pytestmark = pytest.mark.timeout(120)

HALL = "H-FAULT"
ROWS = 1500  # per kiosk: enough that every fault lands mid-traffic (mid_traffic checks it)
DRAIN_S = 45.0  # deadline for the hall to hold everything after the last fault


# -- the traffic: a kiosk's journal with a backlog ---------------------------------------------

def _finished_topups(conn: sqlite3.Connection, kiosk: str, boot: int, start: int, n: int) -> None:
    """Cash top-ups, finished and balanced, as the flow leaves them; every 7th row a device event."""
    now = time.time()
    for i in range(start, start + n):
        if i % 7 == 6:
            records.record_device_event(conn, "printer", "paper", "near_end", f"row {i}", {"i": i}, now)
            continue
        fen = 1000 * (1 + i % 5)
        txn = records.new_txn(conn, kiosk, boot, "topup", "13800138000", "credited", now, {"i": i})
        records.add_money(conn, txn, [("cash_in", fen, "bill:bill"), ("applied", fen, "boss")], now)
        records.set_flow_state(conn, txn, "credited", now, amount_fen=fen)
        records.finish_txn(conn, txn, "done", now)


async def fill_backlog(journal: Path, kiosk: str, rows: int) -> None:
    async with Journal(journal, kiosk=kiosk) as j:
        for start in range(0, rows, 500):
            await j.write(_finished_topups, kiosk, j.boot, start, min(500, rows - start))


def outbox(journal: Path) -> list[tuple[int, str, dict, int]]:
    """The kiosk's side: (seq, topic, payload, delivered) for every outbox row ever queued."""
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT seq, topic, payload, delivered FROM outbox ORDER BY seq").fetchall()
    return [(s, t, json.loads(p), d) for s, t, p, d in rows]


# -- the hall ---------------------------------------------------------------------------------

class Hall:
    """mosquitto on a fixed port (so a restart keeps the address) and halld storing into SQLite
    (or PostgreSQL)."""

    def __init__(self, workdir: Path, url: str | None = None) -> None:
        self.workdir = workdir
        self.url = url or str(workdir / "hall.db")  # a SQLite path or a PostgreSQL URL
        self.port = free_port()
        self.broker: Broker | None = None
        self.workers: dict[str, subprocess.Popen] = {}  # halld processes by worker id

    def start_broker(self) -> None:
        self.broker = start_broker(self.workdir / "mosquitto", port=self.port)

    def kill_broker(self) -> None:
        assert self.broker is not None
        self.broker.proc.kill()
        self.broker.proc.wait(5)

    def start_halld(self, worker: str = "halld-1") -> None:
        log = open(self.workdir / f"{worker}.log", "a")
        self.workers[worker] = subprocess.Popen(
            [sys.executable, "-m", "hall.halld", "serve", "--db", self.url, "--mqtt-host", "127.0.0.1",
             "--mqtt-port", str(self.port), "--worker", worker, "--hall", HALL, "--http", "off"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def listening(self, worker: str) -> bool:
        """halld prints this once its subscriptions are in place."""
        return "halld: listening" in (self.workdir / f"{worker}.log").read_text()

    def log(self, worker: str) -> str:
        return (self.workdir / f"{worker}.log").read_text()[-3000:]

    def kill_halld(self, worker: str = "halld-1") -> None:
        proc = self.workers[worker]
        os.killpg(proc.pid, signal.SIGKILL)  # no goodbye, no last commit
        proc.wait(5)

    def _query(self, sql: str) -> list[tuple]:
        """Through halld's own database layer, so SQLite and PostgreSQL read alike."""
        if not self.url.startswith("postgresql") and not Path(self.url).exists():
            return []
        try:
            db = Database(self.url)
        except Exception:  # noqa: BLE001 - the engine's own error before halld made the schema
            return []
        try:
            return db.query(sql, (HALL,))
        except db.errors:  # halld has not created its schema yet
            return []
        finally:
            db.close()

    def rows(self) -> dict[str, list[tuple[int, str, dict]]]:
        """The hall's side: per kiosk, (msg_seq, kind, payload) in msg_seq order."""
        out: dict[str, list[tuple[int, str, dict]]] = {}
        for kiosk, seq, kind, payload in self._query(
                "SELECT kiosk, msg_seq, kind, payload FROM records WHERE hall = ? ORDER BY kiosk, msg_seq"):
            out.setdefault(kiosk, []).append((seq, kind, json.loads(payload)))
        return out

    def count(self) -> int:
        got = self._query("SELECT COUNT(*) FROM records WHERE hall = ?")
        return got[0][0] if got else 0

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.broker and self.broker.proc.poll() is None:
            self.broker.stop()

    def logs(self) -> str:
        return "".join(f"{w}: " + (self.workdir / f"{w}.log").read_text()[-1500:] for w in self.workers)


class Kiosk:
    """One kioskd with its own journal, talking to ``port`` (the broker, or a proxy in front)."""

    def __init__(self, workdir: Path, kiosk_id: str, port: int) -> None:
        self.id = kiosk_id
        self.dir = workdir / kiosk_id
        self.dir.mkdir(parents=True)
        self.config = write_config(self.dir, port)
        text = self.config.read_text().replace('id = "K-TEST-1"', f'id = "{kiosk_id}"')
        text = text.replace('hall = "H-TEST"', f'hall = "{HALL}"')
        # a 4G link that dies silently is noticed by the keepalive: keep it short here
        text = text.replace("telemetry_interval_s = 0.5", "telemetry_interval_s = 5\nkeepalive_s = 2")
        self.config.write_text(text)
        self.journal = self.dir / "state" / "journal.db"
        self.proc: Kioskd | None = None

    def start(self) -> None:
        self.proc = start_kioskd("--config", str(self.config), log_path=self.dir / "kioskd.log")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no clean shutdown, acks in flight are lost
        self.proc.wait(5)

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def hall_link(self) -> bool | None:
        """The kiosk's own view of its link (kioskd's local API), None while it does not answer."""
        try:
            return bool(call_sync(str(self.dir / "run" / "kioskd.sock"), "status")["hall_link"])
        except (OSError, ValueError):
            return None

    def undelivered(self) -> int:
        with sqlite3.connect(self.journal) as db:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE delivered = 0").fetchone()[0]


async def wait_until(what: str, check, timeout: float, explain=lambda: "") -> None:
    """Poll ``check`` until true; fail with ``explain()`` at the deadline."""
    start = time.monotonic()
    while not check():
        if time.monotonic() > start + timeout:
            pytest.fail(f"{what}: not within {timeout} s\n{explain()}")
        await asyncio.sleep(0.05)
    print(f"{what}: {time.monotonic() - start:.1f} s")  # shown with -s: where a slow run spends its time


# -- the check ---------------------------------------------------------------------------------

def assert_exactly_once_in_order(hall: Hall, kiosks: list[Kiosk], backlog: int) -> None:
    held = hall.rows()
    txn_ids: list[str] = []
    for k in kiosks:
        queued = outbox(k.journal)
        got = held.get(k.id, [])
        assert [d for *_, d in queued] == [1] * len(queued), f"{k.id}: the kiosk still holds undelivered rows"
        # both ends: the hall holds exactly the kiosk's outbox rows, at the same msg_seq, nothing else
        assert [s for s, *_ in got] == [s for s, *_ in queued] == list(range(1, len(queued) + 1)), \
            f"{k.id}: msg_seq in the hall differ from the kiosk's outbox (holes or extras)"
        for (seq, topic, payload, _), (msg_seq, kind, body) in zip(queued, got):
            assert kind == topic, f"{k.id} msg_seq {seq}: stored as {kind}, queued as {topic}"
            stored = {key: v for key, v in body.items() if key != "msg_seq"}
            assert stored == {"schema": 1, **payload}, f"{k.id} msg_seq {seq}: the hall holds a different record"
        txns = [body for _, kind, body in got if kind == "txn"]
        assert len(txns) >= backlog * 6 // 7, f"{k.id}: transactions missing"
        seqs = [t["seq"] for t in txns]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{k.id}: transactions out of order"
        txn_ids += [t["txn"] for t in txns]
    assert len(txn_ids) == len(set(txn_ids)), "a transaction is in the hall database twice"


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
async def hall(request, tmp_path):
    """SQLite unless a test asks for ``postgresql`` (parametrize ``hall`` indirectly)."""
    engine = getattr(request, "param", "sqlite")
    h = Hall(tmp_path / "hall", request.getfixturevalue("postgres").new_database() if engine == "postgresql" else None)
    h.workdir.mkdir()
    h.start_broker()
    h.start_halld()
    yield h
    h.stop()


@pytest.fixture
async def fleet(tmp_path, hall):
    """Two kiosks with a backlog each (not started: each test decides where they connect)."""
    kiosks: list[Kiosk] = []

    async def make(port: int | None = None, n: int = 2, rows: int = ROWS) -> list[Kiosk]:
        for i in range(n):
            k = Kiosk(tmp_path, f"K-F{i + 1}", port or hall.port)
            await fill_backlog(k.journal, k.id, rows)
            kiosks.append(k)
        return kiosks

    yield make
    for k in kiosks:
        await k.stop()


def explain(hall: Hall, kiosks: list[Kiosk]):
    def text() -> str:
        out = [f"hall rows: { {k: len(v) for k, v in hall.rows().items()} }"]
        for k in kiosks:
            out.append(f"{k.id} undelivered: {k.undelivered()}\n{(k.dir / 'kioskd.log').read_text()[-1500:]}")
        out.append(hall.logs())
        return "\n".join(out)
    return text


async def drained(hall: Hall, kiosks: list[Kiosk], backlog: int) -> None:
    await wait_until("every kiosk's outbox delivered", lambda: all(k.undelivered() == 0 for k in kiosks),
                     DRAIN_S, explain(hall, kiosks))
    assert_exactly_once_in_order(hall, kiosks, backlog)


def part_of(total: int, fraction: float):
    return lambda hall: fraction * total <= hall.count()


def mid_traffic(hall: Hall, total: int) -> None:
    """Right after a fault: it must have struck with rows still to come, or it tested nothing."""
    assert hall.count() < total, "the backlog drained before the fault: raise ROWS"


# -- the faults --------------------------------------------------------------------------------

async def test_broker_killed_and_restarted_mid_traffic_loses_and_doubles_nothing(hall, fleet):
    kiosks = await fleet()
    total = 2 * ROWS
    for k in kiosks:
        k.start()
    await wait_until("a fifth of the backlog in the hall", lambda: part_of(total, 0.2)(hall), 30,
                     explain(hall, kiosks))
    hall.kill_broker()  # SIGKILL: whatever mosquitto held in memory is gone
    mid_traffic(hall, total)
    hall.start_broker()  # same port, same persistence dir
    await wait_until("more than half in the hall", lambda: part_of(total, 0.55)(hall), 30, explain(hall, kiosks))
    hall.broker.stop()  # a clean restart later in the drain: mosquitto saves its sessions and queues
    mid_traffic(hall, total)
    hall.start_broker()
    await drained(hall, kiosks, ROWS)


async def test_halld_killed_mid_batch_commits_or_gets_it_again(hall, fleet):
    kiosks = await fleet()
    total = 2 * ROWS
    for k in kiosks:
        k.start()
    for fraction in (0.15, 0.5):
        await wait_until(f"{fraction:.0%} in the hall", lambda: part_of(total, fraction)(hall), 30,
                         explain(hall, kiosks))
        hall.kill_halld()  # while rows are streaming in: some committed and not acked
        mid_traffic(hall, total)
        hall.start_halld()
    await drained(hall, kiosks, ROWS)


@pytest.mark.parametrize("hall", ["sqlite", "postgresql"], indirect=True)
async def test_one_of_two_halld_workers_killed_the_other_takes_the_shared_subscription(hall, fleet):
    """Rows the broker had handed to the dead worker are holes for the survivor: it asks the
    kiosk to resend (resend_from) rather than acking past them."""
    hall.start_halld("halld-2")
    kiosks = await fleet(n=3)
    total = 3 * ROWS
    for k in kiosks:
        k.start()
    await wait_until("a quarter in the hall", lambda: part_of(total, 0.25)(hall), 30, explain(hall, kiosks))
    hall.kill_halld("halld-2")
    mid_traffic(hall, total)
    await drained(hall, kiosks, ROWS)


@contextlib.asynccontextmanager
async def publications(port: int):
    """Count every txn/event publication per kiosk, as a plain subscriber sees them (repeats too)."""
    import aiomqtt

    seen: dict[str, int] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="fault-watch", protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(f"kiosk/v1/{HALL}/+/txn", qos=1)
        await c.subscribe(f"kiosk/v1/{HALL}/+/event", qos=1)

        async def count() -> None:
            async for m in c.messages:
                kiosk = str(m.topic).split("/")[3]
                seen[kiosk] = seen.get(kiosk, 0) + 1

        task = asyncio.ensure_future(count())
        try:
            yield seen
        finally:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1)


async def test_two_healthy_workers_make_the_kiosks_publish_each_row_about_once(hall, fleet):
    hall.start_halld("halld-2")
    # a start on a busy 2-core machine (imports, the schema check under the first worker's writes)
    # has taken over 15 s once: wait for the line itself, and say what the worker printed if not
    await wait_until("the second worker subscribed", lambda: hall.listening("halld-2"), 60,
                     lambda: f"halld-2:\n{hall.log('halld-2')}\nhalld-1:\n{hall.log('halld-1')}")
    kiosks = await fleet()
    async with publications(hall.port) as seen:
        for k in kiosks:
            k.start()
        await drained(hall, kiosks, ROWS)
    rows = sum(len(outbox(k.journal)) for k in kiosks)
    # nothing was lost: every repeat is a spurious resend. Allow a few (a real race), not a second copy
    assert sum(seen.values()) <= 1.1 * rows, f"{sum(seen.values())} publications for {rows} rows"


async def test_a_hole_with_nothing_after_it_is_still_asked_for(hall, tmp_path):
    """Rows lost in flight at the end of a kiosk's window (a worker died holding them): the kiosk
    has no room to send more, so no later record can carry the request. The hall must ask for the
    hole anyway, before the kiosk's own stall timer (controller/outbox.py ACK_STALL_S, 10 s)."""
    import aiomqtt

    journal = tmp_path / "K-HOLE.db"
    await fill_backlog(journal, "K-HOLE", 8)
    rows = outbox(journal)
    acks: list[dict] = []
    async with aiomqtt.Client("127.0.0.1", hall.port, identifier="K-HOLE", protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(f"kiosk/v1/{HALL}/K-HOLE/ack", qos=1)

        async def read() -> None:
            async for m in c.messages:
                acks.append(json.loads(m.payload))

        reader = asyncio.ensure_future(read())
        try:
            async def send(seq: int) -> None:
                _, topic, payload, _ = rows[seq - 1]
                await c.publish(f"kiosk/v1/{HALL}/K-HOLE/{topic}",
                                json.dumps({"schema": 1, **payload, "msg_seq": seq}), qos=1)

            await wait_until("halld subscribed", lambda: hall.listening("halld-1"), 60, lambda: hall.log("halld-1"))
            for seq in (1, 2, 3, 5, 6, 7, 8):  # 4 was lost, and the window is full
                await send(seq)
            await wait_until("the hall asking for msg_seq 4", lambda: any(a.get("resend_from") == 4 for a in acks), 5)
            await send(4)
            await wait_until("the ack covering all eight", lambda: any(a["msg_seq"] == 8 for a in acks), 10)
        finally:
            while not reader.done():
                reader.cancel()
                await asyncio.wait({reader}, timeout=1)
    assert [seq for seq, *_ in hall.rows()["K-HOLE"]] == list(range(1, 9))


async def test_kiosk_killed_while_draining_sends_again_and_the_hall_keeps_one_copy(hall, fleet):
    kiosks = await fleet()
    total = 2 * ROWS
    for k in kiosks:
        k.start()
    await wait_until("a fifth in the hall", lambda: part_of(total, 0.2)(hall), 30, explain(hall, kiosks))
    for k in kiosks:
        k.kill()  # acks received but not yet journalled die with it: those rows go again
    mid_traffic(hall, total)
    for k in kiosks:
        k.start()
    await wait_until("more than half in the hall", lambda: part_of(total, 0.55)(hall), 30, explain(hall, kiosks))
    kiosks[0].kill()
    mid_traffic(hall, total)
    kiosks[0].start()
    await drained(hall, kiosks, ROWS)


async def test_network_reset_and_blackhole_between_kiosks_and_hall(hall, fleet):
    async with TcpProxy(hall.port) as proxy:
        kiosks = await fleet(port=proxy.port)
        total = 2 * ROWS
        for k in kiosks:
            k.start()
        await wait_until("a fifth in the hall", lambda: part_of(total, 0.2)(hall), 30, explain(hall, kiosks))
        # the route resets every connection and the hall's address refuses for a while
        assert proxy.cut(refuse=True) >= len(kiosks)
        mid_traffic(hall, total)
        await wait_until("the kiosks seeing their link down", lambda: not any(k.hall_link() for k in kiosks), 10)
        await proxy.restore()
        await wait_until("half in the hall", lambda: part_of(total, 0.5)(hall), 30, explain(hall, kiosks))
        # a route that swallows bytes without a word: only the kiosk's keepalive (2 s here) can tell
        proxy.blackhole()
        mid_traffic(hall, total)
        await wait_until("the kiosks giving up on their silent connections (they hang up, nobody resets them)",
                         lambda: proxy.hangups >= len(kiosks) and not any(k.hall_link() for k in kiosks), 20,
                         explain(hall, kiosks))
        await proxy.restore()
        await drained(hall, kiosks, ROWS)
        assert proxy.dropped_bytes > 0  # the blackhole did swallow traffic


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(5):
            return await reader.read(1024) == b""
    except ConnectionResetError:
        return True


async def test_proxy_blackhole_drops_bytes_and_restore_resets_the_broken_stream():
    """The instrument itself: an echo server behind the proxy."""
    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        async with TcpProxy(server.sockets[0].getsockname()[1]) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            proxy.blackhole()
            writer.write(b"lost")
            await wait_until("the proxy swallowing the bytes", lambda: proxy.dropped_bytes >= 4, 5)
            await proxy.restore()
            assert await closed(reader)  # reset: the stream lost bytes
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"again")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"again"
            assert proxy.cut(refuse=True) == 1
            assert await closed(reader)  # cut: reset
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", proxy.port)
            await proxy.restore()
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)  # the same port again
            writer.write(b"back")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"
            writer.close()
            await wait_until("the proxy seeing the client hang up", lambda: proxy.hangups == 1, 5)
    finally:
        server.close()

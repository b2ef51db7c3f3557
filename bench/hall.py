"""Hall throughput: kiosk records through mosquitto into halld, against baselines from the same run.

    python bench/hall.py [--kiosks 20] [--rows 500] [--window 64] [--backlog 10000]
                         [--serial-rows 2000] [--pg-url postgresql://...] [--only a,b,c] [--rounds 3]

(a) ingest: ``--kiosks`` simulated kiosks (aiomqtt clients, each with ``--window`` records in
    flight and honouring acks and ``resend_from`` as kioskd does, docs/mqtt.md) publish
    ``--rows`` finished-transaction records each into halld on SQLite (WAL, synchronous=FULL).
    Durable rows/s = rows / (first publish -> the last kiosk's ack covering its last row); halld
    acks only after the commit. Baseline: raw mosquitto QoS 1, ``mosquitto_pub -l`` (one per
    kiosk) -> one ``mosquitto_sub``, the same count and the same payloads, on the same broker.
(b) a ``--backlog``-row kiosk journal (a kiosk offline for a day; real rows through the
    transactions API) drained by the real kioskd (its window in flight) vs one record at a time
    (publish, wait for halld's ack, journal it, next; ``--serial-rows`` of the same backlog).
(c) 1 vs 2 halld workers on PostgreSQL with the shared subscription, the ingest of (a). With (a)
    in the run: PostgreSQL 1 worker against SQLite, the two alternated ``--rounds`` times (the first
    round is (a) and (c)'s 1 worker) on the same broker, a fresh database each, each round's ratio
    and their median (this machine's load comes and goes within seconds).
    The cluster comes from tests/support/postgres.py, durable as SQLite is in (a) (fsync,
    synchronous_commit and full_page_writes on: a COMMIT returns once its WAL is on disk), or
    ``--pg-url``; skipped with a message when neither is there.

Everything is real processes on loopback: mosquitto, halld, kioskd. Prints numbers and ratios;
never fails on them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hall.broker import BROKER_TUNING, Broker, start_broker  # noqa: E402
from hall.pahoio import lean, share_property_tables  # noqa: E402
from transactions import books, records  # noqa: E402
from transactions.journal import Journal  # noqa: E402

HALL = "H-BENCH"
STALL_S = 3.0
QUIET = logging.getLogger("bench.mqtt")  # aiomqtt warns per publish beyond 10 in flight: ours are on purpose
QUIET.setLevel(logging.ERROR)




# -- records ----------------------------------------------------------------------------------

def _topups(conn, kiosk: str, boot: int, start: int, n: int) -> None:
    now = time.time()
    for i in range(start, start + n):
        fen = 1000 * (1 + i % 5)
        txn = records.new_txn(conn, kiosk, boot, "topup", "13800138000", "credited", now, {"bill": fen})
        records.add_money(conn, txn, [("cash_in", fen, "bill:bill"), ("applied", fen, "boss")], now)
        records.set_flow_state(conn, txn, "credited", now, amount_fen=fen)
        records.finish_txn(conn, txn, "done", now)


async def fill_journal(path: Path, kiosk: str, rows: int) -> None:
    """A kiosk's journal with ``rows`` finished top-ups waiting in its outbox."""
    async with Journal(path, kiosk=kiosk) as j:
        for start in range(0, rows, 1000):
            await j.write(_topups, kiosk, j.boot, start, min(1000, rows - start))


async def template(tmp: Path) -> dict:
    """One real outbox payload (a finished top-up, as transactions/records.py queues it)."""
    await fill_journal(tmp / "template.db", "K-T", 1)
    async with Journal(tmp / "template.db", kiosk="K-T") as j:
        return (await books.outbox(j, limit=1))[0]["payload"]


def wire(tpl: dict, kiosk: str, n: int) -> list[bytes]:
    """What kioskd publishes for rows 1..n (controller/link.py encode: schema + row + msg_seq)."""
    return [json.dumps({"schema": 1, **tpl, "txn": f"{kiosk}-2-{i}", "seq": i, "msg_seq": i},
                       ensure_ascii=False, separators=(",", ":")).encode() for i in range(1, n + 1)]


# -- processes --------------------------------------------------------------------------------

class Halld:
    def __init__(self, tmp: Path, db: str, broker: Broker, worker: str = "halld") -> None:
        self.log = tmp / f"{worker}.log"
        self.api: str | None = None
        self.token = self._viewer_token(db, worker)
        cmd = [sys.executable, "-m", "hall.halld", "serve", "--db", db, "--mqtt-port", str(broker.port),
               "--worker", worker, "--hall", HALL, "--http", "127.0.0.1:0"]  # the API: for /api/stats
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while "halld: listening" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"halld did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)  # polling its log for the ready line; bounded by the deadline
        found = re.search(r"API on (http://\S+)", self.log.read_text())
        self.api = found.group(1) if found else None

    @staticmethod
    def _viewer_token(db: str, worker: str) -> str:
        """The API asks who is calling (hall/auth.py): a viewer account and its token."""
        user = [sys.executable, "-m", "hall.halld", "user"]
        subprocess.run([*user, "add", f"bench-{worker}", "--role", "viewer", "--password-stdin", "--db", db],
                       input="bench-password\n", text=True, capture_output=True, cwd=ROOT)  # exists: fine
        return subprocess.run([*user, "token", f"bench-{worker}", "--db", db], text=True, capture_output=True,
                              check=True, cwd=ROOT).stdout.strip()

    def stats(self) -> dict:
        """halld's own counters (batches, acks, records ...), or {} without its API."""
        if self.api is None:
            return {}
        import urllib.request

        request = urllib.request.Request(f"{self.api}/api/stats", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), to show who the bottleneck is."""
    return _ticks(Path(f"/proc/{pid}/stat"))


def loop_cpu_s(pid: int) -> float:
    """The same for the process's main thread alone (for halld: the event loop, which reads MQTT)."""
    return _ticks(Path(f"/proc/{pid}/task/{pid}/stat"))


def _ticks(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu_s(pidfile: Path | None) -> float:
    """CPU seconds of a PostgreSQL cluster's processes (the postmaster's children: backends,
    writer, WAL writer ...), 0 for a server of --pg-url."""
    if pidfile is None:
        return 0.0
    master = pidfile.read_text().split()[0]
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] == master or stat.parent.name == master:
                total += _ticks(stat)
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
    return total


def mosquitto(name: str) -> str:
    exe = shutil.which(name)
    if not exe:
        raise SystemExit(f"{name} not found (apt-get install mosquitto-clients)")
    return exe


# -- simulated kiosks -------------------------------------------------------------------------

async def sim_kiosk(port: int, kiosk: str, rows: list[bytes], window: int) -> dict:
    """A kiosk link in miniature: ``window`` records in flight, delivered on ack, rewinds on
    ``resend_from`` and on a stall. Returns its first-publish and last-ack times.

    Lean on purpose, since it shares the cores with halld: Nagle off as kioskd has it, records
    handed to paho without awaiting each PUBACK (paho keeps them in flight and queues the rest;
    the window is counted in acks, as kioskd does), and halld's batched socket I/O
    (hall/pahoio.py). With aiomqtt's awaited publish it cost ~100 µs a row."""
    import aiomqtt

    share_property_tables()
    n = len(rows)
    acked = sent = 0
    progress = asyncio.Event()
    out = {"first": 0.0, "done": 0.0, "rewinds": 0}
    async with aiomqtt.Client("127.0.0.1", port, identifier=kiosk, protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=window, timeout=30, logger=QUIET) as client:
        paho = client._client
        paho.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lean(paho)
        topic = f"kiosk/v1/{HALL}/{kiosk}/txn"
        await client.subscribe(f"kiosk/v1/{HALL}/{kiosk}/ack", qos=1)

        async def acks() -> None:
            nonlocal acked, sent
            async for m in client.messages:
                body = json.loads(m.payload)
                if body["msg_seq"] > acked:
                    acked = body["msg_seq"]
                    sent = max(sent, acked)
                resend = body.get("resend_from")
                if resend is not None and acked < resend <= sent:
                    sent = resend - 1
                    out["rewinds"] += 1
                progress.set()
                if acked >= n:
                    out["done"] = time.perf_counter()
                    return

        reader = asyncio.ensure_future(acks())
        out["first"] = time.perf_counter()
        while not reader.done():
            room = window - (sent - acked)
            if room > 0 and sent < n:
                for i in range(sent, min(n, sent + room)):
                    paho.publish(topic, rows[i], qos=1)
                sent = min(n, sent + room)
            progress.clear()
            try:
                await asyncio.wait_for(progress.wait(), STALL_S)
            except TimeoutError:
                if not reader.done():
                    sent = acked  # no ack progress: send again from the high water
                    out["rewinds"] += 1
        await reader
    return out


async def ingest(broker: Broker, kiosks: int, rows: int, window: int, tpl: dict, tag: str) -> tuple[float, int]:
    loads = {f"K-{tag}-{k:03d}": wire(tpl, f"K-{tag}-{k:03d}", rows) for k in range(kiosks)}
    results = await asyncio.gather(*[sim_kiosk(broker.port, k, r, window) for k, r in loads.items()])
    first = min(r["first"] for r in results)
    last = max(r["done"] for r in results)
    return kiosks * rows / (last - first), sum(r["rewinds"] for r in results)


def raw_mosquitto(tmp: Path, kiosks: int, rows: int, tpl: dict, conf: str) -> float:
    """QoS 1 mosquitto_pub -l (one per kiosk) -> one mosquitto_sub: the broker's own pace.

    On a broker of its own that may queue everything for the subscriber: mosquitto_pub has no
    window, and with the default max_queued_messages (1000) the broker drops the excess."""
    broker = start_broker(tmp / "mosquitto-raw", extra_conf=conf + "max_queued_messages 10000000\n")
    try:
        return _raw(broker, tmp, kiosks, rows, tpl)
    finally:
        broker.stop()


def _raw(broker: Broker, tmp: Path, kiosks: int, rows: int, tpl: dict) -> float:
    total = kiosks * rows
    files = []
    for k in range(kiosks):
        path = tmp / f"raw-{k}.txt"
        path.write_bytes(b"\n".join(wire(tpl, f"K-RAW-{k:03d}", rows)) + b"\n")
        files.append(path)
    # stdbuf: mosquitto_sub's stdout is block-buffered into a pipe; the SUBACK line must come at once
    sub = subprocess.Popen(["stdbuf", "-oL", mosquitto("mosquitto_sub"), "-p", str(broker.port), "-q", "1", "-d", "-C", str(total),
                            "-t", "raw/#", "-F", "%l", "-W", "120"], stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    for line in sub.stdout:  # -d: wait until the broker has confirmed the subscription
        if "SUBACK" in line:
            break
    start = time.perf_counter()
    pubs = [subprocess.Popen([mosquitto("mosquitto_pub"), "-p", str(broker.port), "-q", "1", "-l",
                              "-t", f"raw/{k}"], stdin=open(f, "rb")) for k, f in enumerate(files)]
    got = sum(1 for line in sub.stdout if line.strip().isdigit())
    sub.wait()
    elapsed = time.perf_counter() - start
    for p in pubs:
        p.wait()
    if got != total:
        print(f"  (mosquitto_sub got {got} of {total})")
    return got / elapsed


def hall_rows(db: str) -> int:
    if db.startswith("postgres"):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]


# -- (b) backlog drain ------------------------------------------------------------------------

async def wait_ack(port: int, kiosk: str, upto: int, ready: asyncio.Event) -> float:
    """Watch a kiosk's ack topic; the time the ack covering ``upto`` arrived."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier=f"watch-{kiosk}", protocol=aiomqtt.ProtocolVersion.V5,
                              logger=QUIET) as c:
        await c.subscribe(f"kiosk/v1/{HALL}/{kiosk}/ack", qos=1)
        ready.set()
        async for m in c.messages:
            if json.loads(m.payload)["msg_seq"] >= upto:
                return time.time()
    raise RuntimeError("watcher ended")


async def kioskd_drain(broker: Broker, tmp: Path, journal: Path, rows: int) -> float:
    from tests.support.kioskd import start_kioskd, write_config

    kdir = tmp / "kioskd"
    (kdir / "state").mkdir(parents=True)
    shutil.copy(journal, kdir / "state" / "journal.db")
    config = write_config(kdir, broker.port)
    config.write_text(config.read_text().replace('id = "K-TEST-1"', 'id = "K-DRAIN"')
                      .replace('hall = "H-TEST"', f'hall = "{HALL}"')
                      .replace("telemetry_interval_s = 0.5", "telemetry_interval_s = 60"))
    ready = asyncio.Event()
    watcher = asyncio.ensure_future(wait_ack(broker.port, "K-DRAIN", rows, ready))
    await ready.wait()
    proc = start_kioskd("--config", str(config), log_path=kdir / "kioskd.log")
    try:
        done = await asyncio.wait_for(watcher, 600)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
    # from the link's "connected" (kioskd's own log) to the last ack: start-up is not the drain
    connected = [json.loads(line)["ts"] for line in proc.log().splitlines() if "connected to hall broker" in line]
    return rows / (done - connected[0])


async def one_at_a_time(broker: Broker, tmp: Path, journal: Path, rows: int) -> float:
    """The same journal code, a window of one: publish, wait for halld's ack, journal it, next."""
    import aiomqtt

    path = tmp / "serial" / "journal.db"
    path.parent.mkdir()
    shutil.copy(journal, path)
    kiosk = "K-SERIAL"
    async with Journal(path, kiosk=kiosk) as j, aiomqtt.Client(
            "127.0.0.1", broker.port, identifier=kiosk, protocol=aiomqtt.ProtocolVersion.V5, logger=QUIET) as client:
        client._client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as kioskd's link
        await client.subscribe(f"kiosk/v1/{HALL}/{kiosk}/ack", qos=1)
        acks = client.messages.__aiter__()
        start = time.time()
        acked = 0
        while acked < rows:
            row = (await books.outbox(j, after_seq=acked, limit=1))[0]
            body = {"schema": 1, **row["payload"], "msg_seq": row["seq"]}
            await client.publish(f"kiosk/v1/{HALL}/{kiosk}/{row['topic']}", json.dumps(body, ensure_ascii=False), qos=1)
            while acked < row["seq"]:
                acked = max(acked, json.loads((await asyncio.wait_for(acks.__anext__(), 30)).payload)["msg_seq"])
            await books.ack(j, acked)
        return rows / (time.time() - start)


# -- main -------------------------------------------------------------------------------------

def postgres(url: str | None):
    """(url, stop) or (None, reason)."""
    if url:
        return url, None
    try:
        from tests.support.postgres import start_postgres
    except ImportError:
        return None, "no tests/support/postgres.py and no --pg-url"
    try:
        pg = start_postgres(durable=True)
    except RuntimeError as exc:
        return None, str(exc)
    return pg, pg.stop


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-hall-"))
    conf = args.broker_conf.replace(";", "\n") + "\n"
    print(f"mosquitto with hall/broker.py's BROKER_TUNING ({'; '.join(BROKER_TUNING)})"
          f"{' + ' + repr(args.broker_conf) if args.broker_conf else ''}; TCP_NODELAY on every MQTT client")
    broker = start_broker(tmp / "mosquitto", extra_conf=conf)
    tpl = await template(tmp)
    size = len(wire(tpl, "K-000", 1)[0])
    sqlite_rate = None
    try:
        if "a" in args.only:
            n = args.kiosks * args.rows
            print(f"(a) ingest: {args.kiosks} kiosks x {args.rows} txn records ({size} bytes), window {args.window},"
                  " halld on SQLite (WAL, synchronous=FULL)")
            raw = raw_mosquitto(tmp, args.kiosks, args.rows, tpl, conf)
            halld = Halld(tmp, str(tmp / "hall.db"), broker)
            try:
                pid = halld.proc.pid
                cpu = (cpu_s(pid), loop_cpu_s(pid), cpu_s(broker.proc.pid), time.process_time(), time.perf_counter())
                durable, rewinds = await ingest(broker, args.kiosks, args.rows, args.window, tpl, "A")
                sqlite_rate = durable
                cpu = (cpu_s(pid) - cpu[0], loop_cpu_s(pid) - cpu[1], cpu_s(broker.proc.pid) - cpu[2],
                       time.process_time() - cpu[3], time.perf_counter() - cpu[4])
                stats = halld.stats()
            finally:
                halld.stop()
            stored = hall_rows(str(tmp / "hall.db"))
            print(f"  raw mosquitto QoS 1 pub -> sub : {raw:9.0f} msg/s")
            print(f"  durable into halld (acked)     : {durable:9.0f} rows/s   ({stored} of {n} rows in the hall DB,"
                  f" {rewinds} rewinds)")
            print(f"  ratio durable / raw            : {durable / raw:9.2f}   (goal >= 0.50)")
            if rewinds:
                print("  (rewinds: rows lost on the way and asked again, e.g. mosquitto dropping records queued for"
                      " halld beyond its max_queued_messages)")
            print(f"  CPU during the ingest          : halld {cpu[0]:.1f} s, mosquitto {cpu[2]:.1f} s, simulated"
                  f" kiosks {cpu[3]:.1f} s in {cpu[4]:.1f} s wall on {os.cpu_count()} cores")
            print(f"  per row                        : halld {cpu[0] / n * 1e6:.0f} us (event loop {cpu[1] / n * 1e6:.0f},"
                  f" writer {(cpu[0] - cpu[1]) / n * 1e6:.0f}), simulated kiosks {cpu[3] / n * 1e6:.0f} us,"
                  f" mosquitto {cpu[2] / n * 1e6:.0f} us")
            if stats:
                print(f"  halld batches                  : {stats.get('batches', 0)} commits,"
                      f" {n / max(1, stats.get('batches', 0)):.0f} rows and {stats.get('acks', 0) / max(1, stats.get('batches', 0)):.1f}"
                      f" acks per commit")
        if "b" in args.only:
            print(f"(b) a {args.backlog}-row kiosk backlog drained into halld on SQLite")
            journal = tmp / "backlog.db"
            await fill_journal(journal, "K-DRAIN", args.backlog)
            halld = Halld(tmp, str(tmp / "hall-b.db"), broker, worker="halld-b")
            try:
                windowed = await kioskd_drain(broker, tmp, journal, args.backlog)
                serial_rows = min(args.serial_rows, args.backlog)
                serial = await one_at_a_time(broker, tmp, journal, serial_rows)
            finally:
                halld.stop()
            print(f"  kioskd, window in flight       : {windowed:9.0f} rows/s   ({args.backlog / windowed:.1f} s"
                  f" for {args.backlog} rows)")
            print(f"  one at a time (ack, then next) : {serial:9.0f} rows/s   (first {serial_rows} rows;"
                  f" {args.backlog / serial:.1f} s for all at that pace)")
            print(f"  ratio window / one at a time   : {windowed / serial:9.1f}")
        if "c" in args.only:
            await bench_postgres(args, tmp, broker, tpl, sqlite_rate)
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def one_round(tmp: Path, db: str, broker: Broker, args: argparse.Namespace, tpl: dict, tag: str) -> float:
    """The ingest of (a) into a fresh halld on ``db``: its durable rows/s."""
    halld = Halld(tmp, db, broker, worker=f"halld-{tag.lower()}")
    try:
        return (await ingest(broker, args.kiosks, args.rows, args.window, tpl, tag))[0]
    finally:
        halld.stop()


async def bench_postgres(args: argparse.Namespace, tmp: Path, broker: Broker, tpl: dict,
                         sqlite_rate: float | None) -> None:
    """(c); with (a)'s rate, PostgreSQL 1 worker against SQLite in ``--rounds`` rounds."""
    pg, stop = postgres(args.pg_url)
    if pg is None:
        print(f"(c) skipped: PostgreSQL not available ({stop}); pass --pg-url postgresql://... to run it")
        return None
    print(f"(c) 1 vs 2 halld workers on PostgreSQL, shared subscription: {args.kiosks} kiosks x {args.rows} records")
    rates = {}
    try:
        for workers in (1, 2):
            # a fresh schema per run (on a given server: one of our own)
            url = _fresh_schema(pg, f"bench_hall_{os.getpid()}_{workers}") if isinstance(pg, str) else pg.new_database()
            hallds = [Halld(tmp, url, broker, worker=f"halld-pg{workers}-{w}") for w in range(workers)]
            server = None if isinstance(pg, str) else pg.dir / "data" / "postmaster.pid"
            try:
                cpu = (sum(cpu_s(h.proc.pid) for h in hallds), cluster_cpu_s(server))
                rates[workers], rewinds = await ingest(broker, args.kiosks, args.rows, args.window, tpl, f"P{workers}")
                cpu = (sum(cpu_s(h.proc.pid) for h in hallds) - cpu[0], cluster_cpu_s(server) - cpu[1])
                commits = sum(h.stats().get("batches", 0) for h in hallds)
            finally:
                for h in hallds:
                    h.stop()
            n = args.kiosks * args.rows
            print(f"  {workers} worker{'s' if workers > 1 else ' '}  : {rates[workers]:9.0f} rows/s"
                  f"   ({hall_rows(url)} rows stored, {rewinds} rewinds; CPU per row: halld {cpu[0] / n * 1e6:.0f} us,"
                  f" PostgreSQL {cpu[1] / n * 1e6:.0f} us; {commits} commits, {n / max(1, commits):.0f} rows per commit)")
        print(f"  ratio 2 / 1 : {rates[2] / rates[1]:9.2f}   (2 cores run mosquitto, halld workers and the"
              " simulated kiosks together)")
        if sqlite_rate:
            pairs = [(sqlite_rate, rates[1])]
            for r in range(2, args.rounds + 1):  # (a) and (c) 1 worker again, back to back
                lite = await one_round(tmp, str(tmp / f"hall-r{r}.db"), broker, args, tpl, f"A{r}")
                url = _fresh_schema(pg, f"bench_hall_{os.getpid()}_r{r}") if isinstance(pg, str) else pg.new_database()
                pairs.append((lite, await one_round(tmp, url, broker, args, tpl, f"P1R{r}")))
            for r, (lite, one) in enumerate(pairs, 1):
                print(f"PostgreSQL 1 worker / SQLite, round {r}: {one / lite:5.2f}   ({one:.0f} / {lite:.0f} rows/s)")
            ratios = sorted(one / lite for lite, one in pairs)
            print(f"PostgreSQL 1 worker / SQLite (a) : {ratios[len(ratios) // 2]:9.2f}   (median of {len(pairs)}"
                  " rounds; goal >= 0.80)")
    finally:
        if stop:
            stop()


def _fresh_schema(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1000, help="records per simulated kiosk (a, c)")
    parser.add_argument("--window", type=int, default=64, help="records in flight per simulated kiosk")
    parser.add_argument("--backlog", type=int, default=10000, help="rows in the kiosk journal (b)")
    parser.add_argument("--serial-rows", type=int, default=300, help="rows drained one at a time (b)")
    parser.add_argument("--pg-url", help="a PostgreSQL server to use for (c) instead of a private cluster")
    parser.add_argument("--only", default="abc", help="which parts: any of a, b, c")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with a and c: SQLite and PostgreSQL 1 worker alternated this many times (the first"
                             " round is (a) and (c)'s 1 worker), each round's ratio and the median")
    parser.add_argument("--broker-conf", default="", help="extra mosquitto.conf lines, ';'-separated")
    asyncio.run(main(parser.parse_args()))

"""A throw-away PostgreSQL cluster for tests: initdb + postgres on a free loopback port in a temp dir.

Why this way: the Debian package's own cluster needs systemd (not PID 1 here) and is shared
state; a private cluster starts in about a second and vanishes with the test session. PostgreSQL
refuses to run as root, so as root the binaries run as the `postgres` user the package created
(`runuser -u postgres --`) in a directory it owns. fsync and synchronous commit are off: this
cluster's durability is irrelevant and the tests stay fast. A benchmark that compares with SQLite
at synchronous=FULL asks for `durable=True`: PostgreSQL's defaults, a COMMIT returns after its WAL
is flushed to disk.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hall.broker import free_port


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; ./dev test does it)")
    return found[-1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Postgres:
    dir: Path
    port: int
    proc: subprocess.Popen
    _n: int = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """A fresh empty schema as the search path (one per test keeps tests independent; a
        schema takes milliseconds where CREATE DATABASE takes half a second); returns its URL."""
        import psycopg

        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.url}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        try:  # SIGINT = "fast" shutdown (no waiting for clients), sent to postgres itself: runuser
            # forwards SIGTERM ("smart", waits for every client) but not SIGINT
            os.kill(int((self.dir / "data" / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
        except (OSError, ValueError, IndexError):
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres(durable: bool = False) -> Postgres:
    base = Path(tempfile.mkdtemp(prefix="halld-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run(_as_owner([pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                              "--no-sync", "-E", "UTF8", "--locale=C"]),
                   check=True, capture_output=True, cwd=base)
    port = free_port()
    log = open(base / "postgres.log", "ab")
    proc = subprocess.Popen(
        _as_owner([pg_bin("postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(base),
                   *([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                         "-c", "full_page_writes=off"]),
                   "-c", "max_connections=50"]),
        stdout=log, stderr=log, cwd=base)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited: {(base / 'postgres.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            time.sleep(0.02)  # polling a port that is not open yet; bounded by the deadline
            continue
        pg = Postgres(base, port, proc)
        try:
            import psycopg

            psycopg.connect(pg.url, connect_timeout=2).close()  # port open before it accepts logins
            return pg
        except Exception:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError("postgres did not accept connections within 20 s")

"""A power cut loses nothing the journal said was committed: the fsync discipline, on a lossy disk.

A SIGKILL cannot test fsync (the page cache outlives the process). Here the journal runs on
``tests/support/lossyfs.py``, a FUSE filesystem that keeps every write in memory until fsync and
drops the rest when the test cuts the power. A writer process journals top-ups through the real
``Journal`` and the real record functions, printing each id only after its write returned. At a
random instant the test cuts the power and SIGKILLs the writer, mounts the surviving disk again,
reopens the journal, and checks that everything printed is there and the books still balance.

The negative controls prove the disk really loses data: the same writer with
``synchronous=OFF`` loses committed rows, and write-tmp-then-rename without fsync loses the file.

This module is also the writer: ``python -m tests.transactions.test_power_loss writer DB MODE SEED``.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.lossyfs import LossyMount, fuse_unavailable
from transactions import records
from transactions.journal import Journal, migrate

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 5  # power cuts in a row on the same disk, each at a different instant
DB = "state/journal.db"  # Journal.open creates state/ itself, as kioskd does on a fresh card


# -- the writer (runs in its own process on the lossy mount) ---------------------------------------

class _BareJournal:
    """The negative control's journal: one sqlite3 connection, WAL, ``synchronous=OFF``.

    The same record functions in the same ``BEGIN IMMEDIATE ... COMMIT`` as ``Journal``; the one
    difference is the pragma (``Journal`` has no knob for it, on purpose).
    """

    def __init__(self, path: str, kiosk: str) -> None:
        self.kiosk = kiosk
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        migrate(self.conn)
        self.boot = self._commit(lambda c: c.execute("INSERT INTO boots(started_at) VALUES (?)",
                                                     (time.time(),)).lastrowid)

    def _commit(self, fn, *args):
        self.conn.execute("BEGIN IMMEDIATE")
        value = fn(self.conn, *args)
        self.conn.execute("COMMIT")
        return value

    async def write(self, fn, *args):
        return self._commit(fn, *args)


def _emit(*words: object) -> None:
    print(*words, flush=True)  # printed only after the write returned: a promise the row is durable


async def _topup(j, rng: random.Random) -> None:
    """A top-up as the flows journal it: intent before each effect, outcome with its money after.

    Every third one the BOSS refuses and the customer gets a refund voucher instead.
    """
    now = time.time
    fen = rng.choice([1000, 2000, 5000, 10000])
    txn = await j.write(records.new_txn, j.kiosk, j.boot, "topup", None, "choose", now(), {"phone": "13800000000"})
    _emit("txn", txn)
    step = await j.write(records.open_intent, txn, "stack", {"fen": fen}, now(), "stacking")
    _emit("intent", txn, step)
    await j.write(lambda c: records.close_intent(c, step, {"stacked": True}, now(), money=[("cash_in", fen, "bill:bv")],
                                                 counts=[("cashbox", f"bill:{fen}", 1)]))
    _emit("outcome", txn, step)
    step = await j.write(records.open_intent, txn, "credit", {"fen": fen}, now(), "crediting")
    _emit("intent", txn, step)
    if rng.random() < 1 / 3:
        await j.write(lambda c: records.close_intent(c, step, {"refused": "B42"}, now()))
        _emit("outcome", txn, step)
        code = await j.write(records.issue_voucher, txn, fen, "BOSS refused", now())
        _emit("voucher", txn, code)
        seq = await j.write(records.finish_txn, txn, "refunded", now())
    else:
        await j.write(lambda c: records.close_intent(c, step, {"credited": fen}, now(), money=[("applied", fen, "boss")]))
        _emit("outcome", txn, step)
        seq = await j.write(records.finish_txn, txn, "done", now())
    _emit("done", txn, seq)


async def _writer(db: str, mode: str, seed: int) -> None:
    rng = random.Random(seed)
    if mode == "journal":
        j = await Journal(db, kiosk="K-PL").open()
    else:
        j = _BareJournal(db, kiosk="K-PL")
    _emit("boot", j.boot)

    async def customer() -> None:
        while True:
            await _topup(j, rng)

    await asyncio.gather(*(customer() for _ in range(4)))  # concurrent writes share commits


# -- the test side ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _fuse():
    reason = fuse_unavailable()
    if reason:  # the set-up installs fuse3/libfuse2/fusepy; without them this test cannot prove anything
        pytest.fail(f"FUSE cannot run here: {reason}")


class Committed:
    """What the writer promised: parsed from its output."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.boot = next((int(w[1]) for w in map(str.split, lines) if w[0] == "boot"), None)
        self.txns = {w[1] for w in map(str.split, lines) if w[0] == "txn"}
        self.intents = {(w[1], int(w[2])) for w in map(str.split, lines) if w[0] == "intent"}
        self.outcomes = {(w[1], int(w[2])) for w in map(str.split, lines) if w[0] == "outcome"}
        self.vouchers = {(w[1], w[2]) for w in map(str.split, lines) if w[0] == "voucher"}
        self.done = {w[1]: int(w[2]) for w in map(str.split, lines) if w[0] == "done"}

    def __len__(self) -> int:
        return len(self.lines)


async def _run_writer_until_power_cut(mount: LossyMount, mode: str, seed: int, cut_after: int) -> Committed:
    """Start the writer, cut the power after ``cut_after`` promises, SIGKILL it, collect every promise."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.transactions.test_power_loss", "writer", str(mount.mountpoint / DB), mode,
        str(seed), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while len(lines) < cut_after:
                line = await proc.stdout.readline()
                if not line:
                    err = (await proc.stderr.read()).decode()
                    raise AssertionError(f"writer ended after {len(lines)} lines: {err[-2000:]}")
                lines.append(line.decode().strip())
            await asyncio.to_thread(mount.crash)  # the power is off: from now on nothing reaches the disk
            proc.send_signal(signal.SIGKILL)
            rest, _ = await proc.communicate()  # promises made before the kill landed count too
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines += [s for s in rest.decode().splitlines() if s.strip()]
    return Committed(lines)


def _lost(journal_path: Path, promised: Committed) -> dict[str, set]:
    """Promises the disk does not keep (read with plain sqlite3 so this works on a broken journal too)."""
    if not journal_path.exists():
        return {"journal file": {str(journal_path)}}
    conn = sqlite3.connect(journal_path)
    try:
        txns = {r[0] for r in conn.execute("SELECT id FROM transactions")}
        steps = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, txn, closed_at FROM steps")}
        codes = {(r[0], r[1]) for r in conn.execute("SELECT txn, claim_code FROM refunds")}
        seqs = {r[0]: r[1] for r in conn.execute("SELECT id, seq FROM transactions WHERE seq IS NOT NULL")}
    except sqlite3.DatabaseError as exc:
        return {"journal unreadable": {str(exc)}}
    finally:
        conn.close()
    return {k: v for k, v in {
        "txn": promised.txns - txns,
        "intent": {s for s in promised.intents if steps.get(s[1], (None,))[0] != s[0]},
        "outcome": {s for s in promised.outcomes if steps.get(s[1], (None, None))[1] is None},
        "voucher": promised.vouchers - codes,
        "done": {t for t, seq in promised.done.items() if seqs.get(t) != seq},
    }.items() if v}


def _books_balance(conn: sqlite3.Connection) -> None:
    """The ledger rule and the journal's own invariants, read inside ``Journal.read``."""
    assert [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finished = conn.execute("SELECT id, seq, state FROM transactions WHERE state != 'open' ORDER BY seq").fetchall()
    assert [r["seq"] for r in finished] == list(range(1, len(finished) + 1)), "seq has a gap or a repeat"
    for r in finished:
        records.ledger(conn, r["id"]).check()  # cash_in = applied + change + refunded + held
        payloads = [json.loads(p[0]) for p in conn.execute(
            "SELECT payload FROM outbox WHERE topic = 'txn' AND json_extract(payload, '$.txn') = ?", (r["id"],))]
        assert [(p["seq"], p["state"]) for p in payloads] == [(r["seq"], r["state"])], "one outbox row per finish"
    # the cash box count moves in the same commit as the money it counts
    stacked = Counter({f"bill:{fen}": n for fen, n in conn.execute(
        "SELECT fen, COUNT(*) FROM money WHERE kind = 'cash_in' GROUP BY fen")})
    assert Counter(records.counters(conn, "cashbox").get("cashbox", {})) == stacked
    # no money without the step that moved it, no step outcome without its money
    for step, fen in conn.execute("SELECT s.id, m.fen FROM steps s LEFT JOIN money m ON m.step = s.id"
                                  " WHERE s.kind = 'stack' AND s.closed_at IS NOT NULL"):
        assert fen is not None, f"stack step {step} closed without its cash_in"


async def test_a_power_cut_at_any_instant_keeps_every_committed_record_and_the_books_balance(tmp_path):
    """Five power cuts in a row on one disk, each at a random instant, the journal reopened after each."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    promised_all: list[Committed] = []
    # from just after the boot to a few hundred commits; the last run long enough for checkpoints
    cuts = [rng.randrange(5, 600) for _ in range(ROUNDS - 1)] + [rng.randrange(1200, 1500)]
    for round_, cut_after in enumerate(cuts):
        with LossyMount(backing, mnt) as mount:
            promised = await _run_writer_until_power_cut(mount, "journal", rng.randrange(1 << 30), cut_after)
            stats = mount.stats()
        assert promised.boot is not None, promised.lines[:5]
        promised_all.append(promised)
        with LossyMount(backing, mnt):  # the disk after reboot
            where = f"seed {seed}, round {round_}, cut after {cut_after} promises, {stats}"
            for earlier in promised_all:
                assert _lost(mnt / DB, earlier) == {}, where
            async with Journal(mnt / DB, kiosk="K-PL") as journal:  # the real reopen: WAL recovery, migration
                await journal.read(_books_balance)
                assert journal.boot > promised.boot
    assert sum(len(p.done) for p in promised_all) > 0, "no transaction finished before a cut"
    # journal.db gets new data only from checkpoints: one at open (the WAL the last cut left), then
    # the writer's own. The long run must have checkpointed and restarted the WAL under the cut.
    assert stats["fsync_by_name"].get("journal.db", 0) >= 2, stats


async def test_control_the_same_writer_with_synchronous_off_loses_committed_rows(tmp_path):
    """Without this, the test above could pass on a disk that never loses anything."""
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    with LossyMount(backing, mnt):
        async with Journal(mnt / DB, kiosk="K-PL"):  # schema made durably: only the control's own writes are at risk
            pass
    losses = []
    for round_ in range(3):
        with LossyMount(backing, mnt) as mount:
            promised = await _run_writer_until_power_cut(mount, "off", round_, 200)
        with LossyMount(backing, mnt):
            lost = _lost(mnt / DB, promised)
        losses.append(lost)
        if lost.get("done"):
            break
    assert any(lost.get("done") for lost in losses), f"synchronous=OFF lost nothing: {losses}"


def test_control_write_tmp_then_rename_without_fsync_loses_the_file_and_with_fsync_keeps_it(tmp_path):
    """The rule for any file kioskd must keep: write tmp, fsync it, rename, fsync the directory."""
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    with LossyMount(backing, mnt) as mount:
        # careful first: its directory fsync would make an earlier careless name durable too
        for name, sync in (("careful.toml", True), ("careless.toml", False)):
            tmp = mnt / (name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(b"[kiosk]\nid = 'K01'\n")
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, mnt / name)
            if sync:
                fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            assert (mnt / name).read_bytes() == b"[kiosk]\nid = 'K01'\n"  # both look fine while the power is on
        mount.crash()
    with LossyMount(backing, mnt):
        assert not (mnt / "careless.toml").exists()
        assert (mnt / "careful.toml").read_bytes() == b"[kiosk]\nid = 'K01'\n"
        assert sorted(os.listdir(mnt)) == ["careful.toml"]


def test_kiosk_toml_rewritten_by_set_config_is_the_new_one_after_a_power_cut(tmp_path):
    """The one other file kioskd writes that must survive: the config, via ``write_atomically``."""
    from controller.config import write_atomically

    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    (backing / "etc").mkdir(parents=True)
    (backing / "etc" / "kiosk.toml").write_text("[flows]\nidle_timeout = 60\n")
    with LossyMount(backing, mnt) as mount:
        write_atomically(mnt / "etc" / "kiosk.toml", "[flows]\nidle_timeout = 90\n")
        mount.crash()  # right after it returned
    with LossyMount(backing, mnt):
        assert (mnt / "etc" / "kiosk.toml").read_text() == "[flows]\nidle_timeout = 90\n"
        assert os.listdir(mnt / "etc") == ["kiosk.toml"]


def test_the_lossy_disk_undoes_an_unsynced_truncate_unlink_and_overwrite_but_keeps_synced_ones(tmp_path):
    """POSIX, strictly: data needs fsync of the file, a name change needs fsync of its directory."""
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    (backing / "d").mkdir(parents=True)
    for name in ("trunc", "gone", "over", "kept-trunc", "kept-gone"):
        (backing / "d" / name).write_bytes(b"0123456789")  # on the disk before the mount: durable
    with LossyMount(backing, mnt) as mount:
        d = mnt / "d"
        os.truncate(d / "trunc", 3)
        with open(d / "over", "r+b") as f:
            f.write(b"XX")  # overwritten in place, closed, never fsync'd
        with open(d / "kept-trunc", "r+b") as f:
            f.truncate(3)
            os.fsync(f.fileno())
        os.unlink(d / "kept-gone")
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)  # the unlink of kept-gone is durable; no file's data is
        finally:
            os.close(fd)
        os.unlink(d / "gone")  # after the directory's fsync: not durable
        assert sorted(os.listdir(d)) == ["kept-trunc", "over", "trunc"]
        mount.crash()
    with LossyMount(backing, mnt):
        d = mnt / "d"
        assert sorted(os.listdir(d)) == ["gone", "kept-trunc", "over", "trunc"]
        assert (d / "trunc").read_bytes() == b"0123456789"
        assert (d / "gone").read_bytes() == b"0123456789"
        assert (d / "over").read_bytes() == b"0123456789"
        assert (d / "kept-trunc").read_bytes() == b"012"


if __name__ == "__main__" and sys.argv[1:2] == ["writer"]:
    _db, _mode, _seed = sys.argv[2], sys.argv[3], int(sys.argv[4])
    asyncio.run(_writer(_db, _mode, _seed))

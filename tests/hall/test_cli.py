"""`halld` query commands as hall staff meet them: they read only a database halld wrote (a typo is
an error naming the path, never a new empty database), say which one they read, and print tables
whose columns hold still; exit codes: 0 done, 1 not found, 2 no database / bad command line."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from hall.db import connect
from hall.store import Inbound, Store


def halld(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hall.halld", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def cells(lines: list[str]) -> list[dict[str, str]]:
    """Rows of a table as {header: cell}; cells are separated by two spaces or more."""
    header = re.split(r"\s{2,}", lines[0])
    rows = [re.split(r"\s{2,}", line) for line in lines[1:]]
    assert all(len(r) == len(header) for r in rows), lines  # no cell missing: nothing shifts
    return [dict(zip(header, r)) for r in rows]


def _msg(leaf: str, kiosk: str, body: dict) -> Inbound:
    return Inbound("H1", kiosk, leaf, json.dumps({"schema": 1, **body}).encode(), time.time())


@pytest.fixture
def hall_db(tmp_path):
    """Two kiosks: K1 online with cash inhibited, topup disabled and no card stock counted yet;
    K2 gone offline after a sale. K1 has a transaction, K2 an event with no code."""
    path = tmp_path / "hall.db"
    db = connect(str(path))
    store = Store()
    with db.transaction():
        store.apply(db, [
            _msg("status", "K1", {"online": True, "session": 3, "kiosk": "K1", "hall": "H1", "state": "ready",
                                  "outbox_depth": 0, "devices": {"bill": "ok", "printer": "fault"},
                                  "cashbox": {"fen": 12000}, "card_stock": {}, "cash_inhibited": True,
                                  "disabled_services": ["topup"], "alarms": []}),
            _msg("status", "K2", {"online": True, "session": 1, "kiosk": "K2", "hall": "H1", "state": "ready",
                                  "outbox_depth": 2, "devices": {"bill": "ok"}, "card_stock": {"3000": 40},
                                  "alarms": ["outbox_full"]}),
            _msg("txn", "K1", {"msg_seq": 1, "txn": "K1-3-1", "seq": 1, "service": "topup", "state": "done",
                               "amount_fen": 5000}),
            _msg("event", "K2", {"msg_seq": 1, "kind": "door_open", "device": "panel", "detail": "panel: door open"}),
        ])
    with db.transaction():
        store.apply(db, [_msg("status", "K2", {"online": False, "session": 1})])
    db.close()
    return path


def test_a_mistyped_db_is_an_error_naming_it_and_nothing_is_created(tmp_path):
    typo = tmp_path / "hal.db"
    for cmd in ("fleet", "txns", "events", "recent", "refunds", "reviews"):
        out = halld(cmd, "--db", str(typo))
        assert out.returncode == 2, (cmd, out.stdout, out.stderr)
        assert f"halld {cmd}: no hall database at {typo}" in out.stderr
        assert out.stdout == ""
    assert not typo.exists()


def test_no_db_given_means_hall_db_here_and_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hall.halld", "fleet"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={k: v for k, v in __import__("os").environ.items() if k != "HALLD_DB"})
    assert out.returncode == 2 and f"no hall database at {tmp_path / 'hall.db'}" in out.stderr
    assert not (tmp_path / "hall.db").exists()


def test_a_file_that_is_not_a_halld_database_exits_2(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n" * 100)
    out = halld("fleet", "--db", str(other))
    assert out.returncode == 2 and f"cannot open {other}" in out.stderr
    empty_sqlite = tmp_path / "other.db"
    connect(str(empty_sqlite), schema=False).close()
    out = halld("fleet", "--db", str(empty_sqlite))
    assert out.returncode == 2 and "is not a halld database" in out.stderr


def test_an_unknown_kiosk_exits_1(hall_db):
    out = halld("kiosk", "K9", "--db", str(hall_db))
    assert out.returncode == 1 and f"no kiosk K9 in {hall_db}" in out.stderr


def test_fleet_says_which_db_and_shows_cash_services_stock_and_link(hall_db):
    out = halld("fleet", "--db", str(hall_db))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"hall database: {hall_db}"
    k1, k2 = cells(lines[2:5])
    assert (k1["CASH"], k1["DISABLED"], k1["DEVICES"]) == ("INHIBITED", "topup", "faults: printer")
    assert k1["CARDS 元:n"] == "unknown"  # nothing counted is not 0 cards
    assert (k2["CASH"], k2["DISABLED"], k2["CARDS 元:n"], k2["ALARMS"]) == ("accepted", "none", "30.00:40", "outbox_full")
    assert (k2["LINK"], k2["STATE"]) == ("离线 offline", "(was ready)")  # not "ready" while offline
    assert json.loads(halld("fleet", "--json", "--db", str(hall_db)).stdout)[0]["cash_inhibited"] is True


def test_kiosk_is_a_readable_summary_and_json_only_on_request(hall_db):
    out = halld("kiosk", "K1", "--db", str(hall_db))
    assert out.returncode == 0, out.stderr
    assert "cash      INHIBITED by the hall" in out.stdout and "disabled  topup" in out.stdout
    assert "cards     unknown" in out.stdout
    assert "open reviews:\nnone" in out.stdout and "unclaimed refunds:\nnone" in out.stdout
    assert not out.stdout.lstrip().startswith("{")
    as_json = json.loads(halld("kiosk", "K1", "--json", "--db", str(hall_db)).stdout)
    assert as_json["kiosk"] == "K1" and as_json["recent_txns"][0]["txn"] == "K1-3-1"


def test_empty_cells_keep_columns_in_place_and_empty_lists_say_none(hall_db):
    out = halld("events", "--db", str(hall_db))
    [row] = cells(out.stdout.splitlines()[2:4])
    assert (row["CODE"], row["DETAIL"]) == ("-", "panel: door open")  # no code: a dash, nothing shifts
    for cmd in ("refunds", "reviews"):
        out = halld(cmd, "--db", str(hall_db))
        assert out.returncode == 0 and out.stdout.splitlines()[2:] == ["none"], out.stdout


def test_recent_never_cuts_a_message_in_the_middle(hall_db):
    out = halld("recent", "--db", str(hall_db))
    assert out.returncode == 0
    rows = out.stdout.splitlines()[3:]
    assert any(r.endswith("offline  session 1") for r in rows), rows
    assert any("state ready  outbox 0  cash INHIBITED  disabled topup  alarms none" in r for r in rows), rows


def test_json_help_says_what_it_does():
    out = halld("fleet", "--help")
    assert "print every field as JSON (for scripts)" in " ".join(out.stdout.split())

"""Real-name data sealed to the hall's key: opens only with the hall's private key, never in plaintext on
the kiosk, purged from the journal and outbox once the hall acks, opened at the hall by `halld pii open`."""
import json
import os
import subprocess
import sys

import pytest

from hal.idcard import IdCard
from hal.protocols.idcard import IdText
from hall.db import connect
from transactions import books, records
from transactions.journal import Journal
from transactions.pii import PURGED, PiiError, id_record, masked, new_key_pair, open_sealed, seal

from .cards import GOOD

CARD = IdCard(IdText(**GOOD), photo_wlt=b"WLT" + bytes(range(256)) * 3 + b"\x01" * 253)
LIVE = b"\xff\xd8JPEG-of-the-customer\xff\xd9"


def test_a_sealed_record_opens_only_with_the_halls_private_key():
    private, public = new_key_pair()
    blob = seal(public, id_record(CARD, LIVE))
    for secret in (GOOD["id_number"], GOOD["name"], "张三丰".encode().hex()):
        assert secret not in blob
    record = open_sealed(private, blob)
    assert record["id_number"] == GOOD["id_number"] and record["live_photo_jpeg"] == LIVE
    assert record["id_photo_wlt"] == CARD.photo_wlt
    other, _ = new_key_pair()
    with pytest.raises(PiiError):
        open_sealed(other, blob)
    with pytest.raises(PiiError):
        seal("not a key", {})


def test_masks_for_screen_log_and_receipt():
    assert masked(CARD) == {"name": "张**", "id_number": "110105********002X"}


async def test_purged_from_journal_and_outbox_once_the_hall_acks(tmp_path):
    _, public = new_key_pair()
    blob = seal(public, id_record(CARD, LIVE))
    async with Journal(tmp_path / "journal.db", kiosk="K1") as j:
        txn = await j.write(records.new_txn, "K1", 1, "new_number", None, "start", 1.0, {"pii": blob})
        await j.write(records.finish_txn, txn, "done", 2.0)
        (row,) = await books.outbox(j)
        assert row["payload"]["data"]["pii"] == blob  # travels sealed in the record
        assert await books.ack(j, row["seq"]) == 1
        assert (await j.read(records.get_txn, txn))["data"]["pii"] == PURGED
        conn_rows = await j.read(lambda c: c.execute("SELECT payload FROM outbox").fetchall())
        assert blob not in conn_rows[0][0] and PURGED in conn_rows[0][0]


def test_halld_pii_keygen_and_open(tmp_path):
    key = tmp_path / "hall.key"
    out = subprocess.run([sys.executable, "-m", "hall.halld", "pii", "keygen", "--key", str(key)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    public = out.stdout.strip()
    assert len(public) == 64 and (key.stat().st_mode & 0o777) == 0o600
    again = subprocess.run([sys.executable, "-m", "hall.halld", "pii", "keygen", "--key", str(key)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1  # never overwritten
    db_path = str(tmp_path / "hall.db")
    db = connect(db_path)
    payload = {"txn": "T1", "data": {"pii": seal(public, id_record(CARD, LIVE)), "masked": masked(CARD)}}
    db.execute("INSERT INTO txns (hall, kiosk, txn, payload) VALUES (?, ?, ?, ?)",
               ("H", "K1", "T1", json.dumps(payload)))
    db.close()
    from tests.hall.kiosk_client import cli_token

    env = {k: v for k, v in os.environ.items() if k != "HALLD_TOKEN"}
    for token in (None, cli_token(db_path, "admin")):  # only an auditor opens it (hall/auth.py ROLES)
        refused = subprocess.run([sys.executable, "-m", "hall.halld", "pii", "open", "T1", "--key", str(key),
                                  "--db", db_path, *(["--token", token] if token else [])], capture_output=True,
                                 text=True, timeout=60, env=env)
        assert refused.returncode == 4 and not refused.stdout, refused.stderr
    env["HALLD_TOKEN"] = cli_token(db_path, "auditor")
    out = subprocess.run([sys.executable, "-m", "hall.halld", "pii", "open", "T1", "--key", str(key), "--db", db_path,
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    db = connect(db_path)
    assert [r[0] for r in db.query("SELECT target FROM audit_log WHERE action = 'pii.open'")] == ["T1"]
    db.close()
    shown = json.loads(out.stdout)
    assert shown["id_number"] == GOOD["id_number"] and shown["kiosk"] == "K1"
    assert (tmp_path / "T1-live_photo.jpg").read_bytes() == LIVE
    missing = subprocess.run([sys.executable, "-m", "hall.halld", "pii", "open", "T2", "--key", str(key),
                              "--db", db_path], capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 1 and "no transaction" in missing.stderr

"""The back office's SQL on both engines halld runs on (SQLite and PostgreSQL): the same calls the
pages make, the same answers — the queue, a payout, a reversal's intent and outcome, a
reconciliation stored, re-run and resolved, a commission transfer, a card load, settings pushed."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from hall import commission, reconcile, refunds, reversals, settings, stock
from hall import web as console
from hall.db import connect

TXN = ("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at, received_at,"
       " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


@pytest.fixture
def db(db_url):
    d = connect(db_url)
    with d.transaction():
        console.prepare(d)
    yield d
    d.close()


def test_the_back_office_answers_the_same_on_either_engine(db):
    now = time.time()
    day = reconcile.boss_day(now)
    noon = reconcile.day_bounds(day)[0] + 12 * 3600
    with db.transaction():
        for n, service, state, fen in ((1, "topup", "done", 5000), (2, "topup", "review", 3000),
                                       (3, "bill_pay", "done", 8650), (4, "topup", "done", 2000)):
            db.execute(TXN, ("H", "K-9", f"K-9-1-{n}", n, n, service, "13800138000", fen, state, noon, now,
                             json.dumps({"applied": fen if state == "done" else 0})))
        db.execute("INSERT INTO reviews (hall, kiosk, txn, reason, held_fen, state, opened_at) VALUES"
                   " ('H', 'K-9', 'K-9-1-2', 'timeout', 3000, 'open', ?)", (now,))
        db.execute("INSERT INTO refunds (hall, kiosk, claim_code, txn, fen, reason, state, created_at) VALUES"
                   " ('H', 'K-9', 'CLAIM00001', 'K-9-1-4', 2000, 'hopper', 'issued', ?)", (now + 1,))
        db.execute("INSERT INTO fleet (hall, kiosk, online, session, last_seen, card_stock) VALUES"
                   " ('H', 'K-9', 1, 1, ?, '{\"3000\": 12}')", (now,))

    rows, more, count, fen = refunds.queue(db)
    assert [(r["kind"], r["ref"], r["fen"], r["phone"]) for r in rows] == [
        ("review", "K-9-1-2", 3000, "13800138000"), ("voucher", "CLAIM00001", 2000, "13800138000")]
    assert (more, count, fen) == (False, 2, 5000)
    item = refunds.item(db, "voucher", "K-9", "CLAIM00001")
    with db.transaction():
        rec = refunds.record(db, item, "paid", "paid", "", "op", {"ok": True})
    assert rec["voucher"] == "CLAIM00001" and refunds.decided(db)[0]["fen"] == 2000

    with db.transaction():
        asked = reversals.ask(db, "K-9", "K-9-1-1", "wrong number", "op")
        reversals.answered(db, "K-9", "K-9-1-1", "done", "", "", {"fen": 5000, "boss_ref": "B1"}, "op")
    assert asked["request"] == {"of": "K-9-1-1:credit", "reason": "wrong number", "key": "rev:K-9-1-1"}
    with pytest.raises(reversals.NotReversible), db.transaction():
        reversals.ask(db, "K-9", "K-9-1-1", "again", "op")
    assert reversals.reversed_fen(db, ["K-9-1-1:credit", "K-9-1-4:credit"]) == {"K-9-1-1:credit": 5000}
    assert [(r["txn"], r["reversal"]) for r in reversals.candidates(db, now)[0]] == [("K-9-1-1", "done"),
                                                                                    ("K-9-1-4", None)]

    kiosk = reconcile.kiosk_side(db, day)
    assert {k: s.fen for k, s in kiosk.items()} == {"K-9-1-1:credit": 0, "K-9-1-2:credit": None,
                                                   "K-9-1-3:pay": 8650, "K-9-1-4:credit": 2000}
    assert reconcile.kiosk_txn(db, "K-9-1-3:pay").fen == 8650 and reconcile.kiosk_txn(db, "K-9-1-3:credit") is None
    boss = reconcile.boss_side({"ops": [{"key": "K-9-1-1:credit", "op": "credit", "fen": 5000, "boss_ref": "B0"},
                                        {"key": "rev:K-9-1-1", "op": "reverse_credit", "of": "K-9-1-1:credit",
                                         "fen": -5000}, {"key": "K-9-1-3:pay", "op": "pay_bill", "fen": 8650}]})
    items, matched = reconcile.compare(kiosk, boss)
    assert matched == 1 and [(i["key"], i["kind"]) for i in items] == [("K-9-1-2:credit", "review"),
                                                                      ("K-9-1-4:credit", "kiosk_only")]
    summary = {"boss_count": 2, "boss_fen": 8650, "kiosk_count": 2, "kiosk_fen": 10650, "matched": matched}
    with db.transaction():
        reconcile.store(db, day, items, summary, "op")
    first = reconcile.result(db, day)["items"]
    with db.transaction():
        assert reconcile.resolve(db, first[0]["id"], "written_off", "n", "op")
        assert not reconcile.resolve(db, first[0]["id"], "other", "twice", "op")
        reconcile.store(db, day, items, summary, "op")  # again: the resolved one kept, the open one replaced
    again = reconcile.result(db, day)
    assert again["run"]["mismatches"] == 2 and [i["resolution"] for i in again["items"]] == [None, "written_off"]

    with db.transaction():
        commission.ask(db, "cm-0000000000000001", 150, {"available_fen": 193}, "admin")
        commission.answered(db, "cm-0000000000000001", "done", "", "", {"boss_ref": "B2", "wallet_fen": 150}, "admin")
    with pytest.raises(commission.NotAgain), db.transaction():
        commission.ask(db, "cm-0000000000000001", 150, {}, "admin")
    assert commission.transfers(db)[0]["wallet_fen"] == 150

    levels, faces = stock.levels(db, now)
    assert faces == [3000] and levels[0]["faces"][3000]["stock"] == 12 and levels[0]["low"]
    with db.transaction():
        stock.record_load(db, "H", "K-9", 3000, 30, 12, {"ok": True, "result": {"stock": 42}}, "op")
        args = {"services": ["topup"], "denominations": [1000], "notices": ["公告 / notice"]}
        settings.record(db, "H", "K-9", args, {"ok": True}, "", "admin")
        settings.record(db, "H", "K-9", args, {"ok": False}, "timeout", "admin")  # the last good settings stay
    assert stock.loads(db)[0]["stock"] == 42
    pushed = settings.pushed(db)[("H", "K-9")]
    assert (pushed["notices"], pushed["ok"], pushed["code"]) == (["公告 / notice"], 0, "timeout")
    actions = [r[0] for r in db.query("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["refund.paid", "reversal.ask", "reversal.done", "recon.run", "recon.resolve", "recon.run",
                       "commission.transfer.ask", "commission.transfer.done", "stock.load", "kiosk.apply_settings",
                       "kiosk.apply_settings.refused"]
    assert dt.date.fromisoformat(again["run"]["date"]) == day

"""The hall's store, on SQLite and on PostgreSQL: what a message means for the tables, and the ack.

docs/mqtt.md "Records and acks" and "Status". Each test runs on both engines (db_url fixture).
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from hall import queries, rollups
from hall.db import connect
from hall.store import Inbound, Store


def msg(leaf: str, body: dict | bytes, kiosk: str = "K1", hall: str = "H1") -> Inbound:
    payload = body if isinstance(body, bytes) else json.dumps({"schema": 1, **body}).encode()
    return Inbound(hall, kiosk, leaf, payload, time.time())


def txn(seq: int, txn_id: str | None = None, **extra) -> Inbound:
    return msg("txn", {"msg_seq": seq, "txn": txn_id or f"K1-1-{seq}", "seq": seq, "service": "topup",
                       "state": "done", "amount_fen": 5000, **extra})


def event(seq: int, kind: str = "fault", **extra) -> Inbound:
    return msg("event", {"msg_seq": seq, "kind": kind, "device": "bill", "code": "jam", **extra})


def birth(session: int, online: bool = True, **extra) -> Inbound:
    return msg("status", {"online": online, "session": session, "kiosk": "K1", "hall": "H1", "state": "ready",
                          "outbox_depth": 0, "devices": {"bill": "ok"}, **extra})


@pytest.fixture
def db(db_url):
    d = connect(db_url)
    yield d
    d.close()


def apply(db, store, *batch):
    with db.transaction():
        return store.apply(db, list(batch))


def test_the_ack_is_the_contiguous_high_water_of_committed_records(db):
    store = Store()
    [ack] = apply(db, store, txn(1), event(2), txn(3))
    assert (ack.topic, ack.msg_seq, ack.resend_from) == ("kiosk/v1/H1/K1/ack", 3, None)
    assert json.loads(ack.payload()) == {"schema": 1, "msg_seq": 3}
    assert [t["txn"] for t in queries.txns(db)] == ["K1-1-3", "K1-1-1"]
    assert [e["kind"] for e in queries.events(db)] == ["fault"]


def test_a_record_delivered_twice_is_stored_once_and_acked_again(db):
    store = Store()
    apply(db, store, txn(1), txn(2))
    [ack] = apply(db, store, txn(1), txn(2))  # the kiosk rewound after a reconnect
    assert ack.msg_seq == 2 and store.stats["duplicates"] == 2
    assert db.one("SELECT COUNT(*) FROM records")[0] == 2
    assert len(queries.txns(db)) == 2


def test_one_transaction_id_is_kept_once_even_under_two_msg_seqs(db):
    store = Store()
    apply(db, store, txn(1, "K1-1-1"), txn(2, "K1-1-1", state="refunded"))
    [row] = queries.txns(db)
    assert (row["txn"], row["msg_seq"], row["state"]) == ("K1-1-1", 1, "done")


def test_a_new_hole_is_not_asked_at_once_it_is_most_likely_a_sibling_workers_batch(db):
    store = Store()
    [ack] = apply(db, store, txn(1), txn(2), txn(5))
    assert (ack.msg_seq, ack.resend_from) == (2, None)
    [filled] = apply(db, store, txn(3), txn(4))  # the sibling commits: the high water jumps past 5
    assert (filled.msg_seq, filled.resend_from) == (5, None)
    assert store.stats["resends"] == 0


def test_a_hole_that_stands_for_the_holdoff_asks_a_resend_from_the_first_missing_msg_seq(db, monkeypatch):
    store = Store()
    monkeypatch.setattr("hall.store.RESEND_HOLDOFF_S", 0.0)  # any standing is long enough
    [first] = apply(db, store, txn(1), txn(2), txn(5))
    assert first.resend_from is None  # not at first sight
    [ack] = apply(db, store, txn(6))
    assert (ack.msg_seq, ack.resend_from) == (2, 3)
    assert json.loads(ack.payload()) == {"schema": 1, "msg_seq": 2, "resend_from": 3}
    monkeypatch.setattr("hall.store.RESEND_HOLDOFF_S", 3600.0)
    [again] = apply(db, store, txn(7))  # the same hole, asked a moment ago: not asked again yet
    assert (again.msg_seq, again.resend_from) == (2, None)
    [filled] = apply(db, store, txn(3), txn(4))  # the resend fills it: the high water jumps past 5, 6 and 7
    assert (filled.msg_seq, filled.resend_from) == (7, None)
    assert store.stats["resends"] == 1


def test_a_standing_hole_with_nothing_after_it_is_asked_by_the_sweep_and_then_less_and_less_often(db, monkeypatch):
    store = Store()
    monkeypatch.setattr("hall.store.RESEND_HOLDOFF_S", 0.0)
    apply(db, store, txn(1), txn(3))
    with db.transaction():
        [ack] = store.sweep(db)
    assert (ack.msg_seq, ack.resend_from) == (1, 2)
    monkeypatch.setattr("hall.store.RESEND_HOLDOFF_S", 3600.0)
    apply(db, store, txn(4))
    with db.transaction():
        assert store.sweep(db) == []  # asked a moment ago
    assert store.holes_due() > 3600  # the next ask waits twice the holdoff
    apply(db, store, txn(2))
    assert store.holes_due() is None  # filled: nothing more to ask


def test_malformed_records_are_counted_and_dropped_and_the_rest_of_the_batch_is_stored(db):
    store = Store()
    acks = apply(db, store,
                 msg("txn", b"{not json"),
                 msg("txn", json.dumps({"schema": 2, "msg_seq": 1, "txn": "x"}).encode()),  # unknown schema
                 msg("txn", {"msg_seq": "1", "txn": "x"}),  # msg_seq not an int
                 msg("txn", {"msg_seq": True, "txn": "x"}),  # a bool is not a msg_seq
                 msg("txn", {"msg_seq": 0, "txn": "x"}),
                 msg("txn", {"msg_seq": 1}),  # no txn id
                 msg("event", {"msg_seq": 1}),  # no kind
                 msg("status", {"online": "yes", "session": 1}),
                 msg("txn", b"[1, 2]"),
                 txn(1))
    assert store.stats["malformed"] == 9
    assert [a.msg_seq for a in acks] == [1]
    assert db.one("SELECT COUNT(*) FROM records")[0] == 1


def test_birth_fills_the_fleet_row_and_telemetry_keeps_its_gauges_current(db):
    store = Store()
    apply(db, store, birth(7, outbox_depth=3, alarms=["outbox_full"], cashbox={"fen": 12000, "by_denomination": {"1000": 12}},
                           card_stock={"3000": 40}, hopper_fen=5000, version="0.1.0", config_hash="abc"))
    [k] = queries.fleet(db)
    assert (k["online"], k["session"], k["outbox_depth"], k["cashbox_fen"], k["card_stock"], k["alarms"]) == \
        (True, 7, 3, 12000, {"3000": 40}, ["outbox_full"])
    apply(db, store, msg("telemetry", {"outbox_depth": 0, "devices": {"bill": "fault"}, "card_stock": {"3000": 39},
                                       "cashbox": {"fen": 17000}}))
    [k] = queries.fleet(db)
    assert (k["outbox_depth"], k["devices"], k["card_stock"], k["cashbox_fen"], k["hopper_fen"]) == \
        (0, {"bill": "fault"}, {"3000": 39}, 17000, 5000)


def test_a_will_takes_the_kiosk_offline_but_a_late_will_from_an_earlier_boot_is_ignored(db):
    store = Store()
    apply(db, store, birth(7))
    apply(db, store, birth(6, online=False))  # the broker delivers boot 6's will after boot 7's birth
    assert queries.fleet(db)[0]["online"] is True and store.stats["late_wills"] == 1
    apply(db, store, birth(7, online=False))
    assert queries.fleet(db)[0]["online"] is False


def test_a_status_naming_another_kiosk_is_refused(db):
    store = Store()
    apply(db, store, msg("status", {"online": True, "session": 1, "kiosk": "K2"}))
    assert queries.fleet(db) == [] and store.stats["malformed"] == 1


def test_refund_vouchers_and_reviews_become_the_halls_lists(db):
    store = Store()
    apply(db, store, birth(1),
          event(1, "refund_voucher", txn="K1-1-1", fen=300, claim_code="ABCDEFGH23", reason="hopper empty"),
          txn(2, "K1-1-1", state="refunded", vouchers=[{"code": "ABCDEFGH23", "fen": 300}]),
          event(3, "txn_review", txn="K1-1-2", reason="unbalanced", held_for_review=1000),
          txn(4, "K1-1-2", state="review", note="unbalanced", held_for_review=1000))
    [refund] = queries.refunds(db, "issued")
    assert (refund["claim_code"], refund["fen"], refund["txn"]) == ("ABCDEFGH23", 300, "K1-1-1")
    [review] = queries.reviews(db, "open")
    assert (review["txn"], review["held_fen"], review["reason"]) == ("K1-1-2", 1000, "unbalanced")
    apply(db, store, event(5, "voucher_claimed", claim_code="ABCDEFGH23", fen=300))
    assert queries.refunds(db, "issued") == [] and queries.refunds(db, "claimed")[0]["claim_code"] == "ABCDEFGH23"
    detail = queries.kiosk(db, "K1")
    assert detail["acked_msg_seq"] == 5 and len(detail["open_reviews"]) == 1


def test_two_writers_splitting_one_kiosks_records_agree_on_the_high_water(db_url):
    """Two workers of a shared subscription: alternate records of one kiosk, committed
    concurrently in small batches; nothing lost, stored once, the final high water is the last."""
    n = 200
    connect(db_url).close()  # the schema, once
    stores = [Store(), Store()]
    highs: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        db = connect(db_url, schema=False)
        try:
            for start in range(1 + i * 5, n + 1, 10):
                batch = [txn(s) for s in range(start, min(start + 5, n + 1))]
                for _ in range(5):  # a deadlock or serialization failure is retried, as the writer does
                    try:
                        with db.transaction():
                            [ack] = stores[i].apply(db, batch)
                        break
                    except db.errors:
                        continue
                highs[i].append(ack.msg_seq)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    db = connect(db_url, schema=False)
    try:
        assert db.one("SELECT COUNT(*), MIN(msg_seq), MAX(msg_seq) FROM records")[0:3] == (n, 1, n)
        assert db.one("SELECT msg_seq FROM highwater WHERE kiosk = 'K1'")[0] == n
        assert max(highs[0] + highs[1]) == n
        assert all(a <= b for h in highs for a, b in zip(h, h[1:]))  # each worker's acks never go back
    finally:
        db.close()


@pytest.mark.parametrize("poison", [
    {"amount_fen": 10 ** 30}, {"phone": "138\ud800"}, {"phone": "138\x00"}, {"amount_fen": float("nan")},
    {"vouchers": [{"code": "X", "fen": -(10 ** 20)}]}, {"kiosk": "K2"}, {"txn": "K2-1-1"}])
def test_a_poison_record_is_quarantined_and_acked_without_touching_the_batch(db, poison):
    """Issue 16 case 3, on both engines: values the database cannot hold (PostgreSQL's TEXT takes no
    NUL, no engine takes a lone surrogate or an integer beyond 64 bits) never reach SQL."""
    store = Store()
    bad = msg("txn", json.dumps({"schema": 1, "msg_seq": 2, "txn": "K1-1-2", "seq": 2, **poison}).encode())
    [ack] = apply(db, store, txn(1), bad, txn(3), event(4))
    assert (ack.msg_seq, store.stats["quarantined"]) == (4, 1)
    assert [t["txn"] for t in queries.txns(db)] == ["K1-1-3", "K1-1-1"]
    [q] = queries.quarantine(db)
    assert (q["kiosk"], q["leaf"], q["msg_seq"]) == ("K1", "txn", 2) and q["reason"]


def test_a_lone_surrogate_encoded_in_the_bytes_is_quarantined_too(db):
    """json.loads(bytes) decodes with 'surrogatepass': UTF-8-encoded surrogates (ED A0 80) came
    through as lone surrogates the database refuses (found by tests/security/test_property.py)."""
    store = Store()
    bad = msg("txn", '{"schema":1,"msg_seq":1,"txn":"K1-1-1","phone":"\ud800"}'.encode("utf-8", "surrogatepass"))
    [ack] = apply(db, store, bad, txn(2))
    assert (ack.msg_seq, store.stats["quarantined"]) == (2, 1)


def _rollups(db) -> dict[str, list[tuple]]:
    return {t: db.query(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4") for t in rollups.TABLES}


def test_the_writer_keeps_the_report_rollups_equal_to_a_rebuild_from_txns(db):
    """Every stored `done` transaction counted once in the rollups (hall/rollups.py): a record
    delivered twice, a txn id sent again under a new msg_seq, a record past a hole stored before
    the hole is filled, other states and events count nothing extra."""
    store = Store()
    day = 1_740_787_200  # 2025-03-01 00:00 UTC
    t = [txn(i, amount_fen=[500, 1000, 5000, 88800][i % 4], finished_at=day + 3600 * 7 * i,
             service=["topup", "bill_pay", "query"][i % 3]) for i in range(1, 13)]
    t[3] = txn(4, state="failed", finished_at=day)
    apply(db, store, t[0], t[1], t[1], t[4], t[5])  # 2 twice; 5, 6 past the hole at 3
    apply(db, store, t[2], t[3], t[4], t[5], t[6], event(8), txn(9, "K1-1-3", finished_at=day + 99))
    apply(db, store, *t[9:], t[0])  # K1-1-3 came again above under msg_seq 9; 1 is a late duplicate
    kept = _rollups(db)
    assert sum(n for *_, n, _ in kept["txn_days"]) == 9  # 1 2 3 5 6 7 10 11 12 (4 failed, 9 is 3 again)
    assert sum(f for *_, f in kept["txn_days"]) == db.one(
        "SELECT SUM(amount_fen) FROM txns WHERE state = 'done'")[0]
    with db.transaction():
        rollups.rebuild(db, rollups.offset(db))
    assert _rollups(db) == kept


def test_two_batches_in_one_transaction_count_each_row_once(db):
    """The writer's staging table of a batch's new rows (rollups.insert_txns) is emptied per batch,
    not only at commit."""
    store = Store()
    with db.transaction():
        store.apply(db, [txn(1, finished_at=1_740_787_200)])
        store.apply(db, [txn(2, finished_at=1_740_787_200)])
    assert db.one("SELECT SUM(n), SUM(fen) FROM txn_days") == (2, 10000)
    assert db.one("SELECT SUM(n), SUM(fen) FROM hall_days") == (2, 10000)

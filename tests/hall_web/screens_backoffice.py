"""The back-office pages' data for the console's screenshots (tests/hall_web/screens.py): a review and a
voucher waiting, recent top-ups and their reversals, yesterday reconciled with its mismatches, card
stock and sales, settings pushed, and commission earned at a bosssim."""
from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request

PAGES = [("txns", "/txns?kiosk=K1&state=done&lang=zh", True), ("txn", "/txn?kiosk=K1&txn=K1-3-17", True),
         ("refunds", "/refunds", True), ("reconcile", "/reconcile", True), ("reversals", "/reversals", True),
         ("commission", "/commission", True), ("stock", "/stock?face=3000&delivery=300", True),
         ("settings", "/settings", True)]  # Chinese: the pages before may have left the English toggle on
TXN = ("INSERT INTO txns (hall, kiosk, txn, seq, msg_seq, service, phone, amount_fen, state, finished_at, received_at,"
       " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def boss(url: str, op: str, **params) -> dict:
    req = urllib.request.Request(f"{url}/boss/v1/{op}", json.dumps(params).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def seed(d, boss_url: str) -> None:
    from hall import reconcile

    now = time.time()
    topups = [("K1-3-11", "13800138000", 5000, 3.2), ("K1-3-12", "18612345678", 10000, 2.5),
              ("K2-1-40", "13912345678", 3000, 1.1), ("K1-3-15", "15000000000", 2000, 0.4)]
    for i, (t, phone, fen, hours) in enumerate(topups):
        at = now - hours * 3600
        d.execute(TXN, ("H1" if t.startswith("K1") else "H2", t.split("-")[0], t, 100 + i, 100 + i, "topup", phone, fen,
                        "done", at, at, json.dumps({"applied": fen, "data": {"boss_ref": f"B0000{i + 1:04d}"}})))
        boss(boss_url, "credit", phone=phone, fen=fen, key=f"{t}:credit")
    boss(boss_url, "pay_bill", phone="13912345678", fen=8650, key="K2-1-41:pay")
    d.execute(TXN, ("H1", "K1", "K1-3-17", 117, 117, "topup", "13800138000", 5000, "review", now - 5000, now - 5000,
                    json.dumps({"note": "credit K1-3-17:credit: timeout", "cash_in": 5000, "held_for_review": 5000})))
    d.execute(TXN, ("H1", "K1", "K1-3-18", 118, 118, "card_sale", None, 3000, "refunded", now - 4000, now - 4000,
                    json.dumps({"vouchers": [{"code": "7KQ2M9XD4P", "fen": 2000}]})))
    d.execute("INSERT INTO reviews (hall, kiosk, txn, reason, held_fen, state, opened_at) VALUES"
              " ('H1', 'K1', 'K1-3-17', 'BOSS 超时，充值结果未知 / credit timed out', 5000, 'open', ?)", (now - 5000,))
    d.execute("INSERT INTO refunds (hall, kiosk, claim_code, txn, fen, reason, state, created_at) VALUES"
              " ('H1', 'K1', '7KQ2M9XD4P', 'K1-3-18', 2000, '找零不足 / hopper empty', 'issued', ?)", (now - 4000,))
    d.execute("INSERT INTO desk_payouts (hall, kiosk, kind, ref, txn, fen, decision, resolution, reason, voucher, who, at)"
              " VALUES ('H2', 'K2', 'voucher', 'M3XQ7PZK2A', 'K2-1-33', 1000, 'paid', 'paid', '', 'M3XQ7PZK2A',"
              " 'zhang.wei', ?)", (now - 86400,))
    d.execute("INSERT INTO reversals (hall, kiosk, txn, of_key, phone, fen, reason, state, boss_ref, who, asked_at,"
              " answered_at) VALUES ('H1', 'K1', 'K1-3-12', 'K1-3-12:credit', '18612345678', 10000,"
              " '充错号码 / wrong number', 'done', 'B00000009', 'zhang.wei', ?, ?)", (now - 1800, now - 1799))
    d.execute("INSERT INTO reversals (hall, kiosk, txn, of_key, phone, fen, reason, state, code, who, asked_at,"
              " answered_at) VALUES ('H1', 'K1', 'K1-2-90', 'K1-2-90:credit', '13800138000', 3000,"
              " '顾客要求 / customer asked', 'refused', 'window_closed', 'zhang.wei', ?, ?)", (now - 900, now - 899))
    day = (reconcile.boss_day(now) - dt.timedelta(days=1)).isoformat()
    d.execute("INSERT INTO recon_runs (date, at, who, boss_count, boss_fen, kiosk_count, kiosk_fen, matched, mismatches)"
              " VALUES (?, ?, 'zhang.wei', 412, 2153400, 411, 2156400, 409, 4)", (day, now - 600))
    for key, kind, kiosk_state, k_fen, b_fen, ref, resolution in [
            ("K1-3-2:credit", "kiosk_only", "done", 3000, 0, None, None),
            ("K2-1-7:credit", "boss_only", "refunded", 0, 2000, "B00000311", "refund_customer"),
            ("K1-2-88:credit", "review", "review", None, 5000, "B00000298", None),
            ("K2-1-9:pay", "amount_differs", "done", 10000, 5000, "B00000305", None)]:
        kiosk = key.split("-")[0]
        d.execute("INSERT INTO recon_items (date, key, kind, hall, kiosk, txn, kiosk_state, kiosk_fen, boss_fen, boss_ref,"
                  " found_at, resolution, note, resolved_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (day, key, kind, "H1" if kiosk == "K1" else "H2", kiosk, key.rsplit(":", 1)[0], kiosk_state, k_fen,
                   b_fen, ref, now - 600, resolution, "柜台已退 20 元 / 20 yuan paid at the desk" if resolution else None,
                   "zhang.wei" if resolution else None, now - 300 if resolution else None))
    for kiosk, hall, cards in (("K2", "H2", {"3000": 12, "5000": 80}), ("K3", "H1", {"3000": 160, "10000": 3})):
        d.execute("INSERT INTO fleet (hall, kiosk, online, session, last_seen, state, card_stock, outbox_depth, alarms,"
                  " devices) VALUES (?, ?, 1, 1, ?, 'ready', ?, 0, '[]', '{}')", (hall, kiosk, now - 30, json.dumps(cards)))
    for kiosk, n in (("K1", 42), ("K2", 28), ("K3", 6)):
        for i in range(n):
            at = now - (i % 13 + 1) * 86400
            d.execute(TXN, ("H2" if kiosk == "K2" else "H1", kiosk, f"{kiosk}-cs-{i}", 500 + i, 500 + i, "card_sale",
                            None, 3000, "done", at, at, json.dumps({"data": {"face_fen": 3000}})))
    d.execute("INSERT INTO card_loads (hall, kiosk, face_fen, added, ok, stock, who, at, reply) VALUES"
              " ('H1', 'K1', 3000, 30, 1, 38, 'zhang.wei', ?, '{}')", (now - 7200,))
    d.execute("INSERT INTO kiosk_settings (hall, kiosk, services, denominations, notices, who, pushed_at, ok, code)"
              " VALUES ('H1', 'K1', ?, ?, ?, 'zhang.wei', ?, 1, '')",
              (json.dumps(["topup", "card_sale", "bill_pay", "balance_query", "statement", "invoice"]),
               json.dumps([100, 500, 1000, 2000, 5000, 10000]),
               json.dumps(["本厅营业时间 9:00–18:00 / Open 9:00–18:00", "节假日照常营业 / Open on holidays"],
                          ensure_ascii=False), now - 3000))
    d.execute("INSERT INTO kiosk_settings (hall, kiosk, who, pushed_at, ok, code) VALUES"
              " ('H2', 'K2', 'zhang.wei', ?, 0, 'timeout')", (now - 3000,))
    moved = boss(boss_url, "commission_transfer", fen=200, key="cm-00000000000000a1")["result"]
    d.execute("INSERT INTO commission_transfers (key, fen, state, boss_ref, wallet_fen, who, asked_at, answered_at)"
              " VALUES ('cm-00000000000000a1', 200, 'done', ?, ?, 'zhang.wei', ?, ?)",
              (moved["boss_ref"], moved["wallet_fen"], now - 1200, now - 1199))

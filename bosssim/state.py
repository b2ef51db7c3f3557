"""The simulator's books: accounts, plans, bills, and every keyed write applied exactly once.

Idempotency is the point of this module: a write (credit, pay_bill, change_plan, suspend) is
stored with its key in the same SQLite transaction that applies it; a repeat of the key gets the
stored result back and changes nothing; the same key with different arguments is refused.
"""
from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from typing import Any

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS accounts (phone TEXT PRIMARY KEY, holder TEXT, prepaid INTEGER,
       status TEXT, balance_fen INTEGER, plan TEXT, password TEXT)""",
    "CREATE TABLE IF NOT EXISTS plans (code TEXT PRIMARY KEY, name_zh TEXT, name_en TEXT, monthly_fen INTEGER)",
    """CREATE TABLE IF NOT EXISTS bills (phone TEXT, month TEXT, amount_fen INTEGER, paid_fen INTEGER DEFAULT 0,
       lines TEXT, PRIMARY KEY (phone, month))""",
    """CREATE TABLE IF NOT EXISTS ops (key TEXT PRIMARY KEY, op TEXT, args TEXT, result TEXT, at REAL)""",
    "CREATE TABLE IF NOT EXISTS sms_codes (phone TEXT PRIMARY KEY, code TEXT, at REAL)",
    # issue 11: numbers for sale, held while a customer decides; the SIM each number is on; owners by ID
    "CREATE TABLE IF NOT EXISTS number_pool (phone TEXT PRIMARY KEY, held_by TEXT, held_until REAL)",
    "CREATE TABLE IF NOT EXISTS sims (phone TEXT PRIMARY KEY, iccid TEXT, imsi TEXT)",
    "CREATE TABLE IF NOT EXISTS owners (phone TEXT PRIMARY KEY, id_number TEXT, name TEXT)",
]
HOLD_S = 600.0  # a reservation lapses after this long (the customer walked away)
# issue 14, the hall's back office: a top-up may be reversed for this long after it was applied;
# the business day (statements, commission months) is China Standard Time, as the operator's.
REVERSAL_WINDOW_S = 24 * 3600.0
BUSINESS_TZ_S = 8 * 3600
MONEY_OPS = ("credit", "pay_bill")  # what moves a subscriber's money, and earns the hall commission
COMMISSION_BP = {"credit": 150, "pay_bill": 50}  # basis points of the amount (1.5 %, 0.5 %)
ADM_KEY = "3838383838383838"  # the blank cards' ADM1 ("88888888"), as the card vendor's data file would say
POOL = [f"{p}{n:04d}" for p in ("1351234", "1509876", "1882345") for n in (8, 168, 520, 888, 1234, 6666, 9999)]

PLANS = [("4G-38", "4G畅享38元套餐", "4G Basic 38", 3800), ("4G-58", "4G畅享58元套餐", "4G Plus 58", 5800),
         ("4G-88", "4G畅享88元套餐", "4G Max 88", 8800), ("5G-128", "5G智享128元套餐", "5G Smart 128", 12800)]

# Test subscribers: names, numbers and passwords are invented.
ACCOUNTS = [
    ("13800138000", "张伟", 1, "active", 1250, "4G-58", "123456"),
    ("13912345678", "李娜", 0, "active", 0, "4G-88", "654321"),
    ("18612345678", "陈静", 1, "active", 30000, "5G-128", "888888"),
    ("15000000000", "王芳", 1, "suspended", -520, "4G-38", "000000"),
    ("13700000000", "赵强", 1, "closed", 0, "4G-38", "111111"),
]
# The holders' (invented) ID numbers, valid by GB 11643.
OWNERS = [("13800138000", "11010519491231002X", "张伟"), ("13912345678", "110101199003074477", "李娜")]
BILLS = [
    ("13912345678", "2026-09", 8650, 0, [["套餐月费 Plan fee", 8800], ["通话 Calls", 350], ["优惠 Discount", -500]]),
    ("13912345678", "2026-10", 9120, 0, [["套餐月费 Plan fee", 8800], ["流量 Data", 320]]),
    ("13800138000", "2026-10", 5800, 5800, [["套餐月费 Plan fee", 5800]]),
]


def seed_bills(now: float) -> list[tuple]:
    """BILLS, and 张伟's paid bill for the last full month before ``now`` too: a kiosk offers the
    last three full months, so on a real clock there is always a statement and an invoice to print."""
    t = time.localtime(now)
    last = f"{t.tm_year - (t.tm_mon == 1):04d}-{(t.tm_mon - 2) % 12 + 1:02d}"
    extra = ("13800138000", last, 5800, 5800, [["套餐月费 Plan fee", 5800]])
    return BILLS + ([extra] if all((p, m) != extra[:2] for p, m, *_ in BILLS) else [])


class Refused(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code, self.message = code, message


class Books:
    def __init__(self, path: str) -> None:
        self.reversal_window_s = REVERSAL_WINDOW_S
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        for statement in SCHEMA:
            self.conn.execute(statement)
        if self.conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] == 0:
            self.seed()
        elif self.conn.execute("SELECT COUNT(*) FROM number_pool").fetchone()[0] == 0:  # books older than issue 11
            with self._tx():
                self.conn.executemany("INSERT OR IGNORE INTO number_pool VALUES (?, NULL, NULL)", [(p,) for p in POOL])
                self.conn.executemany("INSERT OR IGNORE INTO owners VALUES (?, ?, ?)", OWNERS)

    def seed(self) -> None:
        with self._tx():
            self.conn.executemany("INSERT INTO plans VALUES (?, ?, ?, ?)", PLANS)
            self.conn.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)", ACCOUNTS)
            self.conn.executemany("INSERT INTO number_pool VALUES (?, NULL, NULL)", [(p,) for p in POOL])
            self.conn.executemany("INSERT INTO owners VALUES (?, ?, ?)", OWNERS)
            self.conn.executemany("INSERT INTO bills VALUES (?, ?, ?, ?, ?)",
                                  [(p, m, a, paid, json.dumps(lines, ensure_ascii=False))
                                   for p, m, a, paid, lines in seed_bills(time.time())])

    def _tx(self):
        conn = self.conn

        class _T:
            def __enter__(self):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *rest):
                conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return _T()

    def account(self, phone: Any) -> sqlite3.Row:
        if not isinstance(phone, str) or not (phone.isdigit() and len(phone) == 11):
            raise Refused("bad_number", f"{phone!r} is not an 11-digit number")
        row = self.conn.execute("SELECT * FROM accounts WHERE phone = ?", (phone,)).fetchone()
        if row is None:
            raise Refused("no_such_number", phone)
        return row

    def _arrears(self, phone: str) -> int:
        return self.conn.execute("SELECT COALESCE(SUM(amount_fen - paid_fen), 0) FROM bills WHERE phone = ?",
                                 (phone,)).fetchone()[0]

    # --- reads -------------------------------------------------------------------------------
    def check_number(self, phone: str) -> dict:
        a = self.account(phone)
        return {"status": a["status"], "prepaid": bool(a["prepaid"]), "holder_masked": a["holder"][0] + "*"}

    def query_balance(self, phone: str) -> dict:
        a = self.account(phone)
        return {"balance_fen": a["balance_fen"], "arrears_fen": self._arrears(phone)}

    def query_plans(self, phone: str) -> dict:
        a = self.account(phone)
        plans = [dict(r) for r in self.conn.execute("SELECT * FROM plans ORDER BY monthly_fen")]
        return {"current": a["plan"], "available": plans}

    def query_bill(self, phone: str) -> dict:
        self.account(phone)
        months = [{"month": r["month"], "amount_fen": r["amount_fen"], "paid_fen": r["paid_fen"]}
                  for r in self.conn.execute("SELECT * FROM bills WHERE phone = ? ORDER BY month", (phone,))]
        return {"due_fen": self._arrears(phone), "months": months}

    def statement(self, phone: str, month: str) -> dict:
        self.account(phone)
        r = self.conn.execute("SELECT * FROM bills WHERE phone = ? AND month = ?", (phone, month)).fetchone()
        if r is None:
            raise Refused("no_bill", f"{phone} {month}")
        return {"lines": json.loads(r["lines"]), "total_fen": r["amount_fen"]}

    def invoice(self, phone: str, month: str) -> dict:
        a = self.account(phone)
        r = self.conn.execute("SELECT * FROM bills WHERE phone = ? AND month = ?", (phone, month)).fetchone()
        if r is None or r["paid_fen"] == 0:
            raise Refused("nothing_paid", f"{phone} {month}")
        return {"number": f"INV{month.replace('-', '')}{phone[-4:]}", "title": a["holder"], "amount_fen": r["paid_fen"]}

    def verify_password(self, phone: str, password: str) -> dict:
        return {"valid": self.account(phone)["password"] == password}

    def send_sms_code(self, phone: str) -> dict:
        self.account(phone)
        code = f"{random.randrange(10**6):06d}"
        self.conn.execute("INSERT OR REPLACE INTO sms_codes VALUES (?, ?, ?)", (phone, code, time.time()))
        return {"sent": True}

    def verify_sms_code(self, phone: str, code: str) -> dict:
        r = self.conn.execute("SELECT code FROM sms_codes WHERE phone = ?", (phone,)).fetchone()
        return {"valid": r is not None and r["code"] == code}

    def op_status(self, key: str) -> dict:
        r = self.conn.execute("SELECT * FROM ops WHERE key = ?", (key,)).fetchone()
        if r is None:
            return {"found": False}
        return {"found": True, "op": r["op"], "result": json.loads(r["result"])}

    # --- numbers, SIMs and owners (issue 11) ---------------------------------------------------
    def list_numbers(self, suffix: str = "", limit: int = 10) -> dict:
        """Numbers for sale ending in ``suffix`` that nobody holds (or whose hold lapsed)."""
        rows = self.conn.execute("SELECT phone FROM number_pool WHERE phone LIKE ? AND"
                                 " (held_by IS NULL OR held_until < ?) ORDER BY phone LIMIT ?",
                                 ("%" + suffix, time.time(), limit)).fetchall()
        return {"numbers": [r["phone"] for r in rows], "hold_s": HOLD_S}

    def owner_check(self, phone: str, id_number: str) -> dict:
        """Whether this ID card's number is the number's registered owner (a SIM replacement needs it)."""
        self.account(phone)
        r = self.conn.execute("SELECT id_number FROM owners WHERE phone = ?", (phone,)).fetchone()
        return {"match": r is not None and r["id_number"] == id_number.upper()}

    def sim_card_data(self, phone: str, iccid: str) -> dict:
        """What to write on the blank card ``iccid`` for ``phone``: IMSI, keys, the card's ADM key."""
        digest = hashlib.sha256(f"{phone}:{iccid}".encode()).hexdigest()
        return {"imsi": "46000" + str(int(digest[:12], 16))[-10:].zfill(10), "ki": digest[:32].upper(),
                "opc": digest[32:].upper(), "adm": ADM_KEY, "spn": "KIOSK"}

    def _pool_row(self, phone: str) -> sqlite3.Row:
        r = self.conn.execute("SELECT * FROM number_pool WHERE phone = ?", (phone,)).fetchone()
        if r is None:
            raise Refused("not_for_sale", phone)
        return r

    def _reserve_number(self, phone: str, holder: str) -> dict:
        r = self._pool_row(phone)
        now = time.time()
        if r["held_by"] not in (None, holder) and r["held_until"] >= now:
            raise Refused("number_taken", phone)
        self.conn.execute("UPDATE number_pool SET held_by = ?, held_until = ? WHERE phone = ?", (holder, now + HOLD_S, phone))
        return {"phone": phone, "held_until": now + HOLD_S}

    def _release_number(self, phone: str, holder: str) -> dict:
        r = self._pool_row(phone)
        released = r["held_by"] == holder
        if released:
            self.conn.execute("UPDATE number_pool SET held_by = NULL, held_until = NULL WHERE phone = ?", (phone,))
        return {"phone": phone, "released": released}

    def _open_number(self, phone: str, holder: str, iccid: str, id_number: str, name: str, plan: str) -> dict:
        r = self._pool_row(phone)
        if r["held_by"] != holder:
            raise Refused("not_reserved", f"{phone} is not held for this customer")
        if self.conn.execute("SELECT 1 FROM plans WHERE code = ?", (plan,)).fetchone() is None:
            raise Refused("no_such_plan", plan)
        card = self.sim_card_data(phone, iccid)
        self.conn.execute("DELETE FROM number_pool WHERE phone = ?", (phone,))
        self.conn.execute("INSERT INTO accounts VALUES (?, ?, 1, 'active', 0, ?, ?)", (phone, name, plan, "000000"))
        self.conn.execute("INSERT INTO owners VALUES (?, ?, ?)", (phone, id_number.upper(), name))
        self.conn.execute("INSERT OR REPLACE INTO sims VALUES (?, ?, ?)", (phone, iccid, card["imsi"]))
        return {"phone": phone, "iccid": iccid, "status": "active"}

    def _replace_sim(self, phone: str, iccid: str, id_number: str) -> dict:
        a = self.account(phone)
        if a["status"] == "closed":
            raise Refused("number_closed", phone)
        if not self.owner_check(phone, id_number)["match"]:
            raise Refused("not_owner", "the ID card is not the number's registered owner")
        old = self.conn.execute("SELECT iccid FROM sims WHERE phone = ?", (phone,)).fetchone()
        card = self.sim_card_data(phone, iccid)
        self.conn.execute("INSERT OR REPLACE INTO sims VALUES (?, ?, ?)", (phone, iccid, card["imsi"]))
        return {"phone": phone, "iccid": iccid, "invalidated": old["iccid"] if old else None}

    def _register_real_name(self, phone: str, id_number: str, name: str) -> dict:
        a = self.account(phone)
        if a["holder"] != name:
            raise Refused("name_mismatch", "the name on the ID card is not the account holder's")
        self.conn.execute("INSERT OR REPLACE INTO owners VALUES (?, ?, ?)", (phone, id_number.upper(), name))
        return {"phone": phone, "registered": True}

    def sim_of(self, phone: str) -> str | None:
        r = self.conn.execute("SELECT iccid FROM sims WHERE phone = ?", (phone,)).fetchone()
        return r["iccid"] if r else None

    # --- keyed writes ------------------------------------------------------------------------
    def keyed(self, op: str, args: dict) -> dict:
        """Apply ``op`` once per key; a repeat returns the first result unchanged."""
        key = args.get("key")
        if not isinstance(key, str) or not key:
            raise Refused("no_key", "writes need an idempotency key")
        plain = {k: v for k, v in args.items() if k != "key"}
        with self._tx():
            r = self.conn.execute("SELECT * FROM ops WHERE key = ?", (key,)).fetchone()
            if r is not None:
                if r["op"] != op or json.loads(r["args"]) != plain:
                    raise Refused("key_reused", f"{key} was used for another request")
                return json.loads(r["result"])
            result = getattr(self, "_" + op)(**plain)
            result["boss_ref"] = f"B{self.conn.execute('SELECT COUNT(*) FROM ops').fetchone()[0] + 1:08d}"
            self.conn.execute("INSERT INTO ops VALUES (?, ?, ?, ?, ?)", (key, op, json.dumps(plain, sort_keys=True),
                                                                       json.dumps(result, ensure_ascii=False), time.time()))
            return result

    @staticmethod
    def _amount(fen: Any) -> int:
        if type(fen) is not int or fen <= 0:
            raise Refused("bad_amount", f"{fen!r}")
        return fen

    def _credit(self, phone: str, fen: int) -> dict:
        a, fen = self.account(phone), self._amount(fen)
        if a["status"] == "closed":
            raise Refused("number_closed", phone)
        balance = a["balance_fen"] + fen
        status = "active" if a["status"] == "suspended" and balance >= 0 else a["status"]
        self.conn.execute("UPDATE accounts SET balance_fen = ?, status = ? WHERE phone = ?", (balance, status, phone))
        return {"balance_fen": balance, "fen": fen}

    def _pay_bill(self, phone: str, fen: int) -> dict:
        a, left = self.account(phone), self._amount(fen)
        for r in self.conn.execute("SELECT * FROM bills WHERE phone = ? AND paid_fen < amount_fen ORDER BY month",
                                   (phone,)).fetchall():
            part = min(left, r["amount_fen"] - r["paid_fen"])
            self.conn.execute("UPDATE bills SET paid_fen = paid_fen + ? WHERE phone = ? AND month = ?",
                              (part, phone, r["month"]))
            left -= part
        balance = a["balance_fen"] + left  # overpayment stays on the account as balance
        self.conn.execute("UPDATE accounts SET balance_fen = ? WHERE phone = ?", (balance, phone))
        return {"balance_fen": balance, "fen": fen, "to_balance_fen": left}

    def _change_plan(self, phone: str, plan: str) -> dict:
        a = self.account(phone)
        if self.conn.execute("SELECT 1 FROM plans WHERE code = ?", (plan,)).fetchone() is None:
            raise Refused("no_such_plan", plan)
        if a["status"] != "active":
            raise Refused("number_not_active", a["status"])
        self.conn.execute("UPDATE accounts SET plan = ? WHERE phone = ?", (plan, phone))
        return {"plan": plan, "previous": a["plan"], "effective": "next_month"}

    def _suspend_number(self, phone: str) -> dict:
        a = self.account(phone)
        if a["status"] == "closed":
            raise Refused("number_closed", phone)
        self.conn.execute("UPDATE accounts SET status = 'suspended' WHERE phone = ?", (phone,))
        return {"status": "suspended", "previous": a["status"]}

    # --- the hall's back office (issue 14): statements, reversals, commission -------------------
    @staticmethod
    def _day_bounds(date: str) -> tuple[float, float]:
        import datetime as dt

        try:
            day = dt.date.fromisoformat(date)
        except (TypeError, ValueError):
            raise Refused("bad_date", f"{date!r} is not YYYY-MM-DD") from None
        start = (day - dt.date(1970, 1, 1)).days * 86400 - BUSINESS_TZ_S
        return start, start + 86400

    def _money_ops(self, start: float, end: float) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM ops WHERE at >= ? AND at < ? AND op IN (?, ?, ?) ORDER BY at, rowid",
                                 (start, end, *MONEY_OPS, "reverse_credit")).fetchall()
        out = []
        for r in rows:
            args, result = json.loads(r["args"]), json.loads(r["result"])
            fen = -result["fen"] if r["op"] == "reverse_credit" else args["fen"]
            out.append({"key": r["key"], "op": r["op"], "phone": args.get("phone", result.get("phone")), "fen": fen,
                        "boss_ref": result.get("boss_ref"), "at": r["at"], **({"of": args["of"]} if "of" in args else {})})
        return out

    def day_statement(self, date: str) -> dict:
        """What the BOSS recorded on one business day: every money op (credits, bill payments) and
        every reversal (negative), with its key, so the hall can match them to the kiosks' records."""
        ops = self._money_ops(*self._day_bounds(date))
        return {"date": date, "tz_offset_s": BUSINESS_TZ_S, "ops": ops, "count": len(ops),
                "total_fen": sum(o["fen"] for o in ops)}

    def _reverse_credit(self, of: str, reason: str = "") -> dict:
        r = self.conn.execute("SELECT * FROM ops WHERE key = ?", (of,)).fetchone()
        if r is None:
            raise Refused("no_such_op", f"nothing was applied with key {of}")
        if r["op"] != "credit":
            raise Refused("not_a_credit", f"{of} was a {r['op']}; only a top-up can be reversed")
        for other in self.conn.execute("SELECT args FROM ops WHERE op = 'reverse_credit'"):
            if json.loads(other["args"]).get("of") == of:
                raise Refused("already_reversed", of)
        age = time.time() - r["at"]
        if age > self.reversal_window_s:
            raise Refused("window_closed", f"{of} was applied {age / 3600:.1f} h ago; reversals close after"
                                           f" {self.reversal_window_s / 3600:g} h")
        args = json.loads(r["args"])
        a = self.account(args["phone"])
        if a["balance_fen"] < args["fen"]:
            raise Refused("balance_spent", f"the balance {a['balance_fen']} fen no longer covers {args['fen']} fen")
        balance = a["balance_fen"] - args["fen"]
        self.conn.execute("UPDATE accounts SET balance_fen = ? WHERE phone = ?", (balance, args["phone"]))
        return {"of": of, "phone": args["phone"], "fen": args["fen"], "balance_fen": balance}

    def _month_bounds(self, month: str) -> tuple[float, float]:
        if not isinstance(month, str) or len(month) != 7 or month[4] != "-":
            raise Refused("bad_month", f"{month!r} is not YYYY-MM")
        year, mon = month.split("-")
        nxt = f"{int(year) + (mon == '12'):04d}-{1 if mon == '12' else int(mon) + 1:02d}-01"
        return self._day_bounds(f"{month}-01")[0], self._day_bounds(nxt)[0]

    def _commission_fen(self, start: float, end: float) -> tuple[list[dict], int]:
        """Commission per op, rounded down per op (a reversal takes back what its credit earned), so
        any split into months adds up to the whole."""
        lines = {op: {"op": op, "count": 0, "fen": 0, "rate_bp": COMMISSION_BP[op], "commission_fen": 0}
                 for op in MONEY_OPS}
        for o in self._money_ops(start, end):
            line = lines["credit" if o["op"] == "reverse_credit" else o["op"]]
            line["count"] += o["fen"] > 0
            line["fen"] += o["fen"]
            earned = abs(o["fen"]) * line["rate_bp"] // 10000
            line["commission_fen"] += earned if o["fen"] > 0 else -earned
        return list(lines.values()), sum(line["commission_fen"] for line in lines.values())

    def _transferred(self) -> int:
        return sum(json.loads(r["args"])["fen"] for r in
                   self.conn.execute("SELECT args FROM ops WHERE op = 'commission_transfer'"))

    def commission_statement(self, month: str) -> dict:
        """The hall's commission for one month (money ops less reversals, at COMMISSION_BP), and what
        it may still move to its wallet: everything earned up to now less what was transferred."""
        lines, earned = self._commission_fen(*self._month_bounds(month))
        _, all_earned = self._commission_fen(0, time.time() + 1)
        transferred = self._transferred()
        return {"month": month, "lines": lines, "commission_fen": earned, "earned_to_date_fen": all_earned,
                "transferred_fen": transferred, "available_fen": all_earned - transferred,
                "wallet_fen": self._wallet()}

    def _wallet(self) -> int:
        return self._transferred()  # the hall's wallet holds what was moved into it (spending it is not simulated)

    def _commission_transfer(self, fen: int) -> dict:
        fen = self._amount(fen)
        _, earned = self._commission_fen(0, time.time() + 1)
        available = earned - self._transferred()
        if fen > available:
            raise Refused("exceeds_available", f"{fen} fen asked, {available} fen available")
        return {"fen": fen, "available_fen": available - fen, "wallet_fen": self._wallet() + fen}

    # --- control -----------------------------------------------------------------------------
    def age_op(self, key: str, seconds: float) -> bool:
        """Tests: make a keyed write look `seconds` older (a reversal window passing, a day turning)."""
        return self.conn.execute("UPDATE ops SET at = at - ? WHERE key = ?", (seconds, key)).rowcount == 1

    def ledger(self) -> dict:
        ops = [{"key": r["key"], "op": r["op"], "args": json.loads(r["args"]), "result": json.loads(r["result"]),
                "at": r["at"]} for r in self.conn.execute("SELECT * FROM ops ORDER BY rowid")]
        accounts = {r["phone"]: {"balance_fen": r["balance_fen"], "status": r["status"], "plan": r["plan"],
                                 "arrears_fen": self._arrears(r["phone"])}
                    for r in self.conn.execute("SELECT * FROM accounts")}
        return {"ops": ops, "accounts": accounts}

    def last_sms_code(self, phone: str) -> str | None:
        r = self.conn.execute("SELECT code FROM sms_codes WHERE phone = ?", (phone,)).fetchone()
        return r["code"] if r else None


READS = {"check_number", "query_balance", "query_plans", "query_bill", "statement", "invoice",
         "verify_password", "send_sms_code", "verify_sms_code", "op_status",
         "list_numbers", "owner_check", "sim_card_data"}
WRITES = {"credit", "pay_bill", "change_plan", "suspend_number",
          "reserve_number", "release_number", "open_number", "replace_sim", "register_real_name"}
# the hall's back office (issue 14): halld calls these (hall/bossdesk.py), a kiosk never may
BACKOFFICE_READS = {"day_statement", "commission_statement"}
BACKOFFICE_WRITES = {"reverse_credit", "commission_transfer"}

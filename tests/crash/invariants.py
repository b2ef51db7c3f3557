"""What must hold after every kill and restart, checked against sources other than the journal.

    money in  (emulators: bills stacked + coins accepted)
  = applied   (bosssim's ledger: credits + bill payments; cards the dispenser saw taken x price)
  + paid back (the hopper emulator's own paid total)
  + vouchers  (refund records in the journal: owed to a customer with a claim code)
  + held      (money the journal holds for review)

Money held for review is money whose fate the kiosk could not learn (a bill whose stack went
unanswered, a BOSS write nobody confirmed, a payout the hopper could not account for, a card that
could not be captured). The outside world knows: each outside term must lie between the journal's
certain figure and that plus what is held for it, and in all

    applied + paid back + vouchers  <=  money in  <=  applied + paid back + vouchers + held

(no fen went out twice; every fen that came in went out, is owed, or waits for a person). Without
holds these are the equalities to the fen. And: no idempotency key applied twice at the BOSS,
every BOSS write counted by the journal or held in a review, every transaction final after
recovery, money held only in transactions finished for review, every card out of the stacker
taken or captured. Each term is also compared with the journal's own view, so a failure names the
term that drifted.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .rig import CARD_PRICE, NEW_NUMBER_FEN, Rig

BOSS_MONEY_OPS = ("credit", "pay_bill")
# the BOSS writes a journal step counts as applied (keyed by the transaction), by bosssim op
APPLIED_KINDS = {"credit": "boss_credit", "pay_bill": "boss_pay_bill", "change_plan": "boss_change_plan",
                 "suspend_number": "boss_suspend", "open_number": "boss_open_number",
                 "replace_sim": "boss_replace_sim", "register_real_name": "boss_register"}


@dataclass
class Books:
    money_in: int = 0
    applied_boss: int = 0
    applied_cards: int = 0
    paid_back: int = 0
    vouchers: int = 0
    held: int = 0
    doubled: int = 0  # BOSS writes applied twice for one transaction (at the BOSS or in the journal)
    journal: dict = field(default_factory=dict)
    txns: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return self.applied_boss + self.applied_cards

    @classmethod
    def merge(cls, books: list["Books"]) -> "Books":
        """The books of several rigs side by side, term by term (each rig balanced on its own)."""
        out = cls()
        for b in books:
            for name in ("money_in", "applied_boss", "applied_cards", "paid_back", "vouchers", "held", "doubled"):
                setattr(out, name, getattr(out, name) + getattr(b, name))
            out.journal = {k: out.journal.get(k, 0) + v for k, v in b.journal.items()}
            out.txns += b.txns
            out.problems += b.problems
        return out

    def terms(self) -> dict[str, int]:
        return {"money_in": self.money_in, "applied": self.applied, "applied_boss": self.applied_boss,
                "applied_cards": self.applied_cards, "paid_back": self.paid_back, "vouchers": self.vouchers,
                "held": self.held}


def check(rig: Rig, final_expected: bool = True) -> Books:
    b = Books()
    bus = rig.emu("cctalk", "state")
    cards = rig.emu("crt571", "state")
    ledger = rig.boss_ledger()
    b.money_in = bus["coins_accepted_fen"] + bus["bills_stacked_fen"]
    b.paid_back = bus["hopper_paid_fen"]
    b.applied_cards = cards["taken"] * CARD_PRICE
    ops = [op for op in ledger["ops"] if op["key"].startswith("K-CRASH-")]
    b.applied_boss = sum(op["args"].get("fen", 0) for op in ops if op["op"] in BOSS_MONEY_OPS)
    b.applied_boss += NEW_NUMBER_FEN * sum(op["op"] == "open_number" for op in ops)  # the price applies at opening

    with rig.journal() as j:
        money = {r["kind"]: r["fen"] for r in j.execute("SELECT kind, COALESCE(SUM(fen), 0) AS fen FROM money GROUP BY kind")}
        b.vouchers = j.execute("SELECT COALESCE(SUM(fen), 0) FROM refunds").fetchone()[0]
        b.held = money.get("held", 0)
        b.txns = Counter({r["state"]: r["n"] for r in j.execute("SELECT state, COUNT(*) AS n FROM transactions GROUP BY state")})
        hopper_fen = j.execute("SELECT COALESCE(SUM(fen), 0) FROM money WHERE source LIKE 'hopper:%'").fetchone()[0]
        card_fen = j.execute("SELECT COALESCE(SUM(fen), 0) FROM money WHERE kind = 'applied' AND source LIKE 'card:%'").fetchone()[0]
        boss_fen = j.execute("SELECT COALESCE(SUM(fen), 0) FROM money WHERE kind = 'applied' AND source LIKE 'boss:%'").fetchone()[0]
        maybe_bills = j.execute("SELECT COALESCE(SUM(fen), 0) FROM money WHERE kind = 'cash_in' AND source LIKE 'bill?:%'").fetchone()[0]
        held_by = {r["source"]: r["fen"] for r in j.execute(
            "SELECT source, SUM(fen) AS fen FROM money WHERE kind = 'held' GROUP BY source")}
        held_outside_review = j.execute(
            "SELECT COALESCE(SUM(m.fen), 0) FROM money m JOIN transactions t ON t.id = m.txn"
            " WHERE m.kind = 'held' AND t.state != 'review'").fetchone()[0]
        applied_steps = Counter()
        for r in j.execute("SELECT txn, kind, outcome FROM steps WHERE kind LIKE 'boss_%' AND outcome LIKE '%\"applied\": true%'"):
            applied_steps[(r["txn"], r["kind"])] += 1
        open_txns = [r[0] for r in j.execute("SELECT id FROM transactions WHERE state = 'open'")]
        unbalanced = [r[0] for r in j.execute(
            "SELECT txn FROM money GROUP BY txn HAVING SUM(CASE kind WHEN 'cash_in' THEN fen ELSE -fen END) != 0")]
        review_txns = {r[0] for r in j.execute("SELECT id FROM transactions WHERE state = 'review'")}
    b.journal = {"cash_in": money.get("cash_in", 0), "applied": money.get("applied", 0), "change": money.get("change", 0),
                 "refunded": money.get("refunded", 0), "held": b.held, "hopper": hopper_fen, "cards": card_fen,
                 "boss": boss_fen, "bills_unknown": maybe_bills}

    def held(*sources: str) -> int:  # "review": what a finish for review held, of any kind
        return sum(held_by.get(src, 0) for src in (*sources, "review"))

    out = b.applied + b.paid_back + b.vouchers
    if not out <= b.money_in <= out + b.held:
        b.problems.append(f"money in {b.money_in} vs applied {b.applied} + paid back {b.paid_back} + vouchers "
                          f"{b.vouchers} = {out} (+ held {b.held}) (journal: {b.journal})")
    if not b.journal["cash_in"] - maybe_bills <= b.money_in <= b.journal["cash_in"]:
        b.problems.append(f"emulators took {b.money_in} fen, the journal's cash_in is {b.journal['cash_in']} "
                          f"({maybe_bills} of it bills whose stack is unknown)")
    slack = held("payout unknown")
    if not hopper_fen <= b.paid_back <= hopper_fen + slack:
        b.problems.append(f"hopper paid {b.paid_back} fen, the journal says {hopper_fen} (+ {slack} held)")
    slack = held("capture failed", "card fate unknown")
    if not card_fen <= b.applied_cards <= card_fen + slack:
        b.problems.append(f"cards taken x price = {b.applied_cards} fen, the journal applied {card_fen} (+ {slack} held)")
    slack = held("boss unknown")
    if not boss_fen <= b.applied_boss <= boss_fen + slack:
        b.problems.append(f"bosssim applied {b.applied_boss} fen, the journal counts {boss_fen} (+ {slack} held)")
    if held_outside_review:
        b.problems.append(f"{held_outside_review} fen held in transactions not finished for review")
    # no credit applied twice: the BOSS's keys are unique by construction, so check the kiosk's side:
    # one key per transaction and kind, every BOSS write known to the journal as applied (or held).
    per_txn = Counter((op["key"].rsplit(":", 1)[0], op["op"]) for op in ops)
    twice = [k for k, n in per_txn.items() if n > 1]
    if twice:
        b.problems.append(f"BOSS writes applied more than once for one transaction: {twice}")
    for op in ops:
        txn = op["key"].rsplit(":", 1)[0]
        if op["op"] not in APPLIED_KINDS:  # holds and releases of numbers: identity_problems()
            continue
        if (txn, APPLIED_KINDS[op["op"]]) not in applied_steps and txn not in review_txns:
            b.problems.append(f"BOSS applied {op['key']} but the journal does not count it (and holds nothing)")
    doubled = [k for k, n in applied_steps.items() if n > 1]
    b.doubled = len(twice) + len(doubled)
    if doubled:
        b.problems.append(f"journal counts a BOSS write applied twice: {doubled}")
    if unbalanced:
        b.problems.append(f"transactions whose ledger does not balance: {unbalanced}")
    if final_expected and open_txns:
        b.problems.append(f"transactions still open after recovery: {open_txns}")
    if final_expected and cards["position"] == "gate":
        b.problems.append("a card is left at the gate after recovery")
    out = cards["dispensed"]
    if final_expected and out != cards["taken"] + cards["captured"]:
        b.problems.append(f"cards out of the stacker {out} != taken {cards['taken']} + captured {cards['captured']}")
    if rig.identity:
        b.problems += identity_problems(rig, ops, final_expected)
    return b


@dataclass
class HallBooks:
    """The hall's copy after the last restart drained the outbox: every finished transaction once."""

    finished: int = 0  # transactions final in the journal
    at_hall: int = 0  # rows in halld's txns table for this kiosk (its key is (kiosk, txn))
    records: int = 0  # outbox rows the journal holds; halld's records (kiosk, msg_seq) must match 1..N
    problems: list[str] = field(default_factory=list)

    @classmethod
    def merge(cls, books: list["HallBooks"]) -> "HallBooks":
        out = cls()
        for b in books:
            out.finished += b.finished
            out.at_hall += b.at_hall
            out.records += b.records
            out.problems += b.problems
        return out


def drained(rig: Rig, timeout: float = 60.0) -> None:
    """Wait until kioskd's outbox is empty: halld has committed and acked every row."""
    import time

    deadline = time.monotonic() + timeout
    while rig.api("status")["outbox"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox not drained to the hall within {timeout} s: {rig.api('status')['outbox']}")
        time.sleep(0.05)


def hall_check(rig: Rig) -> HallBooks:
    """Compare the journal with halld's database: no finished transaction missing, none twice,
    none the kiosk never finished, and halld's record sequence every msg_seq the journal's outbox
    numbered, 1..N in order."""
    import sqlite3

    h = HallBooks()
    with rig.journal() as j:
        final = {r["id"]: r["seq"] for r in j.execute("SELECT id, seq FROM transactions WHERE state != 'open'")}
        # every msg_seq the outbox ever handed out (AUTOINCREMENT): acked rows are pruned but the
        # newest max_outbox (records.prune_delivered), so the rows left are only the tail of them
        numbered = (j.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone() or [0])[0]
        out_seqs = list(range(1, numbered + 1))
    hall = sqlite3.connect(f"file:{rig.hall_db}?mode=ro", uri=True, timeout=10)
    try:
        rows = hall.execute("SELECT txn, seq, msg_seq FROM txns WHERE kiosk = 'K-CRASH'").fetchall()
        rec = [r[0] for r in hall.execute("SELECT msg_seq FROM records WHERE kiosk = 'K-CRASH' ORDER BY msg_seq")]
    finally:
        hall.close()
    h.finished, h.at_hall, h.records = len(final), len(rows), len(out_seqs)
    at_hall = Counter(txn for txn, _, _ in rows)
    missing = sorted(set(final) - set(at_hall))
    extra = sorted(set(at_hall) - set(final))
    twice = sorted(t for t, n in at_hall.items() if n > 1)
    if missing:
        h.problems.append(f"{len(missing)} finished transactions never reached the hall: {missing[:5]}")
    if extra:
        h.problems.append(f"the hall holds {len(extra)} transactions the journal did not finish: {extra[:5]}")
    if twice:
        h.problems.append(f"transactions stored twice at the hall: {twice[:5]}")
    wrong_seq = [txn for txn, seq, _ in rows if txn in final and final[txn] != seq]
    if wrong_seq:
        h.problems.append(f"per-kiosk seq differs between journal and hall: {wrong_seq[:5]}")
    if rec != out_seqs:
        h.problems.append(f"halld's records {rec[:3]}..{rec[-3:]} ({len(rec)}) are not the outbox's "
                          f"{out_seqs[:3]}..{out_seqs[-3:]} ({len(out_seqs)})")
    return h


def identity_problems(rig: Rig, ops: list[dict], final_expected: bool) -> list[str]:
    """SIMs, held numbers and personal data after recovery (issue 11's crash cases: paid but not
    written, written but not dispensed, number reserved and customer gone); with a hall, halld's
    database holds the ID text only sealed too."""
    import sqlite3
    import subprocess
    import time

    from tests.crash.customer import ID_SCENARIOS

    problems = []
    sims = rig.emu("crt571-sims", "state")
    if final_expected and sims["position"] in ("gate", "read"):
        problems.append(f"a SIM is left at the {sims['position']} after recovery")
    if final_expected and sims["dispensed"] != sims["taken"] + sims["captured"]:
        problems.append(f"SIMs off the stack {sims['dispensed']} != taken {sims['taken']} + captured {sims['captured']}")
    serviced = sum(op["op"] in ("open_number", "replace_sim") for op in ops)
    if sims["taken"] > serviced:
        problems.append(f"{sims['taken']} SIMs in customers' hands, but the BOSS opened or moved a number "
                        f"onto only {serviced}")
    conn = sqlite3.connect(f"file:{rig.work / 'boss.db'}?mode=ro", uri=True, timeout=10)
    try:
        held = conn.execute("SELECT phone, held_by FROM number_pool WHERE held_by LIKE 'K-CRASH-%'"
                            " AND held_until > ?", (time.time(),)).fetchall()
    finally:
        conn.close()
    # a hold the kiosk may not or could not give back lapses at the BOSS by itself (10 min): the
    # transaction is in review (the open's fate unknown: a person decides) or its release was asked
    # and went unanswered or refused
    with rig.journal() as j:
        lapsing = {r[0] for r in j.execute(
            "SELECT id FROM transactions WHERE state = 'review' UNION SELECT txn FROM steps WHERE kind = 'boss_release'"
            " AND closed_at IS NOT NULL AND json_extract(outcome, '$.released') IS NOT 1")}
    held = [(phone, holder) for phone, holder in held if holder not in lapsing]
    if final_expected and held:
        problems.append(f"numbers still held for customers who are gone: {held}")
    cards = [s.id_card for s in ID_SCENARIOS.values() if s.id_card is not None]
    hall = sorted(rig.work.glob("hall.db*")) if rig.hall else []  # halld keeps the records still sealed
    for path in [*sorted((rig.work / "state").rglob("*")), rig.work / "kioskd.log", rig.work / "idcard.log", *hall]:
        if path.is_file():
            # read by another process: closing a descriptor of journal.db or its -shm here would drop
            # this process's SQLite locks on it (POSIX fcntl), and the rig's next reads go stale
            data = subprocess.run(["cat", str(path)], capture_output=True, check=False).stdout
            for card in cards:
                for what, needle in (("ID number", card["id_number"]), ("name", card["name"]),
                                     ("address", card["address"])):
                    for form in {needle.encode(), needle.encode("utf-16-le"), needle.encode("unicode_escape")}:
                        if form in data:
                            problems.append(f"plaintext {what} of a customer in {path}")
    return sorted(set(problems))

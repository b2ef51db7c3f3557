"""The scripted customer: visits driven through kioskd's local API, cash through the emulators.

A visit is what a person at the screen does: answer the question shown, feed cash one piece at a
time while the acceptors take it, take the card at the gate. It never touches the kiosk while
kioskd is dead (a customer facing a dark screen walks away), and every call may find kioskd gone.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable

from hal.emulators.control import call_sync

from .rig import CARD_PRICE, KioskdDied, Rig

FIRST = "*"  # answer with the first option offered


@dataclass(frozen=True)
class Scenario:
    """``answers`` by prompt; 收下这张纸币? (accept_note) is answered "accept" unless it says otherwise."""

    name: str
    service: str
    answers: dict[str, str]
    cash: tuple[tuple[str, int], ...] = ()  # ("bill", 2000) / ("coin", 100), in this order
    take_card: bool = True
    cancel_after_cash: int = -1  # press cancel once this many pieces are in (-1: never)
    setup: Callable[[Rig, int], None] | None = field(default=None, compare=False)
    id_card: dict | None = field(default=None, compare=False)  # laid on the ID reader (identity rigs)


def _bill_due(rig: Rig, n: int) -> None:
    rig.add_boss_bill("13912345678", f"X{n:06d}", 2000)  # what is due: exactly this month's 20 yuan


# Every flow that moves money or writes to the BOSS, with its happy path and its refund paths.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("topup_change", "topup", {"enter_phone": "13800138000", "choose_amount": "1000"},
             (("bill", 2000),)),  # 10 yuan top-up paid with 20: 10 coins change
    Scenario("topup_exact", "topup", {"enter_phone": "18612345678", "choose_amount": "2000"},
             (("coin", 100), ("bill", 1000), ("bill", 500), ("coin", 100), ("coin", 100), ("coin", 100),
              ("coin", 50), ("coin", 50), ("coin", 100))),
    Scenario("topup_note_back", "topup", {"enter_phone": "13800138000", "choose_amount": "5000",
                                          "accept_note": "return"},
             (("bill", 2000),), cancel_after_cash=1),  # the note given back on the customer's word, then cancel
    Scenario("topup_cancel", "topup", {"enter_phone": "13800138000", "choose_amount": "5000"},
             (("bill", 1000), ("coin", 100)), cancel_after_cash=2),  # cancelled: 11 yuan paid back
    Scenario("card_taken", "card_sale", {"choose_card": str(CARD_PRICE)},
             (("bill", 2000), ("bill", 1000), ("coin", 100))),  # 1 coin change
    Scenario("card_not_taken", "card_sale", {"choose_card": str(CARD_PRICE)},
             (("bill", 2000), ("bill", 1000)), take_card=False),  # captured: 30 coins back
    Scenario("bill_pay", "bill_pay", {"enter_phone": "13912345678", "confirm_bill": "pay"},
             (("bill", 2000),), setup=_bill_due),
    Scenario("plan_change", "plan_change", {"enter_phone": "13800138000", "choose_plan": FIRST,
                                            "choose_confirm_method": "password", "enter_password": "123456"}),
    Scenario("loss_report", "loss_report", {"enter_phone": "15000000000", "enter_password": "000000",
                                            "confirm_suspend": "confirm"}),
)}


# -- identity (issue 11): an identity rig (Rig(identity=True)) ----------------------------------------
# Invented people; 张伟 is bosssim's registered owner of 13800138000 (ID 11010519491231002X, §3.6's sample).
OWNER_CARD = dict(name="张伟", gender="1", nation="01", birth="19491231", address="北京市西城区复兴门内大街一号",
                  id_number="11010519491231002X", authority="北京市公安局西城分局", valid_from="20200101",
                  valid_to="20400101")
BUYER_CARD = dict(OWNER_CARD, name="欧阳明月", id_number="110101199003070011", birth="19900307",
                  address="上海市黄浦区南京东路一百号")
OWNED = "13800138000"


def _number_for_sale(rig: Rig, n: int) -> None:
    """The operator keeps the pool stocked: one more number per sale (a sale takes one out)."""
    conn = sqlite3.connect(rig.work / "boss.db", timeout=10)
    try:
        conn.execute("INSERT OR IGNORE INTO number_pool VALUES (?, NULL, NULL)", (f"19{n % 10**9:09d}",))
        conn.commit()
    finally:
        conn.close()


ID_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("new_number", "new_number", {"choose_number_suffix": "any", "choose_number": FIRST,
                                          "confirm_new_number": "confirm"},
             (("bill", 1000),), setup=_number_for_sale, id_card=BUYER_CARD),
    Scenario("sim_replace", "sim_replace", {"enter_phone": OWNED, "confirm_sim_replace": "confirm"},
             id_card=OWNER_CARD),
    Scenario("real_name", "real_name", {"enter_phone": OWNED, "confirm_real_name": "confirm"}, id_card=OWNER_CARD),
    Scenario("loss_report_id", "loss_report", {"enter_phone": OWNED, "choose_identify_method": "id_card",
                                               "confirm_suspend": "confirm"}, id_card=OWNER_CARD),
)}
ALL_SCENARIOS = {**SCENARIOS, **ID_SCENARIOS}


class Visit:
    """One scripted visit; ``run()`` returns the visit's result, or raises KioskdDied.

    ``on(moment, rig)``, if given, is called at moments a fault may strike (tests/crash/faults.py):
    "bill" right after a bill went into escrow (the screen asks about it next), "accepted" right after
    the customer said 收下 (accept) to it, "paid" right after the last piece of cash went in,
    "take_card" when the screen first asks to take the card (or the SIM), and "ask:PROMPT" when
    a question is on the screen, before it is answered (the kiosk waits for the answer meanwhile).
    """

    def __init__(self, rig: Rig, scenario: Scenario, n: int, on: Callable[[str, Rig], None] | None = None) -> None:
        self.rig, self.s, self.n = rig, scenario, n
        self.fed = 0
        self.fed_fen = 0  # what this customer put in (pieces the devices took in)
        self.cancelled = False
        self.took = False
        self.on = on or (lambda moment, rig: None)
        self.asked_to_take = False
        self.asked: set[int] = set()  # questions (by n) whose "ask:" moment was given
        self.replaced_id = False

    def run(self, timeout: float = 30.0, kill_at: float | None = None) -> dict:
        """Drive the visit; ``kill_at`` (seconds after begin) SIGKILLs kioskd at that instant."""
        rig, s = self.rig, self.s
        if s.setup is not None:
            s.setup(rig, self.n)
        if s.id_card is not None:
            self._identity_setup()
        visit = rig.api("begin", service=s.service)
        started = time.monotonic()
        while True:
            now = time.monotonic() - started
            if kill_at is not None and now >= kill_at:
                rig.kill_kioskd()
                raise KioskdDied("killed at a random instant")
            if now > timeout:
                raise RuntimeError(f"{s.name}: visit did not finish in {timeout} s (screen {rig.api('screen')})")
            screen = rig.api("screen")
            if not screen["busy"] and screen["visit"] == visit and screen["last"]:
                return screen["last"]
            self._act(screen)
            time.sleep(0.01)

    def _act(self, screen: dict) -> None:
        rig, s = self.rig, self.s
        q = screen.get("question")
        answers = {"accept_note": "accept", **s.answers}
        if q and q["prompt"] in answers:
            if q["n"] not in self.asked:
                self.asked.add(q["n"])
                self.on(f"ask:{q['prompt']}", rig)
            value = answers[q["prompt"]]
            if value == FIRST:
                value = q["options"][0]
            try:
                rig.api("answer", value=value, n=q["n"])
            except KioskdDied:
                raise
            except Exception:  # the question moved on meanwhile: the next screen tells
                return
            if q["prompt"] == "accept_note" and value == "accept":
                self.on("accepted", rig)
            return
        keys = {shown["key"] for shown in screen.get("shown", [])}
        if "id_read_again" in keys and s.id_card is not None and not self.replaced_id:
            # the card slipped off mid-read: the customer lays it on the reader again
            if not rig.emu("idcard", "state")["card_present"]:
                call_sync(str(rig.emu_sock("idcard")), "place_card", **s.id_card)
            self.replaced_id = True
        if "insert_cash" in keys or "paid_so_far" in keys:
            if self.fed == s.cancel_after_cash and not self.cancelled:
                if rig.emu("cctalk", "state")["bill"]["escrow_fen"]:
                    return  # a note still waits (asked about, stacking): cancel once it is settled
                self.cancelled = True
                rig.api("cancel")
                return
            if self.fed < len(s.cash) and not self.cancelled:
                self._feed_next()
        if ("take_card" in keys or "take_sim" in keys) and not self.asked_to_take:
            self.asked_to_take = True
            self.on("take_card", rig)
        if "take_card" in keys and s.take_card and not self.took:
            if rig.emu("crt571", "state")["position"] == "gate" and rig.alive():
                rig.emu("crt571", "take_card")
                self.took = True
        if "take_sim" in keys and s.take_card and not self.took:
            if rig.emu("crt571-sims", "state")["position"] == "gate" and rig.alive():
                rig.emu("crt571-sims", "take_card")
                self.took = True

    def _identity_setup(self) -> None:
        """The customer lays the card on the reader; staff keep blank SIMs coming and the bin empty;
        the next blank SIM is the card at the contacts (the real machine moves one up per sale)."""
        rig = self.rig
        call_sync(str(rig.emu_sock("idcard")), "place_card", **self.s.id_card)  # "name" is a card field
        if rig.emu("crt571-sims", "state")["bin_full"]:
            rig.emu("crt571-sims", "empty_bin")
        rig.emu("usim", "new_card")
        # the new card is plugged in as vpcd reconnects; pcscd notices it on its next poll: the
        # kiosk may write only after that (the real dispenser moves the card up long before)
        deadline = time.monotonic() + 10
        while not rig.emu("usim", "state")["seen"]:
            if time.monotonic() > deadline:
                raise RuntimeError("pcscd did not see the new USIM within 10 s")
            time.sleep(0.02)

    def _feed_next(self) -> None:
        """One piece of cash, when the acceptor takes it (a person waits for the bezel light)."""
        rig = self.rig
        kind, fen = self.s.cash[self.fed]
        bus = rig.emu("cctalk", "state")
        if not rig.alive():
            return
        if kind == "bill":
            b = bus["bill"]
            if b["master_enabled"] and b["inhibit_mask"] and not b["escrow_fen"]:
                result = rig.emu("cctalk", "insert_bill", value=fen)
                if result in ("escrow", "stacked"):
                    self._took(fen)
                    self.on("bill", rig)
        else:
            c = bus["coin"]
            if c["master_enabled"] and c["inhibit_mask"] and c.get("accepting", True):
                result = rig.emu("cctalk", "insert_coin", value=fen)
                if result == "accepted":
                    self._took(fen)

    def _took(self, fen: int) -> None:
        self.fed += 1
        self.fed_fen += fen
        if self.fed == len(self.s.cash):
            self.on("paid", self.rig)

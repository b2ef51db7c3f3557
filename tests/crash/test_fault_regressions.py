"""A fault, then a power cut right after its unknown outcome committed (issue 15, cases 2 and 5).

kioskd is a real process on the crash rig (standalone emulators, bosssim), killed by its own
crash hook right after the commit named, restarted; recovery runs; the books are checked against
the emulators' counters and bosssim's ledger. Both failed before the fix: recovery found a
closed step and took it as settled, so a credit the BOSS applied or coins the hopper paid went
on a voucher as well.
"""
import pytest

from tests.crash.customer import SCENARIOS, Visit
from tests.crash.invariants import check
from tests.crash.rig import KioskdDied, Rig


def cut_after(rig: Rig, scenario: str, label: str) -> None:
    rig.start_kioskd(crash_at=label)
    with pytest.raises(KioskdDied):
        Visit(rig, SCENARIOS[scenario], 1).run(timeout=60)
    rig.kill_kioskd()
    rig.boss_clear()
    rig.emu("cctalk", "unsilence")
    rig.start_kioskd()  # recovery has run once it serves


def test_a_credit_applied_but_unconfirmed_then_a_cut_is_asked_for_by_key_not_refunded(tmp_path):
    with Rig(tmp_path / "rig") as rig:
        # every attempt is applied at the BOSS (once: same key) and answered too late
        rig.boss_fault(op="credit", mode="drop_reply", delay=1.5, times=3)
        cut_after(rig, "topup_change", "topup:boss_credit:outcome:1")
        books = check(rig)
        with rig.journal() as j:
            [(state,)] = j.execute("SELECT state FROM transactions").fetchall()
        rig.kill_kioskd()
    assert not books.problems, books.problems
    assert books.applied_boss == 1000 and state == "done"


def test_a_bill_payment_applied_but_unconfirmed_then_a_cut_is_asked_for_by_key(tmp_path):
    with Rig(tmp_path / "rig") as rig:
        rig.boss_fault(op="pay_bill", mode="drop_reply", delay=1.5, times=3)
        cut_after(rig, "bill_pay", "bill_pay:boss_pay_bill:outcome:1")
        books = check(rig)
        rig.kill_kioskd()
    assert not books.problems, books.problems
    assert books.applied_boss == 2000 and books.vouchers == 0


def test_a_payout_of_unknown_outcome_then_a_cut_is_asked_of_the_hopper_not_vouchered(tmp_path):
    with Rig(tmp_path / "rig") as rig:
        # the dispense is accepted, then the hopper's status replies are lost: 3 tries by the
        # driver's payout loop, 3 by the question that follows; it pays its 10 coins meanwhile
        rig.emu("cctalk", "silence", device="hopper", header=166, count=6, after_header=167)
        cut_after(rig, "topup_change", "topup:payout:outcome:1")
        books = check(rig)
        rig.kill_kioskd()
    assert not books.problems, books.problems
    assert books.paid_back == 1000 and books.vouchers == 0

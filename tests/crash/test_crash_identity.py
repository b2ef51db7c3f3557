"""kill -9 in the real-name flows (issue 11) on the forked-kioskd crash rig: 新号入网, 补换SIM卡,
实名登记 and 挂失 by ID card, with the ID reader, a SIM dispenser, real pcscd + vpcd and the
virtual USIM as standalone processes that outlive every kill (a SIM stays at the contacts or the
gate, a number stays held at bosssim).

CI kills at a sample: the crash cases the issue names — paid but not written
(``new_number:write_sim:intent``), written but not handed out (``boss_open_number:outcome``,
``dispense_sim:intent``), number reserved and the customer gone (``boss_reserve:outcome``,
``reserved:state``) — the BOSS writes asked by key at recovery, and a few random instants. Every
boundary of every identity flow: ``python bench/crash_soak.py --scenarios identity``.
After each restart the invariants hold (invariants.py: money to the fen, SIMs taken or captured and
none left in the machine, no number held for a customer who is gone, no plaintext ID text in the
data directory or the logs).
"""
from __future__ import annotations

import json
import urllib.request

import pytest

from tests.crash.customer import ID_SCENARIOS, OWNER_CARD
from tests.crash.invariants import check
from tests.crash.rig import Rig
from tests.crash.soak import run_parallel

SAMPLE = ("new_number:boss_reserve:outcome", "new_number:reserved:state", "new_number:stacked:state",
          "new_number:write_sim:intent", "new_number:boss_open_number:intent", "new_number:boss_open_number:outcome",
          "new_number:dispense_sim:intent", "sim_replace:write_sim:intent", "sim_replace:boss_replace_sim:intent",
          "sim_replace:boss_replace_sim:outcome", "real_name:boss_register:intent", "loss_report:identified:state",
          "loss_report:boss_suspend:intent")
RIGS = 2
KILLS = 24  # 12 per rig: the sample splits 4 / 9 between the rigs by label; the rest are random instants


@pytest.mark.timeout(1000)  # above run_parallel's own 900 s: pyproject's 300 s cut it at load ~10
def test_kill_in_the_identity_flows_at_the_named_crash_cases_and_the_books_hold(tmp_path):
    # each rig kills at its share of the sample (split by label), then at random instants
    report = run_parallel(tmp_path, KILLS, seed=20261204, workers=RIGS, timeout=900,
                          scenarios=tuple(ID_SCENARIOS), only=SAMPLE)
    assert not report.missed, f"visits that never passed their boundary: {report.missed}"
    assert report.boundary_kills == report.boundary_jobs == len(SAMPLE)
    assert set(report.per_step) >= set(SAMPLE)
    assert report.random_kills >= RIGS
    books = report.books
    assert books is not None and not books.problems
    assert books.money_in > 0 and books.applied_boss > 0 and books.vouchers > 0  # sold, and refunded after a cut
    assert books.txns.get("open", 0) == 0


def test_the_identity_invariants_see_a_number_held_for_nobody_and_plaintext_in_the_log(tmp_path):
    """A check that cannot fail is no check: a number held at bosssim under a transaction the kiosk
    never finished, and the customer's ID number written into kioskd's log, must both break it."""
    with Rig(tmp_path / "rig", identity=True) as rig:
        rig.start_kioskd()
        assert not check(rig).problems
        body = json.dumps({"phone": "13512340008", "holder": "K-CRASH-999-1", "key": "K-CRASH-999-1:reserve"}).encode()
        req = urllib.request.Request(rig.boss_url + "/boss/v1/reserve_number", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["ok"]
        with open(rig.work / "kioskd.log", "a") as log:
            log.write(f"customer {OWNER_CARD['id_number']}\n")
        problems = " ".join(check(rig).problems)
        rig.kill_kioskd()
    assert "numbers still held for customers who are gone: [('13512340008', 'K-CRASH-999-1')]" in problems
    assert "plaintext ID number of a customer" in problems and "kioskd.log" in problems

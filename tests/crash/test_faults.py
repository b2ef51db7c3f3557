"""Every flow meets every device and BOSS fault its steps can meet, then a kill at a sample of the
journalled boundaries of the fault path, and a second cut in the recovery after it; after each
restart the books hold (tests/crash/faults.py, invariants.py).

CI runs every fault (its whole path once without a kill, which is also how the path is traced),
a seeded kill point per fault and a seeded second cut per kill; ``python bench/crash_soak.py
--faults`` runs the full product. The pairs covered per flow are printed with the test's outcome.
"""
import pytest

from tests.crash.faults import FAULTS, run_faults

SEED = 20261204
KILLS_PER_FAULT = 1
SECOND_CUTS_PER_KILL = 1


@pytest.mark.timeout(1600)  # the run's own limit is 1500 s; pyproject's 300 s default cut it at load ~15
def test_every_fault_of_every_flow_then_a_kill_on_its_path_keeps_the_books(tmp_path, capsys):
    report = run_faults(tmp_path, per_fault=KILLS_PER_FAULT, seed=SEED, workers=2, timeout=1500,
                        recovery_kills=SECOND_CUTS_PER_KILL)
    with capsys.disabled():
        print("\n" + "\n".join(report.lines()))
    flows = {f.flow for f in FAULTS}
    assert set(report.faults) == flows and sum(report.faults.values()) == len(FAULTS)
    assert {f.kind for f in FAULTS} == {"no_reply", "late_reply", "jam", "error", "partial", "applied_timeout"}
    # every fault reached its step (its traced path starts there) and was killed on that path
    assert len(report.paths) == len(FAULTS) and all(report.paths.values())
    assert sum(report.pairs.values()) == len(FAULTS) * (1 + KILLS_PER_FAULT)
    assert sum(report.kills.values()) >= len(FAULTS) * KILLS_PER_FAULT - 3, report.missed
    assert sum(report.recovery_kills.values()) >= sum(report.second_pairs.values()) - 3, report.missed
    assert sum(report.second_pairs.values()) >= 10  # kills that leave recovery something to do

"""Every flow meets every device and BOSS fault its steps can meet, then a kill at a sample of the
journalled boundaries of the fault path; after each restart the books hold (tests/crash/faults.py).

CI runs every fault (its whole path once without a kill, which is also how the path is traced)
plus a seeded sample of kill points per fault; ``bench/crash_soak.py --faults`` runs the full
product. The numbers of (fault, kill point) pairs per flow are printed (``-s`` shows them).
"""
from tests.crash.faults import FAULTS, run_faults

SEED = 20261204
KILLS_PER_FAULT = 1  # the full product is bench/crash_soak.py --faults (about 12 per fault)


def test_every_fault_of_every_flow_then_a_kill_on_its_path_keeps_the_books(tmp_path):
    report = run_faults(tmp_path, per_fault=KILLS_PER_FAULT, seed=SEED, workers=2, timeout=1200)
    print("\n" + "\n".join(report.lines()))
    flows = {f.flow for f in FAULTS}
    assert set(report.faults) == flows and sum(report.faults.values()) == len(FAULTS)
    # every fault reached its step (its traced path starts there) and was killed on that path
    assert len(report.paths) == len(FAULTS) and all(report.paths.values())
    assert sum(report.pairs.values()) == len(FAULTS) * (1 + KILLS_PER_FAULT)
    assert sum(report.kills.values()) >= len(FAULTS) * KILLS_PER_FAULT - 3, report.missed
    kinds = {f.kind for f in FAULTS}
    assert kinds == {"no_reply", "late_reply", "jam", "error", "partial", "applied_timeout"}

"""Crash soak: SIGKILL kioskd N times (every step boundary of every flow, then random instants).

    python bench/crash_soak.py --kills 10000 [--seed 1] [--workers 4] [--boundary-rounds 1] [--workdir DIR]
    python bench/crash_soak.py --faults [--per-fault N] [--second-cuts N] [--workers 2] [--workdir DIR]
    python bench/crash_soak.py --scenarios identity --kills 300   # the real-name flows (issue 11)

Prints the kills done (boundary / random / during recovery), per-flow and per-step counts, the
transactions by final state, the fen totals of every invariant term, kioskd start-up time, and
the wall time. Stops at the first broken invariant with what broke (exit 1). The rig and the
checks are tests/crash's (rig.py, invariants.py, soak.py); the CI test runs the same with ~210.

``--scenarios``: which visits (tests/crash/customer.py): ``money`` (the default: the cash and BOSS
flows), ``identity`` (新号入网, 补换SIM卡, 实名登记, 挂失 by ID card on a rig with the ID reader, a
SIM dispenser, pcscd + vpcd and the virtual USIM), or scenario names separated by commas.
tests/crash/test_crash_identity.py runs a sample of the identity boundaries in CI.

``--faults``: every device and BOSS fault of every flow (tests/crash/faults.py), each followed by a
kill at every journalled boundary of its fault path, and each kill by a second cut at every
boundary of the recovery after it (the full product; ``--per-fault N`` / ``--second-cuts N`` sample,
as CI does with 1 and 1); prints the (fault, kill point) pairs covered per flow.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash.faults import run_faults  # noqa: E402
from tests.crash.customer import ALL_SCENARIOS, ID_SCENARIOS, SCENARIOS  # noqa: E402
from tests.crash.rig import Rig  # noqa: E402
from tests.crash.soak import InvariantBroken, Report, run_parallel  # noqa: E402


def start_baseline(work: Path, n: int = 5) -> tuple[float, float]:
    """Mean spawn-to-ready of kioskd forked by the rig and of a fresh ``python -m controller`` (s),
    each after one start not counted (the rig's one-time preload; the page cache for the fresh one)."""
    times = {}
    with Rig(work) as rig:
        for fork in (True, False):
            rig.fork = fork
            rig.start_kioskd(note="start-up baseline warm-up")
            rig.kill_kioskd()
            before_n, before_s = rig.starts, rig.start_time
            for _ in range(n):
                rig.start_kioskd(note="start-up baseline")
                rig.kill_kioskd()
            times[fork] = (rig.start_time - before_s) / (rig.starts - before_n)
    return times[True], times[False]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash_soak")
    parser.add_argument("--kills", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None,
                        help="rigs side by side (each its own emulators, bosssim, kioskd); default 4 for the kill "
                             "soak (a rig mostly waits on its devices, ~0.3 core), 2 for --faults")
    parser.add_argument("--boundary-rounds", type=int, default=1, help="passes over every boundary before random kills")
    parser.add_argument("--workdir", type=Path,
                        help="keep the rigs' files here (default: a temp dir, removed unless something broke)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-hall", dest="hall", action="store_false",
                        help="no mosquitto + halld per rig (the records then wait in the outbox; no hall check)")
    parser.add_argument("--scenarios", default="money",
                        help="money (default), identity, or scenario names separated by commas: "
                             + ", ".join(ALL_SCENARIOS))
    parser.add_argument("--faults", action="store_true", help="fault x kill-point product instead of the kill soak")
    parser.add_argument("--per-fault", type=int, default=None, help="with --faults: kill points sampled per fault")
    parser.add_argument("--second-cuts", type=int, default=None,
                        help="with --faults: recovery boundaries killed at after each kill (default: all)")
    args = parser.parse_args(argv)
    if args.faults:
        args.workers = args.workers or 2
        return faults(args)
    args.workers = args.workers or 4
    groups = {"money": tuple(SCENARIOS), "identity": tuple(ID_SCENARIOS)}
    scenarios = groups.get(args.scenarios) or tuple(args.scenarios.split(","))
    unknown = [name for name in scenarios if name not in ALL_SCENARIOS]
    if unknown:
        parser.error(f"--scenarios: unknown {unknown}; known: money, identity, {', '.join(ALL_SCENARIOS)}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crash-soak-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    status = 0
    print(f"crash soak: seed {args.seed}, kills {args.kills}, {args.workers} rigs, scenarios {', '.join(scenarios)}, "
          f"work dir {work}", flush=True)
    try:
        report = run_parallel(work, args.kills, args.seed, args.workers, args.boundary_rounds, verbose=not args.quiet,
                              timeout=48 * 3600, hall=args.hall,
                              scenarios=scenarios)
    except (InvariantBroken, RuntimeError) as exc:
        report, status = getattr(exc, "report", Report()), 1
        print(f"{'INVARIANT BROKEN' if isinstance(exc, InvariantBroken) else 'RIG FAILED'} after {report.kills} kills: {exc}")
    wall = time.monotonic() - t0
    n_boundaries = sum(len(v) for v in report.boundaries.values())
    print(f"kills: {report.kills} (boundary {report.boundary_kills} of the {report.boundary_jobs} given to the rigs, "
          f"{n_boundaries} traced x {args.boundary_rounds}; random {report.random_kills}; during recovery "
          f"{report.recovery_kills})")
    print(f"boundaries not reached in their run: {len(report.missed)} {report.missed[:5]}")
    print(f"invariant checks: {report.checks}; visits finished between kills: {report.visits_done}")
    print("kills per flow:  " + ", ".join(f"{k} {v}" for k, v in sorted(report.per_flow.items())))
    print("kills per step:")
    for step, n in sorted(report.per_step.items()):
        print(f"  {step:45s} {n}")
    if report.books is not None:
        b = report.books
        print("transactions:    " + ", ".join(f"{k} {v}" for k, v in sorted(b.txns.items())) + f" (total {sum(b.txns.values())})")
        t = b.terms()
        print(f"fen: money in {t['money_in']} = applied {t['applied']} (BOSS {t['applied_boss']} + cards "
              f"{t['applied_cards']}) + paid back {t['paid_back']} + vouchers {t['vouchers']} + held {t['held']}"
              f"  -> {'balanced' if t['money_in'] == t['applied'] + t['paid_back'] + t['vouchers'] + t['held'] else 'UNBALANCED'}")
        print(f"journal view:    {b.journal}")
        out = b.applied + b.paid_back + b.vouchers
        print(f"fen lost: {max(0, b.money_in - out - b.held)} (money in not applied, paid back, owed or held)")
        print(f"double credits: {b.doubled} (BOSS writes applied twice for one transaction, at bosssim or in the journal)")
    if report.hall is not None:
        h = report.hall
        print(f"hall: {h.finished} transactions finished in the journals, {h.at_hall} at the hall, each exactly once: "
              f"{'yes' if not h.problems and h.finished == h.at_hall else 'NO'}; {h.records} outbox records, halld's "
              f"msg_seq 1..N the same in order: {'yes' if not h.problems else 'NO: ' + '; '.join(h.problems)}")
    print(f"error-card bin: emptied {report.bin_emptied} times by staff; card visits that found it full: "
          f"{report.sold_out_visits}")
    print("time by phase (all rigs):  " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(report.phase_s.items())))
    if report.starts:
        print(f"kioskd starts: {report.starts}, mean spawn-to-ready {report.start_s / report.starts * 1000:.0f} ms"
              f" (recovery included)")
    print(f"wall time: {wall:.1f} s ({wall / max(report.kills, 1) * 1000:.0f} ms per kill, "
          f"{report.kills / max(wall, 1e-9) * 60:.0f} kills per minute with {args.workers} rigs)")
    if status == 0:
        forked, fresh = start_baseline(work / "baseline")
        print(f"start-up baseline (same run, idle rig, 5 each): forked {forked * 1000:.0f} ms vs python -m controller "
              f"{fresh * 1000:.0f} ms: x{fresh / forked:.1f}")
    if status:
        print(f"work dirs kept for the post-mortem: {work}/rig-N (kioskd.log, state/journal.db, boss.db, <emulator>.log)")
    elif not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return status


def faults(args: argparse.Namespace) -> int:
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crash-faults-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    what = "every kill point" if args.per_fault is None else f"{args.per_fault} kill point(s) per fault"
    print(f"fault soak: {what}, seed {args.seed}, {args.workers} rigs, work dir {work}", flush=True)
    status = 0
    try:
        report = run_faults(work, args.per_fault, args.seed, args.workers, verbose=not args.quiet,
                            recovery_kills=args.second_cuts)
    except (InvariantBroken, RuntimeError) as exc:
        report, status = getattr(exc, "report", None), 1
        print(f"{'INVARIANT BROKEN' if isinstance(exc, InvariantBroken) else 'RIG FAILED'}: {exc}")
    if report is not None:
        print("\n".join(report.lines()))
        if report.missed:
            print("visits that ended before their kill point:", ", ".join(report.missed[:10]))
        runs = sum(report.pairs.values()) + sum(report.second_pairs.values())
        print(f"wall time: {report.wall_s:.1f} s ({report.wall_s / max(runs, 1):.1f} s per pair with {args.workers} rigs)")
    if status:
        print(f"work dirs kept for the post-mortem: {work}/faults-N")
    elif not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

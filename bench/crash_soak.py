"""Crash soak: SIGKILL kioskd N times (every step boundary of every flow, then random instants).

    python bench/crash_soak.py --kills 2000 [--seed 1] [--boundary-rounds 1] [--workdir DIR]

Prints the kills done (boundary / random / during recovery), per-flow and per-step counts, the
transactions by final state, the fen totals of every invariant term, kioskd start-up time, and
the wall time. Stops at the first broken invariant with what broke (exit 1). The rig and the
checks are tests/crash's (rig.py, invariants.py, soak.py); the CI test runs the same with ~210.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash.rig import Rig  # noqa: E402
from tests.crash.soak import InvariantBroken, Soak, trace  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash_soak")
    parser.add_argument("--kills", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--boundary-rounds", type=int, default=1, help="passes over every boundary before random kills")
    parser.add_argument("--workdir", type=Path, help="keep the rig's files here (default: a temp dir, removed)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crash-soak-"))
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.monotonic()
    status = 0
    with Rig(work) as rig:
        boundaries = trace(rig, work)
        soak = Soak(rig, seed=args.seed,
                    log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)))
        try:
            report = soak.run(args.kills, boundaries, args.boundary_rounds)
        except InvariantBroken as exc:
            report, status = soak.report, 1
            print(f"INVARIANT BROKEN after {report.kills} kills: {exc}")
    wall = time.monotonic() - t0
    n_boundaries = sum(len(v) for v in boundaries.values())
    print(f"kills: {report.kills} (boundary {report.boundary_kills} of {n_boundaries} traced boundaries"
          f" x {args.boundary_rounds}, random {report.random_kills}, during recovery {report.recovery_kills})")
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
    if report.starts:
        print(f"kioskd starts: {report.starts}, mean spawn-to-ready {report.start_s / report.starts * 1000:.0f} ms"
              f" (recovery included)")
    print(f"wall time: {wall:.1f} s ({wall / max(report.kills, 1) * 1000:.0f} ms per kill)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

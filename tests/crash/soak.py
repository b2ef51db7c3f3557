"""Kill kioskd at every step boundary of every flow and at random instants; check the books each time.

1. Trace: each scenario runs once with KIOSKD_CRASH_TRACE, listing the journalled boundaries its
   visit passes (``topup:stack_bill:intent:1``, ``card_sale:at_gate:state:1``, ...).
2. Boundary kills: for each listed boundary, kioskd starts with KIOSKD_CRASH_AT set to it, the
   scenario's customer comes, and kioskd SIGKILLs itself right after that commit.
3. Random kills: kioskd starts clean, a customer comes, and the rig SIGKILLs kioskd at a random
   instant of the visit. Now and then the restart itself is killed during recovery.
After every kill kioskd restarts (recovery runs before it serves) and ``invariants.check`` runs.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import invariants
from .customer import SCENARIOS, Visit
from .rig import KioskdDied, Rig


class InvariantBroken(AssertionError):
    pass


@dataclass
class Report:
    kills: int = 0
    boundary_kills: int = 0
    random_kills: int = 0
    recovery_kills: int = 0
    missed: list[str] = field(default_factory=list)  # boundaries a run did not reach (timing)
    per_flow: Counter = field(default_factory=Counter)
    per_step: Counter = field(default_factory=Counter)
    visits_done: int = 0
    boundaries: dict[str, list[str]] = field(default_factory=dict)
    books: invariants.Books | None = None
    checks: int = 0
    wall_s: float = 0.0
    starts: int = 0
    start_s: float = 0.0


def trace(rig: Rig, work: Path) -> dict[str, list[str]]:
    """The boundaries each scenario's visit passes, in order, as KIOSKD_CRASH_AT labels."""
    out = {}
    for i, (name, scenario) in enumerate(SCENARIOS.items()):
        path = work / f"trace-{name}.txt"
        path.unlink(missing_ok=True)
        rig.start_kioskd(trace=path)
        Visit(rig, scenario, 900000 + i).run()
        rig.kill_kioskd()
        labels = [line.strip() for line in path.read_text().splitlines()]
        out[name] = [label for label in labels if not label.startswith("recovery:")]
    return out


class Soak:
    def __init__(self, rig: Rig, seed: int = 1, log=None) -> None:
        self.rig = rig
        self.rng = random.Random(seed)
        self.report = Report()
        self.visit_n = 0
        self.log = log or (lambda msg: None)
        self.durations: dict[str, float] = {}

    def check(self) -> None:
        books = invariants.check(self.rig)
        self.report.books = books
        self.report.checks += 1
        if books.problems:
            raise InvariantBroken("; ".join(books.problems))

    def _start(self, crash_at: str = "") -> None:
        """Start kioskd (recovery runs); a start killed during recovery is restarted."""
        while True:
            try:
                self.rig.start_kioskd(crash_at=crash_at)
                return
            except KioskdDied:
                if not crash_at.startswith("recovery:"):
                    raise
                self.report.kills += 1
                self.report.recovery_kills += 1
                self.report.per_step[crash_at.rsplit(":", 1)[0]] += 1
                crash_at = ""

    def visit(self, name: str, crash_at: str = "", kill_at: float | None = None) -> bool:
        """One customer; returns True if kioskd died during the visit."""
        self.visit_n += 1
        started = time.monotonic()
        try:
            Visit(self.rig, SCENARIOS[name], self.visit_n).run(kill_at=kill_at)
        except KioskdDied:
            self.rig.wait_dead(5)
            self.rig.kill_kioskd()
            return True
        self.durations[name] = max(self.durations.get(name, 0.0), time.monotonic() - started)
        self.report.visits_done += 1
        if crash_at:
            # the visit ended before the boundary (a path that depends on timing): kill it idle
            if self.rig.wait_dead(0.3):
                self.rig.kill_kioskd()
                return True
            self.report.missed.append(f"{name}/{crash_at}")
        return False

    def boundary_kill(self, name: str, label: str) -> None:
        recovery_label = ""
        self._start(crash_at=label)
        self.check()
        if self.visit(name, crash_at=label):
            self.report.kills += 1
            self.report.boundary_kills += 1
            self.report.per_flow[SCENARIOS[name].service] += 1
            self.report.per_step[label.rsplit(":", 1)[0]] += 1
        else:
            self.rig.kill_kioskd()
        del recovery_label

    def random_kill(self, name: str) -> None:
        # now and then the restart itself dies during recovery (a second power cut)
        crash_at = self.rng.choice(RECOVERY_LABELS) if self.rng.random() < 0.15 else ""
        self._start(crash_at=crash_at)
        self.check()
        kill_at = self.rng.uniform(0.0, self.durations.get(name, 2.0))
        if self.visit(name, kill_at=kill_at):
            self.report.kills += 1
            self.report.random_kills += 1
            self.report.per_flow[SCENARIOS[name].service] += 1
            self.report.per_step["random"] += 1
        else:
            self.rig.kill_kioskd()

    def run(self, kills: int, boundaries: dict[str, list[str]], rounds_of_boundaries: int = 1) -> Report:
        t0 = time.monotonic()
        self.report.boundaries = boundaries
        jobs = [(name, label) for name, labels in boundaries.items() for label in labels]
        for _ in range(rounds_of_boundaries):
            for name, label in jobs:
                if self.report.kills >= kills:
                    break
                self.boundary_kill(name, label)
                self.log(f"kills {self.report.kills}: {name} at {label}")
        names = list(SCENARIOS)
        while self.report.kills < kills:
            name = self.rng.choice(names)
            self.random_kill(name)
            self.log(f"kills {self.report.kills}: {name} at random")
        self._start()
        self.check()
        self.rig.kill_kioskd()
        self.report.wall_s = time.monotonic() - t0
        self.report.starts, self.report.start_s = self.rig.starts, self.rig.start_time
        return self.report


RECOVERY_LABELS = [f"recovery:{kind}:resolved:1" for kind in
                   ("stack_bill", "payout", "boss_credit", "boss_pay_bill", "dispense_card", "capture_card", "print")] + \
                  ["recovery:voucher:commit:1"]

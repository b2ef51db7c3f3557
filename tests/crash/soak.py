"""Kill kioskd at every step boundary of every flow and at random instants; check the books each time.

1. Trace: each scenario runs once with KIOSKD_CRASH_TRACE, listing the journalled boundaries its
   visit passes (``topup:stack_bill:intent:1``, ``card_sale:at_gate:state:1``, ...).
2. Boundary kills: for each listed boundary, kioskd starts with KIOSKD_CRASH_AT set to it, the
   scenario's customer comes, and kioskd SIGKILLs itself right after that commit.
3. Random kills: kioskd starts clean, a customer comes, and the rig SIGKILLs kioskd at a random
   instant of the visit. Now and then the restart itself is killed during recovery.
After every kill kioskd restarts (recovery runs before it serves) and ``invariants.check`` runs.
A broken invariant names the kill before it (visit, scenario, boundary label or instant) and the
kioskd start whose recovery is to blame, so ``kioskd.log`` in the kept work dir can be read at the
right ``--- kioskd start #N`` line.
"""
from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import invariants
from .customer import ALL_SCENARIOS, SCENARIOS, Scenario, Visit
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
    phase_s: Counter = field(default_factory=Counter)  # seconds spent starting, checking, visiting
    bin_emptied: int = 0  # the technician emptied a full error-card bin
    sold_out_visits: int = 0  # card visits that found the bin full (no card offered)
    history: list[str] = field(default_factory=list)  # what happened last, newest last
    boundary_jobs: int = 0  # boundary kills this run was given (its share of the traced boundaries)
    workers: int = 1
    hall: invariants.HallBooks | None = None  # with a hall: its copy after the last drain

    @classmethod
    def merge(cls, reports: list["Report"]) -> "Report":
        """One report for several rigs run side by side (sums; books summed term by term)."""
        out = cls(workers=len(reports))
        for r in reports:
            for name in ("kills", "boundary_kills", "random_kills", "recovery_kills", "visits_done", "checks",
                         "starts", "bin_emptied", "sold_out_visits", "boundary_jobs"):
                setattr(out, name, getattr(out, name) + getattr(r, name))
            out.start_s += r.start_s
            out.wall_s = max(out.wall_s, r.wall_s)
            out.missed += r.missed
            out.per_flow += r.per_flow
            out.per_step += r.per_step
            out.phase_s += r.phase_s
            out.boundaries = out.boundaries or r.boundaries
            out.history += r.history
        books = [r.books for r in reports if r.books is not None]
        out.books = invariants.Books.merge(books) if books else None
        halls = [r.hall for r in reports if r.hall is not None]
        out.hall = invariants.HallBooks.merge(halls) if halls else None
        return out


def trace(rig: Rig, work: Path, scenarios: dict[str, Scenario] = SCENARIOS) -> dict[str, list[str]]:
    """The boundaries each scenario's visit passes, in order, as KIOSKD_CRASH_AT labels."""
    out = {}
    for i, (name, scenario) in enumerate(scenarios.items()):
        path = work / f"trace-{name}.txt"
        path.unlink(missing_ok=True)
        rig.start_kioskd(trace=path, note=f"trace {name}")
        Visit(rig, scenario, 900000 + i).run()
        rig.kill_kioskd()
        labels = [line.strip() for line in path.read_text().splitlines()]
        out[name] = [label for label in labels if not label.startswith("recovery:")]
    return out


class Soak:
    def __init__(self, rig: Rig, seed: int = 1, log=None, scenarios: dict[str, Scenario] = SCENARIOS) -> None:
        self.rig = rig
        self.scenarios = scenarios
        self.rng = random.Random(seed)
        self.report = Report()
        self.visit_n = 0
        self.log = log or (lambda msg: None)
        self.durations: dict[str, float] = {}

    # -- diagnosis ----------------------------------------------------------------------------
    def note(self, what: str) -> None:
        """Remember an event for the failure message (kills, restarts, visits that ended)."""
        self.report.history = [*self.report.history[-7:], what]

    def check(self) -> None:
        t0 = time.monotonic()
        books = invariants.check(self.rig)
        self.report.phase_s["check"] += time.monotonic() - t0
        self.report.books = books
        self.report.checks += 1
        if books.problems:
            raise InvariantBroken(
                "; ".join(books.problems)
                + f"\n  after kill #{self.report.kills}; last events (newest last):\n    "
                + "\n    ".join(self.report.history)
                + f"\n  work dir {self.rig.work}: kioskd.log ('--- kioskd start #N' lines), state/journal.db, boss.db")

    def check_hall(self) -> None:
        """After the last restart: the outbox drains and the hall holds every finished transaction once."""
        t0 = time.monotonic()
        invariants.drained(self.rig)
        self.report.hall = invariants.hall_check(self.rig)
        self.report.phase_s["hall"] += time.monotonic() - t0
        if self.report.hall.problems:
            raise InvariantBroken("; ".join(self.report.hall.problems)
                                  + f"\n  work dir {self.rig.work}: state/journal.db, hall.db, halld.log")

    # -- steps ----------------------------------------------------------------------------------
    def _start(self, crash_at: str = "") -> None:
        """Start kioskd (recovery runs); a start killed during recovery is restarted."""
        t0 = time.monotonic()
        try:
            while True:
                try:
                    self.rig.start_kioskd(crash_at=crash_at, note=f"before visit {self.visit_n + 1}")
                    self.note(f"kioskd start #{self.rig.starts} (recovery ran) crash_at={crash_at or '-'}")
                    return
                except KioskdDied:
                    if not crash_at.startswith("recovery:"):
                        raise
                    self.report.kills += 1
                    self.report.recovery_kills += 1
                    self.report.per_step[crash_at.rsplit(":", 1)[0]] += 1
                    self.note(f"kill #{self.report.kills}: kioskd start #{self.rig.starts + 1} killed during "
                              f"recovery at {crash_at}")
                    crash_at = ""
        finally:
            self.report.phase_s["start"] += time.monotonic() - t0

    def _staff(self, name: str, may_leave_full: bool) -> None:
        """The technician empties a full error-card bin before a card customer (mostly)."""
        if self.scenarios[name].service != "card_sale":
            return
        if self.rig.emu("crt571", "state")["bin_full"]:
            if may_leave_full and self.rng.random() < 0.3:
                self.report.sold_out_visits += 1
                self.note(f"visit {self.visit_n + 1}: the error-card bin is full and stays full (no card sold)")
                return
            self.rig.emu("crt571", "empty_bin")
            self.report.bin_emptied += 1

    def visit(self, name: str, crash_at: str = "", kill_at: float | None = None) -> bool:
        """One customer; returns True if kioskd died during the visit."""
        self.visit_n += 1
        where = f"at boundary {crash_at}" if crash_at else f"at random {kill_at:.3f} s into it" if kill_at is not None else ""
        started = time.monotonic()
        try:
            Visit(self.rig, self.scenarios[name], self.visit_n).run(kill_at=kill_at)
        except KioskdDied:
            self.rig.wait_dead(5)
            self.rig.kill_kioskd()
            self.report.phase_s["visit"] += time.monotonic() - started
            self.note(f"kill #{self.report.kills + 1}: visit {self.visit_n} ({name}) killed {where} "
                      f"(kioskd start #{self.rig.starts})")
            return True
        self.report.phase_s["visit"] += time.monotonic() - started
        self.durations[name] = max(self.durations.get(name, 0.0), time.monotonic() - started)
        self.report.visits_done += 1
        if crash_at:
            # the visit ended before the boundary (a path that depends on timing): kill it idle
            if self.rig.wait_dead(0.3):
                self.rig.kill_kioskd()
                self.note(f"kill #{self.report.kills + 1}: visit {self.visit_n} ({name}) finished, then "
                          f"kioskd died {where} (kioskd start #{self.rig.starts})")
                return True
            self.report.missed.append(f"{name}/{crash_at}")
        self.note(f"visit {self.visit_n} ({name}) finished without a kill {where}")
        return False

    def boundary_kill(self, name: str, label: str) -> None:
        self._start(crash_at=label)
        self.check()
        self._staff(name, may_leave_full=False)
        if self.visit(name, crash_at=label):
            self.report.kills += 1
            self.report.boundary_kills += 1
            self.report.per_flow[self.scenarios[name].service] += 1
            self.report.per_step[label.rsplit(":", 1)[0]] += 1
        else:
            self.rig.kill_kioskd()

    def random_kill(self, name: str) -> None:
        # now and then the restart itself dies during recovery (a second power cut), at a step
        # recovery will pass: an open intent it resolves, or the voucher it issues
        labels = self.recovery_labels()
        crash_at = self.rng.choice(labels) if labels and self.rng.random() < 0.3 else ""
        self._start(crash_at=crash_at)
        self.check()
        self._staff(name, may_leave_full=True)
        kill_at = self.rng.uniform(0.0, self.durations.get(name, 2.0))
        if self.visit(name, kill_at=kill_at):
            self.report.kills += 1
            self.report.random_kills += 1
            self.report.per_flow[self.scenarios[name].service] += 1
            self.report.per_step["random"] += 1
        else:
            self.rig.kill_kioskd()

    def recovery_labels(self) -> list[str]:
        """The recovery boundaries the next start will pass (from the open transactions left)."""
        with self.rig.journal() as j:
            kinds = {r[0] for r in j.execute("SELECT s.kind FROM steps s JOIN transactions t ON s.txn = t.id"
                                             " WHERE t.state = 'open' AND s.closed_at IS NULL")}
            states = {r[0] for r in j.execute("SELECT flow_state FROM transactions WHERE state = 'open'")}
        labels = [f"recovery:{kind}:resolved:1" for kind in sorted(kinds)]
        if states & {"dispensing", "at_gate"}:  # a card at the gate is captured, or counted as taken
            labels += ["recovery:capture_card:intent:1", "recovery:capture_card:resolved:1",
                       "recovery:card_taken:state:1"]
        if self.rig.identity and states:  # a SIM in the channel is captured, a held number released
            labels += ["recovery:capture_sim:intent:1", "recovery:capture_sim:resolved:1",
                       "recovery:boss_release:intent:1", "recovery:boss_release:resolved:1"]
        return labels + ["recovery:voucher:commit:1"] if states else labels

    def run(self, kills: int, boundaries: dict[str, list[str]], rounds_of_boundaries: int = 1,
            part: int = 0, parts: int = 1, only: tuple[str, ...] | None = None) -> Report:
        """``kills`` kills: this ``part`` of ``parts``' share of the traced boundaries (those named in
        ``only``, as ``flow:kind:moment``, if given), then random instants."""
        t0 = time.monotonic()
        self.report.boundaries = boundaries
        # a boundary belongs to one rig by its name, not its place in the list: two rigs' traces may
        # differ by a commit (cash batching is timing), which must not shift every later share
        jobs = [(name, label) for name, labels in boundaries.items() for label in labels
                if zlib.crc32(f"{name}/{label}".encode()) % parts == part
                and (only is None or label.rsplit(":", 1)[0] in only)]
        self.report.boundary_jobs = min(kills, len(jobs) * rounds_of_boundaries)
        for _ in range(rounds_of_boundaries):
            for name, label in jobs:
                if self.report.kills >= kills:
                    break
                self.boundary_kill(name, label)
                self.log(f"kills {self.report.kills}: {name} at {label}")
        names = list(self.scenarios)
        while self.report.kills < kills:
            name = self.rng.choice(names)
            self.random_kill(name)
            self.log(f"kills {self.report.kills}: {name} at random")
        self._start()
        self.check()
        if self.rig.hall:
            self.check_hall()
        self.rig.kill_kioskd()
        self.report.wall_s = time.monotonic() - t0
        self.report.starts, self.report.start_s = self.rig.starts, self.rig.start_time
        return self.report




# -- several rigs side by side ------------------------------------------------------------------
# One rig keeps a core about a third busy (the rest is waiting on devices: bills stacking, coins paid
# at 20 a second, the take timeout, recovery's payouts), so on two cores four rigs give about three
# times one rig's kills per minute (bench/crash_soak.py's default; CI runs two).
# Each worker is a forked process with its own emulators, bosssim, kioskd and work dir; it traces
# the scenarios itself and kills at its share of the boundaries (by label), then at random.

def _worker(conn, work: Path, kills: int, seed: int, part: int, parts: int, rounds: int, verbose: bool,
            hall: bool, names: tuple[str, ...], only: tuple[str, ...] | None) -> None:
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the rig's ``with`` stops its processes
    soak = None
    try:
        log = (lambda m: print(f"[rig {part}] {m}", file=sys.stderr, flush=True)) if verbose else None
        scenarios = {name: ALL_SCENARIOS[name] for name in names}
        with Rig(work, hall=hall, identity=any(s.id_card is not None for s in scenarios.values())) as rig:
            if only is None:
                boundaries = trace(rig, work, scenarios)
            else:  # a sample names its boundaries: no trace (a label no visit passes is reported missed)
                boundaries = {name: [f"{label}:1" for label in only if label.split(":", 1)[0] == s.service]
                              for name, s in scenarios.items()}
            soak = Soak(rig, seed=seed + part, log=log, scenarios=scenarios)
            report = soak.run(kills, boundaries, rounds, part, parts, only)
        conn.send(("ok", report, ""))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it there
        conn.send(("broken" if isinstance(exc, InvariantBroken) else "error",
                   soak.report if soak is not None else Report(), f"rig {part}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_parallel(work: Path, kills: int, seed: int = 1, workers: int = 2, rounds: int = 1,
                 verbose: bool = False, timeout: float = 3600.0, hall: bool = False,
                 scenarios: tuple[str, ...] = tuple(SCENARIOS), only: tuple[str, ...] | None = None) -> Report:
    """``kills`` split over ``workers`` rigs (``work``/rig-N); raises InvariantBroken with the
    first broken rig's message (its work dir is kept), RuntimeError if a rig failed otherwise.
    ``hall``: each rig has mosquitto + halld up throughout; at the end the hall's copy is checked.
    ``scenarios`` names the visits (customer.ALL_SCENARIOS); any identity one makes identity rigs.
    ``only`` restricts the boundary kills to these ``flow:kind:moment`` labels (a CI sample)."""
    import multiprocessing

    identity = any(ALL_SCENARIOS[name].id_card is not None for name in scenarios)
    # the workers fork kioskd themselves (rig.Forked). An identity rig's worker starts as a fresh
    # interpreter: libpcsclite caches its socket name on first use, and a process that already
    # talked to another pcscd (a test session's) would hand that to every kioskd it forks.
    ctx = multiprocessing.get_context("spawn" if identity else "fork")
    t0 = time.monotonic()
    procs = []
    for part in range(workers):
        share = kills // workers + (1 if part < kills % workers else 0)
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(child, work / f"rig-{part}", share, seed, part, workers, rounds,
                                                 verbose, hall, tuple(scenarios), only), name=f"crash-rig-{part}")
        proc.start()
        child.close()
        procs.append((proc, parent))
    results = []
    try:
        for proc, parent in procs:
            while not parent.poll(0.5):
                if not proc.is_alive() and not parent.poll(0):
                    raise RuntimeError(f"{proc.name} died with exit code {proc.exitcode} (work dir {work})")
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"{proc.name} did not finish within {timeout} s (work dir {work})")
            results.append(parent.recv())
            proc.join(30)
    finally:
        for proc, _ in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(30)
    report = Report.merge([r for _, r, _ in results])
    report.wall_s = time.monotonic() - t0
    broken = [msg for status, _, msg in results if status == "broken"]
    errors = [msg for status, _, msg in results if status == "error"]
    if broken or errors:
        exc = InvariantBroken if broken else RuntimeError
        failure = exc("\n".join(broken + errors))
        failure.report = report  # type: ignore[attr-defined]
        raise failure
    return report

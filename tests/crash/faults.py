"""A device or BOSS fault at a flow step, then a kill at every journalled boundary of the fault path.

The happy-path soak (soak.py) kills kioskd at every step of flows whose devices always answer.
Money went missing where a fault and a power cut meet (issue 15), so here each flow meets each
fault its steps can meet — no reply, a late reply, a jam, an error, a partial payout, a timeout
with the effect applied — through the real emulators' and bosssim's own fault commands:

1. trace: the scenario's visit runs with the fault armed and KIOSKD_CRASH_TRACE set; the
   boundaries from the faulted step on are the fault path (the pair (fault, none) is this run);
2. for each boundary of the path: the fault armed again, kioskd started with KIOSKD_CRASH_AT at
   it, the visit, the kill; the faults cleared (the device answers again, the BOSS is back),
   kioskd restarted (recovery runs), and the books checked (invariants.py), plus: the visit's
   transaction credited no more certain cash than its customer put in.

``run_faults`` covers every (fault, kill point) pair (bench/crash_soak.py --faults) or a seeded
sample of kill points per fault (the CI test), on rigs side by side, and counts pairs per flow.
"""
from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import invariants
from .customer import SCENARIOS, Visit
from .rig import KioskdDied, Rig
from .soak import InvariantBroken

Act = Callable[[Rig], None]


@dataclass(frozen=True)
class Fault:
    scenario: str  # the visit (customer.SCENARIOS) that meets the fault
    step: str  # the flow step it strikes: stack_bill, boss_credit, payout, dispense_card, ...
    kind: str  # no_reply | late_reply | jam | error | partial | applied_timeout
    when: str  # "before" the visit, or a Visit moment: "bill", "accepted", "paid", "take_card"
    act: Act = field(compare=False)
    variant: str = ""  # tells two faults of one kind at one step apart
    then: str = ""  # a second customer's scenario, served by the same kioskd when the first was not killed
    starts: tuple[str, ...] = ()  # boundary kinds that may start the fault path (default: the step)

    @property
    def name(self) -> str:
        return f"{self.scenario}/{self.step}/{self.kind}{'-' + self.variant if self.variant else ''}"

    @property
    def flow(self) -> str:
        return SCENARIOS[self.scenario].service


def _emu(name: str, cmd: str, **args) -> Act:
    return lambda rig: rig.emu(name, cmd, **args)


def _boss(op: str, mode: str, **args) -> Act:
    return lambda rig: rig.boss_fault(op=op, mode=mode, **args)


def _stack_faults(scenario: str) -> list[Fault]:
    return [
        # every reply to the route lost: stack() raises (the validator stacked it on the first)
        Fault(scenario, "stack_bill", "no_reply", "before", _emu("cctalk", "silence", device="bill", header=154, count=3)),
        # the route is ACKed, then the validator is busy past the stack timeout: a late Stacked
        Fault(scenario, "stack_bill", "late_reply", "before",
              _emu("cctalk", "silence", device="bill", seconds=3.0, after_header=154), then="topup_exact"),
        Fault(scenario, "stack_bill", "jam", "accepted", _emu("cctalk", "jam_bill", code=6)),
        Fault(scenario, "stack_bill", "error", "accepted", _emu("cctalk", "remove_stacker")),  # route failed
    ]


def _boss_faults(scenario: str, step: str, op: str) -> list[Fault]:
    return [
        Fault(scenario, step, "no_reply", "before", _boss(op, "timeout", delay=1.5, times=3)),
        Fault(scenario, step, "late_reply", "before", _boss(op, "slow", delay=1.5, times=1)),
        Fault(scenario, step, "applied_timeout", "before", _boss(op, "drop_reply", delay=1.5, times=3)),
        Fault(scenario, step, "error", "before", _boss(op, "refuse", code="system_busy")),
    ]


def _payout_faults(scenario: str) -> list[Fault]:
    return [
        # the dispense is accepted, then the status replies are lost: the payout loop and the
        # question after it both give up while the coins keep coming
        Fault(scenario, "payout", "no_reply", "before",
              _emu("cctalk", "silence", device="hopper", header=166, count=6, after_header=167)),
        # three lost: the payout loop gives up, the question after it is answered mid-payout
        Fault(scenario, "payout", "late_reply", "before",
              _emu("cctalk", "silence", device="hopper", header=166, count=3, after_header=167)),
        Fault(scenario, "payout", "applied_timeout", "before", _emu("cctalk", "silence", device="hopper", header=167, count=1)),
        Fault(scenario, "payout", "partial", "before", _emu("cctalk", "hopper_empty_after", count=3)),
        # the hopper's counter cannot be read before the payout: no payout (a voucher), or, if it
        # paid, nothing could tell its figures from the previous payout's
        Fault(scenario, "payout", "no_reply", "before", _emu("cctalk", "silence", device="hopper", header=166, count=3),
              variant="counter", starts=("payout", "voucher")),
    ]


FAULTS: list[Fault] = [
    *_stack_faults("topup_change"), *_boss_faults("topup_change", "boss_credit", "credit"),
    # the note jams while the customer is asked about it: the question ends, nothing was credited
    Fault("topup_change", "note", "jam", "bill", _emu("cctalk", "jam_bill", code=6)),
    *_payout_faults("topup_change"),
    *_stack_faults("card_taken"),
    Fault("card_taken", "dispense_card", "jam", "paid", _emu("crt571", "jam")),
    Fault("card_taken", "dispense_card", "no_reply", "paid", _emu("crt571", "mute")),
    Fault("card_not_taken", "capture_card", "error", "take_card", _emu("crt571", "set_bin", capacity=0)),  # bin full
    Fault("card_not_taken", "capture_card", "no_reply", "take_card", _emu("crt571", "mute")),
    *_payout_faults("card_not_taken"),
    *_stack_faults("bill_pay"), *_boss_faults("bill_pay", "boss_pay_bill", "pay_bill"),
    *_boss_faults("plan_change", "boss_change_plan", "change_plan"),
    *_boss_faults("loss_report", "boss_suspend", "suspend_number"),
]


def clear(rig: Rig) -> None:
    """Every fault off: the devices answer, the BOSS is back, the hopper and bin as at the start."""
    rig.boss_clear()
    for name in ("cctalk", "crt571"):
        rig.emu(name, "unmute")
    rig.emu("cctalk", "unsilence")
    rig.emu("cctalk", "clear_jam")
    rig.emu("cctalk", "replace_stacker")
    rig.emu("cctalk", "hopper_fill", count=100000)
    rig.emu("crt571", "clear_jam")
    rig.emu("crt571", "set_bin", capacity=100000)


def tidy(rig: Rig) -> None:
    """After recovery: what a person in the hall does with what a fault left (nothing of it money
    the journal has not accounted for — the checks that follow would see it otherwise)."""
    if rig.emu("crt571", "state")["position"] == "gate":  # a card held for review: someone takes it
        rig.emu("crt571", "take_card")
    if rig.emu("cctalk", "state")["bill"]["escrow_fen"]:  # the escrow timer gives it back
        rig.emu("cctalk", "power_cycle", device="bill")
    rig.emu("crt571", "empty_bin")


@dataclass
class FaultReport:
    pairs: Counter = field(default_factory=Counter)  # flow -> (fault, kill point) pairs run and checked
    kills: Counter = field(default_factory=Counter)  # flow -> of those, runs where kioskd was killed
    recovery_kills: Counter = field(default_factory=Counter)  # flow -> second cuts that hit recovery
    second_pairs: Counter = field(default_factory=Counter)  # flow -> (fault, kill, recovery kill) runs
    second_possible: Counter = field(default_factory=Counter)  # flow -> recovery boundaries after the kills run
    possible: Counter = field(default_factory=Counter)  # flow -> pairs in the full product
    faults: Counter = field(default_factory=Counter)  # flow -> faults
    paths: dict[str, list[str]] = field(default_factory=dict)  # fault name -> its traced fault path
    missed: list[str] = field(default_factory=list)  # pairs whose visit ended before the kill point
    wall_s: float = 0.0
    history: list[str] = field(default_factory=list)

    @classmethod
    def merge(cls, reports: list["FaultReport"]) -> "FaultReport":
        out = cls()
        for r in reports:
            out.pairs += r.pairs
            out.kills += r.kills
            out.recovery_kills += r.recovery_kills
            out.second_pairs += r.second_pairs
            out.second_possible += r.second_possible
            out.possible += r.possible
            out.faults += r.faults
            out.paths.update(r.paths)
            out.missed += r.missed
            out.wall_s = max(out.wall_s, r.wall_s)
            out.history += r.history
        return out

    def lines(self) -> list[str]:
        out = ["(fault, kill point) pairs per flow — a kill point is none or a journalled boundary of the fault"
               " path; a second cut is a kill point followed by a kill at a boundary of the recovery after it:"]

        def line(name: str, c: tuple) -> str:
            faults, pairs, possible, kills, seconds, second_possible, hit = c
            return (f"  {name:12s} {faults:2d} faults, {pairs:4d} of {possible:4d} pairs run ({kills} killed);"
                    f" second cuts {seconds:4d} of {second_possible:4d} traced ({hit} killed)")
        counters = (self.faults, self.pairs, self.possible, self.kills, self.second_pairs, self.second_possible,
                    self.recovery_kills)
        for flow in sorted(self.faults):
            out.append(line(flow, tuple(c[flow] for c in counters)))
        out.append(line("total", tuple(sum(c.values()) for c in counters)))
        out.append(f"  kill points a visit or a recovery ended before (timing): {len(self.missed)}")
        return out


class FaultRun:
    def __init__(self, rig: Rig, log=None) -> None:
        self.rig = rig
        self.report = FaultReport()
        self.n = 0
        self.log = log or (lambda msg: None)

    def _visit(self, fault: Fault, crash_at: str = "", trace: Path | None = None, recovery_at: str = "",
               recovery_trace: Path | None = None) -> tuple[bool, bool]:
        """Arm, start, visit, kill; clear, restart (recovery; killed at ``recovery_at`` first, if
        given, as a second power cut), check. Returns whether kioskd died in the visit, in recovery."""
        rig, self.n = self.rig, self.n + 1
        if fault.when == "before":
            fault.act(rig)
        fired = set()

        def on(moment: str, rig: Rig) -> None:
            if moment == fault.when and moment not in fired:
                fired.add(moment)
                fault.act(rig)
        rig.start_kioskd(crash_at=crash_at, trace=trace, note=f"fault {fault.name} kill at {crash_at or 'none'}")
        visit = Visit(rig, SCENARIOS[fault.scenario], 500000 + self.n, on=on)
        try:
            visit.run(timeout=60)
            died = False
            if crash_at:
                died = rig.wait_dead(0.3)
            if fault.then and not died:
                # the next customer, same kioskd: whatever the fault left queued (a late Stacked)
                # meets their intake; their transaction is the one checked below
                self._devices_answer_again(rig)
                visit = Visit(rig, SCENARIOS[fault.then], 600000 + self.n)
                visit.run(timeout=60)
        except KioskdDied:
            died = True
        rig.kill_kioskd()
        clear(rig)
        where = f"{crash_at or 'none'}{' then ' + recovery_at if recovery_at else ''}"
        died_in_recovery = False
        if recovery_at:
            try:
                rig.start_kioskd(crash_at=recovery_at, note=f"recovery after fault {fault.name} kill at {where}")
            except KioskdDied:
                died_in_recovery = True
            rig.kill_kioskd()
        rig.start_kioskd(trace=recovery_trace, note=f"recovery after fault {fault.name} kill at {where}")
        tidy(rig)
        self._check(fault, where, visit.fed_fen)
        rig.kill_kioskd()
        return died, died_in_recovery

    @staticmethod
    def _devices_answer_again(rig: Rig, timeout: float = 20.0) -> None:
        """Until no silence is armed and the validator has answered two polls since (kioskd has
        read whatever its buffer held)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            bus = rig.emu("cctalk", "state")
            if not bus["silenced"]:
                seen = bus["answered"]["bill"] if seen is None else seen
                if bus["answered"]["bill"] >= seen + 2:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"the bill validator did not answer again within {timeout} s")

    def _check(self, fault: Fault, crash_at: str, fed_fen: int) -> None:
        books = invariants.check(self.rig)
        problems = list(books.problems)
        with self.rig.journal() as j:
            row = j.execute("SELECT id, (SELECT COALESCE(SUM(fen), 0) FROM money m WHERE m.txn = t.id AND"
                            " m.kind = 'cash_in' AND m.source NOT LIKE 'bill?:%') AS sure FROM transactions t"
                            " ORDER BY boot DESC, opened_at DESC LIMIT 1").fetchone()
        if row is not None and row["sure"] > fed_fen:
            problems.append(f"{row['id']} credits {row['sure']} fen of cash, its customer put in {fed_fen}")
        self.report.history = [*self.report.history[-5:], f"{fault.name} kill at {crash_at or 'none'}"]
        if problems:
            raise InvariantBroken("; ".join(problems) + f"\n  after fault {fault.name}, kill at {crash_at or 'none'}"
                                  f"\n  work dir {self.rig.work}: kioskd.log ('--- kioskd start' lines), "
                                  "state/journal.db, boss.db")

    def trace(self, fault: Fault) -> list[str]:
        """The fault path: the boundaries the faulted visit passes from the faulted step on."""
        path = self.rig.work / f"trace-{fault.name.replace('/', '-')}.txt"
        path.unlink(missing_ok=True)
        self._visit(fault, trace=path)
        labels = [line.strip() for line in path.read_text().splitlines() if not line.startswith("recovery:")]
        kinds = fault.starts or (fault.step,)
        start = next((i for i, label in enumerate(labels) if any(f":{k}:" in label for k in kinds)), None)
        if start is None:
            raise AssertionError(f"{fault.name}: the visit never reached {fault.step} (trace {labels})")
        path = labels[start:]
        if fault.then:  # the second customer's happy path is the soak's; what the fault left is not
            second = next((i for i, label in enumerate(path) if label.split(":")[1:3] == ["begin", "open"]), len(path))
            path = path[:second] + [label for label in path[second:] if ":late_bill:" in label]
        return path

    def run(self, faults: list[Fault], per_fault: int | None, rng: random.Random,
            recovery_kills: int | None = 0) -> FaultReport:
        """``per_fault`` kill points sampled per fault (None: all); after each kill the recovery
        boundaries the restart passes are traced, and ``recovery_kills`` of them (None: all) are
        each a further pair: the same kill, then a second cut there during recovery."""
        t0 = time.monotonic()
        rtrace = self.rig.work / "trace-recovery.txt"
        for fault in faults:
            labels = self.trace(fault)
            self.report.paths[fault.name] = labels
            self.report.faults[fault.flow] += 1
            self.report.possible[fault.flow] += len(labels) + 1
            self.report.pairs[fault.flow] += 1  # (fault, none): the trace run, checked like the rest
            chosen = labels if per_fault is None else rng.sample(labels, min(per_fault, len(labels)))
            for label in chosen:
                rtrace.unlink(missing_ok=True)
                died, _ = self._visit(fault, crash_at=label, recovery_trace=rtrace)
                self.report.pairs[fault.flow] += 1
                if not died:
                    self.report.missed.append(f"{fault.name}@{label}")
                    continue
                self.report.kills[fault.flow] += 1
                self.log(f"{fault.name} kill at {label}: books hold")
                second = [r.strip() for r in rtrace.read_text().splitlines()] if rtrace.exists() else []
                self.report.second_possible[fault.flow] += len(second)
                if recovery_kills is not None:
                    second = rng.sample(second, min(recovery_kills, len(second)))
                for rlabel in second:
                    self.report.second_pairs[fault.flow] += 1
                    if self._visit(fault, crash_at=label, recovery_at=rlabel)[1]:
                        self.report.recovery_kills[fault.flow] += 1
                    else:
                        self.report.missed.append(f"{fault.name}@{label}+{rlabel}")
                    self.log(f"{fault.name} kill at {label}, then at {rlabel}: books hold")
        self.report.wall_s = time.monotonic() - t0
        return self.report


def _worker(conn, work: Path, seed: int, part: int, parts: int, per_fault: int | None, recovery_kills: int | None,
            verbose: bool) -> None:
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    fr = None
    try:
        log = (lambda m: print(f"[faults {part}] {m}", file=sys.stderr, flush=True)) if verbose else None
        mine = [f for f in FAULTS if zlib.crc32(f.name.encode()) % parts == part]
        with Rig(work) as rig:
            fr = FaultRun(rig, log)
            report = fr.run(mine, per_fault, random.Random(seed + part), recovery_kills)
        conn.send(("ok", report, ""))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("broken" if isinstance(exc, InvariantBroken) else "error",
                   fr.report if fr is not None else FaultReport(), f"rig {part}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_faults(work: Path, per_fault: int | None = None, seed: int = 1, workers: int = 2, verbose: bool = False,
               timeout: float = 7200.0, recovery_kills: int | None = None) -> FaultReport:
    """Every fault on ``workers`` rigs side by side; ``per_fault`` kill points sampled per fault and
    ``recovery_kills`` second cuts per kill (None: all of each). Raises InvariantBroken /
    RuntimeError with the report attached (``.report``)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    t0 = time.monotonic()
    procs = []
    for part in range(workers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(child, work / f"faults-{part}", seed, part, workers, per_fault, recovery_kills,
                                                         verbose),
                           name=f"fault-rig-{part}")
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
    report = FaultReport.merge([r for _, r, _ in results])
    report.wall_s = time.monotonic() - t0
    failed = [(status, msg) for status, _, msg in results if status != "ok"]
    if failed:
        exc = InvariantBroken if any(s == "broken" for s, _ in failed) else RuntimeError
        failure = exc("\n".join(msg for _, msg in failed))
        failure.report = report  # type: ignore[attr-defined]
        raise failure
    return report

"""The fault matrix: each money-moving step of each flow (the flows' step tables) x each device and
network fault. Every applicable cell runs; the others say why they do not apply.

    python -m tests.reliability.matrix --write-docs     # run every cell, rewrite docs/reliability.md's table
    python -m tests.reliability.matrix                  # run and print

The bed is the crash rig (tests/crash/rig.py: the emulators and bosssim as their own processes,
kioskd forked, reaching them over tcp://) plus the modem emulator, a Mosquitto and halld, all
started once; kioskd runs once for every cell. A cell: the fault armed through the emulator's
or bosssim's own control commands at its moment of the visit, the scripted customer's visit
(tests/crash/customer.py), the fault cleared and what it left tidied as a person in the hall would.
Then the cell must show:

- a safe state: the visit ended with its transaction final (done, refunded, cancelled, declined,
  failed or review), kioskd serving, both acceptors inhibited;
- the money accounted for: tests/crash/invariants.py against the emulators' and bosssim's own
  counters (every transaction's ledger balanced, no BOSS write applied twice, what went out of
  the hopper, the dispenser and the BOSS equals what the journal counts, vouchers and held money
  included), and no more cash credited than the customer put in;
- the hall told: the transaction's record at halld with the same final state.

"hall down" is a whole visit with halld stopped (the hall offline for every step of it), halld
started again afterwards: one visit per scenario fills that column for each step it went through.
A cell whose visit never reached its step fails: a fault that struck elsewhere proves nothing.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tests.crash import invariants
from tests.crash.customer import ID_SCENARIOS, SCENARIOS, Scenario, Visit
from tests.crash.faults import FaultRun, clear, tidy
from tests.crash.rig import Rig, _wait_line
from transactions.flows.documents import months

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fault matrix: begin (python -m tests.reliability.matrix --write-docs) -->", "<!-- fault matrix: end -->"

FAULTS = ("jam", "empty", "paper out", "cover open", "stacker removed", "no answer", "checksum noise", "slow answer",
          "card removed mid-read", "write failure", "note in escrow at power-up", "hall down", "BOSS timeout",
          "BOSS error")

Act = Callable[[Rig], None]


def emu(name: str, cmd: str, **args) -> Act:
    return lambda rig: rig.emu(name, cmd, **args)


def boss(op: str, mode: str, **args) -> Act:
    return lambda rig: rig.boss_fault(op=op, mode=mode, **args)


@dataclass(frozen=True)
class Cell:
    act: Act
    when: str = "before"  # before the visit, or a Visit moment: "bill", "paid", "take_card", "ask:PROMPT"
    how: str = ""  # what is done, for the docs
    suite: bool = True  # run by ./dev test; the others only by the full run (python -m tests.reliability.matrix)


@dataclass(frozen=True)
class Row:
    flow: str
    step: str  # the effect in the flow's table
    scenario: str  # tests/crash/customer.py
    device: str  # what the step talks to
    cells: dict[str, Cell | str] = field(default_factory=dict)  # fault -> how, or why it does not apply
    setup: Act | None = None  # before every cell of the row (what leads the visit to the step)
    setup_how: str = ""

    @property
    def bed(self) -> str:
        """The identity flows run on a bed with the ID reader, the SIM dispenser and PC/SC."""
        return "identity" if self.scenario in ID_VISITS else "cash"


NOT_PRINTER = "the printer's fault; this step does not print"
NO_BOSS = "no BOSS call at this step"
HALL = "hall down"


def _bill(flow: str, scenario: str) -> Row:
    return Row(flow, "stack_bill", scenario, "bill validator", {
        "jam": Cell(emu("cctalk", "jam_bill", code=6), "bill", "jam_bill with the note in escrow"),
        "empty": "a validator has nothing to run out of",
        "stacker removed": Cell(emu("cctalk", "remove_stacker"), "bill", "remove_stacker with the note in escrow"),
        "no answer": Cell(emu("cctalk", "silence", device="bill", header=154, count=3), how="route command unanswered x3"),
        "checksum noise": Cell(emu("cctalk", "corrupt", count=3), "bill", "next 3 bus replies with a bad checksum"),
        "slow answer": Cell(emu("cctalk", "silence", device="bill", seconds=3.0, after_header=154),
                            how="validator busy 3 s after the route (past stack_timeout)"),
        "note in escrow at power-up": Cell(emu("cctalk", "power_cycle", device="bill"), "bill",
                                           "validator power-cycled holding the note"),
    })


def _payout(flow: str, scenario: str, setup: Act | None = None, why: str = "", setup_how: str = "") -> Row:
    return Row(flow, "payout" + (f" ({why})" if why else ""), scenario, "hopper", {
        "jam": "the hopper emulator has no jam; a stalled payout is 'empty' (partial) or 'no answer'",
        "empty": Cell(emu("cctalk", "hopper_empty_after", count=3), how="hopper runs dry after 3 coins"),
        "no answer": Cell(emu("cctalk", "silence", device="hopper", header=166, count=6, after_header=167),
                          how="status polls unanswered mid-payout"),
        "checksum noise": "not run: the bus emulator cannot aim bad checksums at the payout alone "
                          "(bus noise is run at stack_bill)",
        "slow answer": Cell(emu("cctalk", "silence", device="hopper", header=166, count=3, after_header=167),
                            how="3 status polls lost, answered after"),
    }, setup, setup_how)


def _boss(flow: str, step: str, scenario: str, op: str) -> Row:
    return Row(flow, step, scenario, "BOSS", {
        "no answer": "the BOSS's no answer is the 'BOSS timeout' column",
        "checksum noise": "HTTP/TCP: no checksum errors reach the flow",
        "slow answer": Cell(boss(op, "slow", delay=0.7, times=1), how="answer after 0.7 s (timeout 1 s)"),
        "BOSS timeout": Cell(boss(op, "timeout", delay=1.5, times=3), how="3 attempts time out"),
        "BOSS error": Cell(boss(op, "refuse", code="system_busy"), how="refused: system_busy"),
    })


def _dispense() -> Row:
    return Row("card_sale", "dispense_card", "card_taken", "card dispenser", {
        "jam": Cell(emu("crt571", "jam"), "paid", "jam"),
        "empty": Cell(emu("crt571", "set_stock", count=0), "paid", "stack emptied after payment"),
        "no answer": Cell(emu("crt571", "mute"), "paid", "mute"),
        "checksum noise": Cell(emu("crt571", "corrupt", count=2), "paid", "next 2 replies with a bad BCC"),
        "slow answer": "the CRT-571 emulator has no delayed answer (its no answer is run)",
    })


def _capture() -> Row:
    return Row("card_sale", "capture_card", "card_not_taken", "card dispenser", {
        "jam": Cell(emu("crt571", "jam"), "take_card", "jam while the card waits at the gate"),
        "empty": Cell(emu("crt571", "set_bin", capacity=0), "take_card", "error-card bin full"),
        "no answer": Cell(emu("crt571", "mute"), "take_card", "mute"),
        "checksum noise": Cell(emu("crt571", "corrupt", count=2), "take_card", "next 2 replies with a bad BCC"),
        "slow answer": "the CRT-571 emulator has no delayed answer (its no answer is run)",
    })


def _print(flow: str, scenario: str) -> Row:
    # The statement and the invoice only print: the menu asks the printer first (transactions.flows.READY)
    # and a printer that cannot print greys their tile. The fault strikes once the customer is in.
    when = "ask:choose_month" if flow in ("statement", "invoice") else "before"
    return Row(flow, "print", scenario, "printer", {
        "jam": Cell(emu("escpos", "cutter_error", after_bytes=40), when, how="cutter jams once the job is coming in"),
        "empty": "the printer's empty is 'paper out'",
        "paper out": Cell(emu("escpos", "paper_out", after_bytes=40), when, how="paper runs out once the job is coming in"),
        "cover open": Cell(emu("escpos", "open_cover", after_bytes=40), when, how="cover opened once the job is coming in"),
        "no answer": Cell(emu("escpos", "mute"), when, how="mute"),
        "checksum noise": Cell(emu("escpos", "corrupt", count=4), when, how="next 4 status bytes corrupted"),
        "slow answer": "the ESC/POS emulator has no delayed answer (its no answer is run)",
    })


def _sms(flow: str, scenario: str) -> Row:
    return Row(flow, "sms", scenario, "modem", {
        "jam": "a modem does not jam",
        "empty": "a modem has nothing to run out of",
        "no answer": Cell(emu("modem", "mute"), how="mute"),
        "checksum noise": Cell(emu("modem", "corrupt", count=3), how="next 3 replies garbled (AT has no checksum)"),
        "slow answer": "the modem emulator has no delayed answer (its no answer is run)",
    })


def full_run(row: Row, keep: tuple[str, ...] = ()) -> Row:
    """``row`` with its cells outside ``keep`` in the full run only (./dev test's time is bounded)."""
    cells = {f: replace(c, suite=False) if isinstance(c, Cell) and f not in keep else c for f, c in row.cells.items()}
    return replace(row, cells=cells)


# -- the identity flows (ID reader, SIM dispenser, PC/SC SIM writer) --------------------------------

def _identify(flow: str, scenario: str) -> Row:
    return Row(flow, "identify", scenario, "ID reader", {
        "no answer": Cell(emu("idcard", "mute"), how="mute: no reply to find, select or read"),
        "checksum noise": Cell(emu("idcard", "corrupt", count=2), how="next 2 replies with a bad checksum"),
        "slow answer": "the ID reader emulator has no delayed answer (its no answer is run)",
        "card removed mid-read": Cell(emu("idcard", "fail_next_read"),
                                      how="the card is pulled away during the read (SW3 41); the customer lays it again"),
    })


def _sim_move(flow: str, scenario: str, when: str) -> Row:
    return Row(flow, "sim_to_reader", scenario, "SIM dispenser", {
        "jam": Cell(emu("crt571-sims", "jam"), when, "jam before the blank SIM leaves the stack"),
        "empty": Cell(emu("crt571-sims", "set_stock", count=0), when, "SIM stack emptied"),
        "no answer": Cell(emu("crt571-sims", "mute"), when, "mute"),
        "checksum noise": Cell(emu("crt571-sims", "corrupt", count=2), when, "next 2 replies with a bad BCC"),
        "slow answer": "the CRT-571 emulator has no delayed answer (its no answer is run)",
    })


def _sim_write(flow: str, scenario: str, when: str) -> Row:
    return Row(flow, "write_sim", scenario, "SIM writer", {
        "no answer": Cell(emu("usim", "remove_card"), when, "no card at the contacts (PC/SC: the card is gone)"),
        "checksum noise": "PC/SC: the reader's link checks its own frames; no checksum errors reach the writer",
        "slow answer": "the virtual USIM has no delayed answer (its no answer is run)",
        "write failure": Cell(emu("usim", "stuck", fid="6F07"), when,
                              "EF_IMSI answers 9000 to the update but keeps its old bytes (the read-back differs)"),
        "BOSS timeout": Cell(boss("sim_card_data", "timeout", delay=1.5, times=3), when,
                             "the BOSS's card data (IMSI, keys): 3 attempts time out"),
        "BOSS error": Cell(boss("sim_card_data", "refuse", code="system_busy"), when,
                           "the BOSS's card data refused: system_busy"),
    })


def _sim_out(flow: str, scenario: str) -> Row:
    return Row(flow, "dispense_sim", scenario, "SIM dispenser", {
        "jam": Cell(emu("crt571-sims", "jam", at="gate"), how="the written SIM jams on its way to the gate"),
        "empty": "the SIM is already out of the stack at this step",
        "no answer": "not run: no moment between the write and the move to the gate to aim it at "
                     "(the jam on the way to the gate is run)",
        "checksum noise": "not run: no moment between the write and the move to the gate to aim it at "
                          "(the jam on the way to the gate is run)",
        "slow answer": "the CRT-571 emulator has no delayed answer (its no answer is run)",
    })


def _sim_capture(flow: str, scenario: str) -> Row:
    return Row(flow, "capture_sim", scenario, "SIM dispenser", {
        "jam": Cell(emu("crt571-sims", "jam"), "take_card", "jam while the SIM waits at the gate"),
        "empty": Cell(emu("crt571-sims", "set_bin", capacity=0), "take_card", "bin full"),
        "no answer": Cell(emu("crt571-sims", "mute"), "take_card", "mute"),
        "checksum noise": Cell(emu("crt571-sims", "corrupt", count=2), "take_card", "next 2 replies with a bad BCC"),
        "slow answer": "the CRT-571 emulator has no delayed answer (its no answer is run)",
    })


# The flows that only print (no money moves): a visit each, to their receipt.
_VERIFIED = {"enter_phone": "13800138000", "enter_password": "123456"}
VISITS: dict[str, Scenario] = {**SCENARIOS, **{s.name: s for s in (
    Scenario("balance_printed", "balance_query", {**_VERIFIED, "print_or_done": "print"}),
    # the last full month, which the kiosk offers first and bosssim bills (bosssim.state.seed_bills)
    Scenario("statement", "statement", {**_VERIFIED, "choose_month": months(time.time())[0]}),
    Scenario("invoice", "invoice", {**_VERIFIED, "choose_month": months(time.time())[0]}),
)}}
ID_VISITS: dict[str, Scenario] = {**ID_SCENARIOS, **{s.name: s for s in (
    replace(ID_SCENARIOS["new_number"], name="new_number_left", take_card=False),  # the SIM left at the gate
    replace(ID_SCENARIOS["sim_replace"], name="sim_replace_left", take_card=False),
)}}
VISITS.update(ID_VISITS)

_BILL_PAY_REFUSED = boss("pay_bill", "refuse", code="system_busy")

ROWS: list[Row] = [
    _bill("topup", "topup_change"), _boss("topup", "boss_credit", "topup_change", "credit"),
    _payout("topup", "topup_change"), _print("topup", "topup_change"), _sms("topup", "topup_change"),
    _bill("card_sale", "card_taken"), _dispense(), _capture(), _payout("card_sale", "card_not_taken", why="card left"),
    _print("card_sale", "card_taken"),
    _bill("bill_pay", "bill_pay"), _boss("bill_pay", "boss_pay_bill", "bill_pay", "pay_bill"),
    _payout("bill_pay", "bill_pay", _BILL_PAY_REFUSED, "refund", "the BOSS refuses the payment: the cash is paid back"), _print("bill_pay", "bill_pay"), _sms("bill_pay", "bill_pay"),
    _boss("plan_change", "boss_change_plan", "plan_change", "change_plan"), _print("plan_change", "plan_change"),
    _boss("loss_report", "boss_suspend", "loss_report", "suspend_number"), _print("loss_report", "loss_report"),
    _print("balance_query", "balance_printed"), _print("statement", "statement"), _print("invoice", "invoice"),
]

_OPEN_REFUSED = boss("open_number", "refuse", code="system_busy")
_NEW, _REPLACE = "ask:confirm_new_number", "ask:confirm_sim_replace"  # the kiosk waits for the answer
_BOSS_SUITE = ("BOSS timeout", "BOSS error")
ROWS += [
    full_run(_identify("new_number", "new_number"), ("card removed mid-read",)),
    full_run(_boss("new_number", "boss_reserve", "new_number", "reserve_number"), ("BOSS timeout",)),
    full_run(_bill("new_number", "new_number")),
    full_run(_sim_move("new_number", "new_number", "paid"), ("jam",)),
    full_run(_sim_write("new_number", "new_number", _NEW), ("write failure", "no answer")),
    full_run(_boss("new_number", "boss_open_number", "new_number", "open_number"), _BOSS_SUITE),
    full_run(_sim_out("new_number", "new_number"), ("jam",)),
    full_run(_sim_capture("new_number", "new_number_left"), ("jam",)),
    full_run(replace(_boss("new_number", "boss_release (open refused)", "new_number", "release_number"),
                     setup=_OPEN_REFUSED, setup_how="the BOSS refuses to open the number: the number is let go"),
             ("BOSS error",)),
    full_run(_payout("new_number", "new_number", _OPEN_REFUSED, "refund",
                     "the BOSS refuses to open the number: the cash is paid back")),
    full_run(_print("new_number", "new_number"), ("paper out",)),
    full_run(_identify("sim_replace", "sim_replace"), ("no answer",)),
    full_run(_sim_move("sim_replace", "sim_replace", _REPLACE), ("empty",)),
    full_run(_sim_write("sim_replace", "sim_replace", _REPLACE), ("BOSS error",)),
    full_run(_boss("sim_replace", "boss_replace_sim", "sim_replace", "replace_sim"), ("BOSS timeout",)),
    full_run(_sim_out("sim_replace", "sim_replace")),
    full_run(_sim_capture("sim_replace", "sim_replace_left"), ("empty",)),
    full_run(_print("sim_replace", "sim_replace")),
    full_run(_identify("real_name", "real_name"), ("checksum noise",)),
    full_run(_boss("real_name", "boss_register", "real_name", "register_real_name"), ("BOSS error",)),
    full_run(_print("real_name", "real_name")),
    full_run(_identify("loss_report", "loss_report_id"), ("card removed mid-read",)),
    full_run(replace(_boss("loss_report", "boss_suspend", "loss_report_id", "suspend_number"),
                     step="boss_suspend (by ID card)"), ("BOSS timeout",)),
    full_run(replace(_print("loss_report", "loss_report_id"), step="print (by ID card)")),
]

# Device faults that do not fit a device: said once per column, not per row.
GENERIC = {
    "jam": "{device}: nothing to jam", "empty": "{device}: nothing to run out of", "paper out": NOT_PRINTER,
    "cover open": NOT_PRINTER, "stacker removed": "the bill validator's fault; this step does not stack",
    "no answer": "", "checksum noise": "", "slow answer": "",
    "card removed mid-read": "only the ID reader reads a card the customer holds",
    "write failure": "only the SIM writer writes (a verified write: read back)",
    "note in escrow at power-up": "only while a note is in escrow (stack_bill)",
    "BOSS timeout": NO_BOSS, "BOSS error": NO_BOSS,
}

NOT_ON_RIG: dict[str, str] = {}  # flows whose steps the matrix beds cannot drive, and where their faults are covered


def cell_of(row: Row, fault: str) -> Cell | str:
    """The cell's action, or why it does not apply."""
    if fault == HALL:
        return Cell(lambda rig: None, how="halld stopped for the visit")
    got = row.cells.get(fault)
    if got is not None:
        return got
    generic = GENERIC[fault]
    if not generic:
        raise KeyError(f"{row.flow}/{row.step}: no entry for {fault!r}")
    return generic.format(device=row.device)


# kioskctl test NAME after a cell: a jam stays latched in the driver until a person has cleared it
# and the self test has initialised the device again (hal/dispenser/crt571.py).
SELF_TEST = {"card dispenser": "cards", "printer": "printer", "hopper": "hopper", "modem": "modem",
             "ID reader": "idreader", "SIM dispenser": "sims", "SIM writer": "sim"}


# -- the bed ---------------------------------------------------------------------------------------

class HallRig(Rig):
    """The crash rig plus the modem emulator, kioskd reporting to a broker and halld (all once)."""

    def __init__(self, work: Path, broker_port: int, identity: bool = False) -> None:
        # the identity bed's kioskd is its own interpreter, not forked: libpcsclite keeps the first
        # PC/SC socket a process used, and a test process that used another pcscd before (tests/
        # identity's) would hand that one to a forked child
        super().__init__(work, fork=not identity, identity=identity)
        self.broker_port = broker_port
        self.halld: subprocess.Popen | None = None

    def start(self) -> "HallRig":
        from hall.broker import free_port

        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "run").mkdir(exist_ok=True)
        self.ports["modem"] = free_port()
        proc, log = self._spawn("modem", ["-m", "hal.emulators", "modem", "--tcp", f"127.0.0.1:{self.ports['modem']}",
                                          "--control", str(self.emu_sock("modem"))])
        _wait_line(proc, log, "serving tcp", 10)
        super().start()
        self.start_halld()
        return self

    def _write_config(self) -> Path:
        path = super()._write_config()
        text = re.sub(r"(\[mqtt\]\nhost = \"127.0.0.1\"\n)port = \d+[^\n]*", rf"\1port = {self.broker_port}", path.read_text())
        text += f"""
[devices.modem]
driver = "gsm-modem"
port = "tcp://127.0.0.1:{self.ports['modem']}"
backoff_s = 0.01
command_timeout_s = 0.5
prompt_timeout_s = 0.5
result_timeout_s = 1.0
"""
        path.write_text(text)
        return path

    @property
    def hall_db(self) -> Path:
        return self.work / "hall.db"

    def start_halld(self) -> None:
        log = self.work / "halld.log"
        before = log.stat().st_size if log.exists() else 0  # the last halld's "listening" is not this one's
        with open(log, "a") as out:
            self.halld = subprocess.Popen(
                [sys.executable, "-m", "hall.halld", "serve", "--db", str(self.hall_db), "--mqtt-port",
                 str(self.broker_port), "--worker", "halld-matrix", "--hall", "H-CRASH", "--http", "off"],
                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        _wait_line(self.halld, log, "listening", 20, offset=before)

    def stop_halld(self) -> None:
        if self.halld is not None and self.halld.poll() is None:
            self.halld.send_signal(signal.SIGTERM)
            try:
                self.halld.wait(10)
            except subprocess.TimeoutExpired:
                self.halld.kill()
                self.halld.wait()
        self.halld = None

    def stop(self) -> None:
        self.stop_halld()
        super().stop()

    def hall_txn(self, txn: str) -> str | None:
        if not self.hall_db.exists():
            return None
        conn = sqlite3.connect(f"file:{self.hall_db}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT state FROM txns WHERE kiosk = 'K-CRASH' AND txn = ?", (txn,)).fetchone()
        except sqlite3.OperationalError:  # halld has not made its tables yet
            return None
        finally:
            conn.close()
        return row[0] if row else None

    def hall_events(self, txn: str, since: float, until: float) -> list[str]:
        """What halld has: the transaction's events, and the kiosk's from ``since`` to ``until``."""
        conn = sqlite3.connect(f"file:{self.hall_db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT kind, device, code FROM events WHERE kiosk = 'K-CRASH' AND"
                                " (txn = ? OR (at >= ? AND at < ?)) ORDER BY msg_seq", (txn, since, until)).fetchall()
        finally:
            conn.close()
        return [f"{kind}{'/' + device if device else ''}{'/' + code if code else ''}" for kind, device, code in rows]


# -- running a cell --------------------------------------------------------------------------------

@dataclass
class Result:
    flow: str
    step: str
    fault: str
    state: str = ""  # the transaction's final state, or "n/a"
    hall: str = ""  # its state at halld
    events: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    steps: set[str] = field(default_factory=set)  # the effects the visit's transaction went through

    @property
    def ok(self) -> bool:
        return not self.problems


DEVICE_NAME = {"bill validator": "bill", "hopper": "hopper", "card dispenser": "cards", "printer": "printer",
               "modem": "modem", "ID reader": "idreader", "SIM dispenser": "sims", "SIM writer": "sim"}


def reached(row: Row, steps: set[str], events: list[str]) -> bool:
    """The visit came to the row's step: its intent is journalled (or, for "identify", the sealed
    card), or the step's device refused before it (a printer found out of paper is not sent the
    job; its fault event says so)."""
    name = DEVICE_NAME.get(row.device)
    return row.step.split()[0] in steps or (name is not None and any(f"/{name}/" in e for e in events))


FINAL = {"done", "refunded", "cancelled", "declined", "failed", "review"}


def _wait(what: Callable[[], object], timeout: float, why: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(why)


class Matrix:
    def __init__(self, rig: HallRig, log: Callable[[str], None] = lambda m: None) -> None:
        self.rig = rig
        self.log = log
        self.n = 0
        self.hall_down: dict[str, Result] = {}  # visit (scenario, row setup) -> its one hall-down visit

    def run_cell(self, row: Row, fault: str, cell: Cell) -> Result:
        rig, self.n = self.rig, self.n + 1
        res = Result(row.flow, row.step, fault)
        t0 = time.monotonic()
        since = time.time()
        if fault == HALL:
            rig.stop_halld()
        sims_before = rig.emu("crt571-sims", "state") if rig.identity else {}
        if row.setup is not None:
            row.setup(rig)
        if cell.when == "before":
            cell.act(rig)
        fired: set[str] = set()

        def on(moment: str, rig_: Rig) -> None:
            if moment == cell.when and moment not in fired:
                fired.add(moment)
                cell.act(rig_)
        visit = Visit(rig, VISITS[row.scenario], 700000 + self.n, on=on)
        try:
            last = visit.run(timeout=60)
        except Exception as exc:  # noqa: BLE001 - the cell's finding
            res.problems.append(f"visit did not end: {type(exc).__name__}: {exc}")
            last = {}
        cleared = time.time()  # what cleaning up reports (stacker back in, ...) is not the cell's
        sim_left = rig.emu("crt571-sims", "state")["position"] if rig.identity else ""
        clear(rig)
        rig.emu("crt571", "set_stock", count=100000)
        for cmd in ("paper_ok", "close_cover", "clear_errors"):
            rig.emu("escpos", cmd)
        for name in ("cctalk", "crt571", "escpos", "modem", *(("idcard", "crt571-sims") if rig.identity else ())):
            rig.emu(name, "unmute")
            rig.emu(name, "corrupt", count=0)
        if rig.alive():
            FaultRun._devices_answer_again(rig)
        tidy(rig)
        if rig.identity:
            tidy_identity(rig)
        if rig.alive() and row.device in SELF_TEST:  # as the technician does after clearing a fault
            rig.api("test", device=SELF_TEST[row.device])
        if fault == HALL:
            rig.start_halld()
        res.state = last.get("state", "")
        txn = last.get("txn", "")
        if res.state not in FINAL:
            res.problems.append(f"the visit ended {res.state or 'without a state'}: {last}")
        if not rig.alive():
            res.problems.append("kioskd died")
        else:
            status = rig.api("status")
            if status["state"] not in ("ready", "degraded"):
                res.problems.append(f"kioskd is {status['state']} after the visit")
        bus = rig.emu("cctalk", "state")
        for dev in ("coin", "bill"):
            if bus[dev]["master_enabled"] and bus[dev]["inhibit_mask"]:
                res.problems.append(f"the {dev} acceptor is left taking cash")
        books = invariants.check(rig)
        res.problems += books.problems
        with rig.journal() as j:
            row_ = j.execute("SELECT state, data, (SELECT COALESCE(SUM(fen), 0) FROM money m WHERE m.txn = t.id AND"
                             " m.kind = 'cash_in' AND m.source NOT LIKE 'bill?:%') AS sure FROM transactions t"
                             " WHERE id = ?", (txn,)).fetchone()
            outcomes = [(r[0], json.loads(r[1] or "null") or {}) for r in
                        j.execute("SELECT kind, outcome FROM steps WHERE txn = ? ORDER BY id", (txn,))]
        steps = {kind for kind, _ in outcomes}
        if rig.identity:
            res.problems += sim_problems(outcomes, sims_before, rig.emu("crt571-sims", "state"))
            if sim_left == "gate" and res.state != "review":
                res.problems.append(f"the visit ended {res.state} with a SIM left at the gate for the next person")
        if txn and row_ is None:
            res.problems.append(f"{txn} is not in the journal")
        res.steps = steps
        if txn:
            res.events = rig.hall_events(txn, since, cleared)
        if row_ is not None and "id_masked" in json.loads(row_["data"] or "{}"):
            steps.add("identify")  # the card was read: the transaction holds it sealed
        if row_ is not None and not reached(row, steps, res.events) and fault != HALL:
            res.problems.append(f"the visit never reached {row.step} (its steps: {sorted(steps)})")
        if row_ is not None and row_["sure"] > visit.fed_fen:
            res.problems.append(f"{txn} credits {row_['sure']} fen of cash, its customer put in {visit.fed_fen}")
        if txn:
            try:
                res.hall = str(_wait(lambda: rig.hall_txn(txn), 30, f"{txn} never reached halld"))
            except TimeoutError as exc:
                res.problems.append(str(exc))
            if res.hall and res.hall != res.state:
                res.problems.append(f"halld has {txn} as {res.hall}, the kiosk as {res.state}")
            res.events = rig.hall_events(txn, since, cleared)  # again: the hall has caught up
        res.seconds = time.monotonic() - t0
        self.log(f"{row.flow}/{row.step} x {fault}: {res.state} hall={res.hall} events={res.events} "
                 f"{res.seconds:.1f}s {'OK' if res.ok else res.problems}")
        return res

    def run_row(self, row: Row, suite: bool = False) -> list[Result]:
        """The row's cells (``suite``: only those ./dev test runs); a cell that does not apply is
        "n/a", one left to the full run is not in the list."""
        out = []
        for fault in FAULTS:
            cell = cell_of(row, fault)
            if isinstance(cell, str):
                out.append(Result(row.flow, row.step, fault, "n/a"))
                continue
            if fault == HALL:  # one visit per scenario: the hall is down for all of its steps
                key = f"{row.scenario}/{id(row.setup)}"
                if key not in self.hall_down:
                    self.hall_down[key] = self.run_cell(row, fault, cell)
                first = self.hall_down[key]
                problems = [*first.problems, *(f"the visit never reached {row.step}" for _ in [0]
                                               if row.step.split()[0] not in first.steps)]
                out.append(Result(row.flow, row.step, fault, first.state, first.hall, first.events, problems))
                continue
            if suite and not cell.suite:
                continue
            out.append(self.run_cell(row, fault, cell))
        return out


class Beds:
    """The matrix's beds, one running at a time, each started once: the cash bed (cash bus, card
    dispenser, printer, modem), then the identity bed (the same plus the ID reader, the camera,
    the SIM dispenser and PC/SC with the virtual USIM) for the identity flows' rows."""

    def __init__(self, work: Path, broker_port: int, log: Callable[[str], None] = lambda m: None) -> None:
        self.work, self.broker_port, self.log = work, broker_port, log
        self.kind = ""
        self.rig: HallRig | None = None
        self.matrix: Matrix | None = None

    def for_row(self, row: Row) -> Matrix:
        if self.kind != row.bed:
            self.close()
            self.rig = HallRig(self.work / row.bed, self.broker_port, identity=row.bed == "identity").start()
            self.kind = row.bed
            self.rig.start_kioskd(note=f"fault matrix, {row.bed} bed")
            self.matrix = Matrix(self.rig, self.log)
        assert self.matrix is not None
        return self.matrix

    def close(self) -> None:
        if self.rig is not None:
            self.rig.stop()
        self.rig, self.matrix, self.kind = None, None, ""


def run_matrix(work: Path, broker_port: int, log: Callable[[str], None] = lambda m: None,
               rows: list[Row] = ROWS, suite: bool = False) -> list[Result]:
    beds = Beds(work, broker_port, log)
    try:
        return [r for row in sorted(rows, key=lambda r: r.bed) for r in beds.for_row(row).run_row(row, suite)]
    finally:
        beds.close()


def tidy_identity(rig: Rig) -> None:
    """What a person in the hall does after an identity cell: the SIM dispenser's jam cleared and its
    bin emptied, a SIM stuck in its channel pulled out into the bin's bag (it was never the
    customer's); the next visit brings a fresh blank card to the contacts (customer.py)."""
    rig.emu("crt571-sims", "clear_jam")
    if rig.emu("crt571-sims", "state")["position"] in ("read", "gate"):
        rig.emu("crt571-sims", "pull_card")
    rig.emu("crt571-sims", "set_bin", capacity=100000)
    rig.emu("crt571-sims", "set_stock", count=100000)


def sim_problems(outcomes: list[tuple[str, dict]], before: dict, after: dict) -> list[str]:
    """No SIM handed out without a verified write: a SIM that reached the gate in this visit was
    written (read back equal) and the BOSS put the number on it first."""
    out = []
    gated = any(kind == "dispense_sim" and o.get("at_gate") for kind, o in outcomes)
    written = any(kind == "write_sim" and o.get("written") is True for kind, o in outcomes)
    applied = any(kind in ("boss_open_number", "boss_replace_sim") and o.get("applied") is True for kind, o in outcomes)
    if gated and not (written and applied):
        out.append(f"a SIM went to the gate without a verified write and the BOSS's word (steps {outcomes})")
    if after["taken"] > before["taken"] and not gated:
        out.append("the customer took a SIM the journal never sent to the gate")
    return out


# -- the table --------------------------------------------------------------------------------------

def table(results: list[Result] | None = None) -> str:
    """The matrix as markdown: a row per (flow, step), a column per fault. A run cell shows the
    transaction's final state (the same at halld), or FAILED; a cell that does not apply, a
    footnote with the reason. Without results: the cells as defined ("run" where one runs)."""
    got = {(r.flow, r.step, r.fault): r for r in results or []}
    notes: dict[str, int] = {}
    lines = ["| flow | step | " + " | ".join(FAULTS) + " |", "| --- | --- |" + " --- |" * len(FAULTS)]
    for row in ROWS:
        cells = []
        for fault in FAULTS:
            cell = cell_of(row, fault)
            if isinstance(cell, str):
                n = notes.setdefault(cell, len(notes) + 1)
                cells.append(f"{'not run' if cell.startswith('not run') else '–'}<sup>{n}</sup>")
            elif (r := got.get((row.flow, row.step, fault))) is None:  # not run (yet): the shape
                cells.append("run")
            else:
                cells.append(r.state if r.ok else "**FAILED**")
        lines.append(f"| {row.flow} | {row.step} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"<sup>{n}</sup> {why}  " for why, n in notes.items()]
    return "\n".join(lines).rstrip() + "\n"


def how_table() -> str:
    """What each run cell does (the fault commands), one line per row."""
    out = []
    for row in ROWS:
        hows = [f"{fault}: {c.how}" + (f" (at '{c.when}')" if c.when != "before" else "") + ("" if c.suite else " (full run only)")
                for fault in FAULTS if isinstance(c := cell_of(row, fault), Cell) and fault != HALL]
        setup = f"; first {row.setup_how}" if row.setup_how else ""
        out.append(f"- **{row.flow} / {row.step}** ({row.device}, visit `{row.scenario}`{setup}): " + "; ".join(hows))
    return "\n".join(out) + "\n"


def doc_block(results: list[Result], seconds: float) -> str:
    run = [r for r in results if r.state != "n/a"]
    suite = [r for r in run if r.fault == HALL or cell_of(row_of(r), r.fault).suite]
    return "\n".join([
        BEGIN, "",
        f"{len(ROWS)} steps x {len(FAULTS)} faults = {len(ROWS) * len(FAULTS)} cells: {len(run)} run "
        f"({len(suite)} of them in ./dev test, the rest in the full run), {len(results) - len(run)} not run (the "
        f"footnote says why: most do not apply). Each run cell shows the transaction's final state, which halld also "
        f"has; every one ended with the books balanced (full run measured in {seconds:.0f} s).", "",
        table(results),
        "The identity flows' rows (`new_number`, `sim_replace`, `real_name`, `loss_report` by ID card) run on the "
        "identity bed: the same emulators plus the ID card reader, the camera, the SIM dispenser and PC/SC with the "
        "virtual USIM. \"hall down\" is one visit per scenario with halld stopped, shared by the steps that visit "
        "went through.", "",
        "How each cell's fault is made (emulator control commands, docs/emulators.md; bosssim's /control/fault); "
        "./dev test runs every cell not marked \"full run only\" (and every hall-down visit):", "",
        how_table(), END])


def row_of(result: Result) -> Row:
    return next(r for r in ROWS if (r.flow, r.step) == (result.flow, result.step))


def committed_block() -> str:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def write_docs(block: str) -> None:
    text = DOC.read_text()
    if BEGIN in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + block + text[end:]
    else:
        marker = "## Fuzzing"
        text = text.replace(marker, block + "\n\n" + marker, 1)
    DOC.write_text(text)


def main() -> None:
    import tempfile

    from hall.broker import start_broker

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the table in {DOC.relative_to(ROOT)}")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--suite", action="store_true", help="only the cells ./dev test runs")
    parser.add_argument("--rows", metavar="REGEX", default="", help="only the rows whose 'flow/step' matches")
    args = parser.parse_args()
    rows = [r for r in ROWS if re.search(args.rows, f"{r.flow}/{r.step}")]
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as tmp:
        broker = start_broker(Path(tmp) / "mosquitto")
        try:
            t0 = time.monotonic()
            log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
            results = run_matrix(Path(tmp) / "rig", broker.port, log, rows, args.suite)
            seconds = time.monotonic() - t0
        finally:
            broker.stop()
    block = doc_block(results, seconds)
    print(block)
    for r in results:
        if not r.ok:
            print(f"FAILED {r.flow}/{r.step} x {r.fault}: {'; '.join(r.problems)}", file=sys.stderr)
    if args.write_docs:
        if args.suite or len(rows) < len(ROWS):
            parser.error("--write-docs writes the whole matrix: not with --suite or --rows")
        write_docs(block)
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()

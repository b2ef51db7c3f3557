"""The fault matrix (tests/reliability/matrix.py): every applicable (flow step, fault) cell runs on
its bed with the session's broker and a halld, and ends safe, with the books kept and the hall
told; the table committed in docs/reliability.md has the cells the matrix defines.

A test per row (``-k new_number`` narrows to a flow's rows); the beds are started once for the
module. ./dev test runs the cells marked for the suite (Cell.suite), the full run every cell:
``.venv/bin/python -m tests.reliability.matrix`` (docs/reliability.md)."""
from __future__ import annotations

import re

import pytest

from transactions.flows import SPECS

from .matrix import NOT_ON_RIG, ROWS, Beds, committed_block, table


def test_every_step_of_every_flow_has_a_row_or_says_where_its_faults_are_run():
    rows = {(r.flow, r.step.split()[0]) for r in ROWS}
    kinds = {"notify": "sms"}
    for name, spec in SPECS.items():
        if name in NOT_ON_RIG:
            continue
        effects = {kinds.get(t.effect, t.effect) for t in spec.transitions if t.effect}
        assert {(name, e) for e in effects} <= rows, f"{name}: steps without a row: {effects - {s for f, s in rows if f == name}}"


FINAL = {"done", "refunded", "cancelled", "declined", "failed", "review"}


def same_cells(shape: str, table_text: str) -> None:
    """``table_text`` has the cells of ``shape`` (table() without results): the same rows, the same
    footnoted cells, and a final state wherever ``shape`` says "run"."""
    shape_lines = shape.splitlines()
    lines = table_text[table_text.index("| flow |"):].splitlines()[:len(shape_lines)]
    assert len(lines) == len(shape_lines)
    for want, got in zip(shape_lines, lines):
        same_line(want, got)


def same_line(want: str, got: str) -> None:
    cells_want, cells_got = want.split("|"), got.split("|")
    assert len(cells_want) == len(cells_got), got
    for a, b in zip(cells_want, cells_got):
        assert a == b or (a.strip() == "run" and b.strip() in FINAL), (want, got)


def test_the_committed_table_has_the_cells_the_matrix_defines():
    """Which cells run and why the others do not: the committed table's cells, without a run."""
    same_cells(table(), committed_block())


@pytest.fixture(scope="module")
def beds(broker, tmp_path_factory):
    b = Beds(tmp_path_factory.mktemp("fault-matrix"), broker.port)
    yield b
    b.close()


def _id(row) -> str:
    return re.sub(r"\W+", "_", f"{row.flow} {row.step}").strip("_")


@pytest.mark.timeout(600)  # a row is ~10-60 s; the first of a bed starts it, the hall-down visit may be its own
@pytest.mark.parametrize("row", sorted(ROWS, key=lambda r: r.bed), ids=_id)
def test_every_applicable_cell_ends_safe_with_the_books_kept_and_the_hall_told(beds, row):
    results = beds.for_row(row).run_row(row, suite=True)
    failed = [f"{r.flow}/{r.step} x {r.fault}: {'; '.join(r.problems)}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    assert all(r.hall == r.state for r in results if r.state != "n/a")
    # the row's line has the committed cells; a final state may differ where a fault races the
    # device (docs/reliability.md), so states are not compared
    line = f"| {row.flow} | {row.step} |"
    mine = [ln for ln in table(results).splitlines() if ln.startswith(line)]
    want = [ln for ln in table().splitlines() if ln.startswith(line)]
    assert len(mine) == len(want) == 1
    same_line(want[0], mine[0])

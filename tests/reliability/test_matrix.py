"""The fault matrix (tests/reliability/matrix.py): every applicable (flow step, fault) cell runs on
one rig with the session's broker and a halld, and ends safe, with the books kept and the hall
told; the table committed in docs/reliability.md is the one this run produces."""
from __future__ import annotations

import pytest

from transactions.flows import SPECS

from .matrix import NOT_ON_RIG, ROWS, committed_block, doc_block, run_matrix, table


def test_every_step_of_every_flow_has_a_row_or_says_where_its_faults_are_run():
    rows = {(r.flow, r.step.split()[0]) for r in ROWS}
    kinds = {"notify": "sms"}
    for name, spec in SPECS.items():
        if name in NOT_ON_RIG:
            continue
        effects = {kinds.get(t.effect, t.effect) for t in spec.transitions if t.effect}
        assert {(name, e) for e in effects} <= rows, f"{name}: steps without a row: {effects - {s for f, s in rows if f == name}}"


def test_the_committed_table_has_the_cells_the_matrix_defines():
    """Which cells run and why the others do not apply: the committed table's shape, without a run."""
    committed = committed_block()
    shape = table().splitlines()
    doc = committed[committed.index("| flow |"):].splitlines()[:len(shape)]
    assert len(doc) == len(shape)
    for line_run, line_doc in zip(shape, doc):
        cells_run, cells_doc = line_run.split("|"), line_doc.split("|")
        assert len(cells_run) == len(cells_doc), line_doc
        for a, b in zip(cells_run, cells_doc):
            assert a == b or (a.strip() == "run" and b.strip() not in ("", "**FAILED**")), (line_run, line_doc)


@pytest.mark.timeout(900)
def test_every_applicable_cell_ends_safe_with_the_books_kept_and_the_hall_told(broker, tmp_path, capsys):
    results = run_matrix(tmp_path, broker.port)
    failed = [f"{r.flow}/{r.step} x {r.fault}: {'; '.join(r.problems)}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    ran = [r for r in results if r.state != "n/a"]
    assert len(ran) >= 90 and all(r.hall == r.state for r in ran)
    # the committed table is this run's (python -m tests.reliability.matrix --write-docs rewrites it)
    assert table(results) in committed_block(), doc_block(results, 0)

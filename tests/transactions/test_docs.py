"""docs/transactions.md shows the flow tables the code really has."""
from pathlib import Path

import pytest

from transactions.flow import EFFECTS
from transactions.flows import SPECS

DOC = Path(__file__).resolve().parents[2] / "docs" / "transactions.md"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_flow_table_in_the_doc_matches_the_code(name):
    assert SPECS[name].markdown() in DOC.read_text(encoding="utf-8"), f"regenerate the {name} table"


def test_every_effect_has_a_recovery_rule_documented():
    doc = DOC.read_text(encoding="utf-8")
    for kind in EFFECTS:
        assert f"| `{kind}` |" in doc

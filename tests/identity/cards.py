"""Sample ID cards for the tests (the standard's sample number 11010519491231002X, §3.6)."""
from __future__ import annotations

GOOD = dict(
    name="张三丰", gender="1", nation="01", birth="19491231",
    address="北京市西城区复兴门内大街一号", id_number="11010519491231002X",
    authority="北京市公安局西城分局", valid_from="20200101", valid_to="20400101",
)
LONG_TERM = dict(GOOD, valid_to="长期", valid_from="20100101")
EXPIRED = dict(GOOD, valid_from="20000101", valid_to="20200101")
BAD_CHECK = dict(GOOD, id_number="110105194912310021")


def card(base: dict = GOOD, **changes: str) -> dict:
    return dict(base, **changes)

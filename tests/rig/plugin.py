"""``pytest --rig rig.toml``: the device tests against the rig's ports, and a report in rig-report/.

The report: ``junit.xml`` (pytest's own, unless --junitxml names another file) and ``devices.md`` /
``devices.json``: per device the tests passed, failed and skipped, and what the device said about
itself (ccTalk manufacturer/product/serial, printer maker/model/firmware, modem ATI/CGMR, ...).
Rig-only tests (``@pytest.mark.rig``: real GPIO and I2C on a Pi) are deselected without --rig,
so a normal run skips nothing.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from . import lines
from .config import RigConfigError, load


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rig", "hardware-in-the-loop rig (docs/rig.md)")
    group.addoption("--rig", metavar="RIG_TOML", help="run the device tests against the ports rig.toml names")
    group.addoption("--rig-report", metavar="DIR", default="rig-report",
                    help="where --rig writes junit.xml and devices.md (default rig-report/)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--rig")
    if not path:
        return
    try:
        lines.ACTIVE = load(path)
    except RigConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    report = Path(config.getoption("--rig-report"))
    report.mkdir(parents=True, exist_ok=True)
    if not config.option.xmlpath:  # read by pytest's junitxml plugin in its own pytest_configure, after this one
        config.option.xmlpath = str(report / "junit.xml")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if lines.rig_mode():
        return
    only = [item for item in items if item.get_closest_marker("rig")]
    if only:
        config.hook.pytest_deselected(items=only)
        items[:] = [item for item in items if not item.get_closest_marker("rig")]


def pytest_runtest_setup(item: pytest.Item) -> None:
    lines.CURRENT[0] = item.nodeid


_outcomes: dict[str, Counter] = defaultdict(Counter)
_skips: dict[str, list[str]] = defaultdict(list)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not lines.rig_mode():
        return
    if report.when == "call" or report.outcome != "passed":  # a skip or an error in set-up counts once
        if report.when == "teardown" and report.outcome == "passed":
            return
        used = lines.USED.get(report.nodeid, set())
        for device in used - {d.split(".")[0] for d in used if "." in d}:  # a bus's part, not the bus too
            _outcomes[device][report.outcome] += 1
            if report.skipped and isinstance(report.longrepr, tuple):
                _skips[device].append(report.longrepr[2].removeprefix("Skipped: "))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not lines.rig_mode():
        return
    rig = lines.ACTIVE
    assert rig is not None
    out = Path(session.config.getoption("--rig-report"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for device in sorted(set(_outcomes) | set(lines.IDENTITY)):
        name = device.split(".")[0]
        d = rig.devices.get(name)
        where = "absent" if d is None else f"{'real' if d.real else 'emulated'} {d.port}"
        n = _outcomes[device]
        rows.append({"device": device, "where": where, "passed": n["passed"], "failed": n["failed"],
                     "skipped": n["skipped"], "identity": lines.IDENTITY.get(device, {}),
                     "skip_reasons": sorted(set(_skips[device]))})
    (out / "devices.json").write_text(json.dumps({"rig": str(rig.path), "devices": rows}, indent=2, ensure_ascii=False))
    table = ["| device | where | passed | failed | skipped | identity / firmware it reported |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ident = ", ".join(f"{k} {v}" for k, v in r["identity"].items()) or "-"
        table.append(f"| {r['device']} | {r['where']} | {r['passed']} | {r['failed']} | {r['skipped']} | {ident} |")
    reasons = [f"- {r['device']}: {reason}" for r in rows for reason in r["skip_reasons"]]
    (out / "devices.md").write_text(f"# Rig report ({rig.path})\n\n" + "\n".join(table) + "\n"
                                    + ("\n## Skipped, and why\n\n" + "\n".join(reasons) + "\n" if reasons else ""))

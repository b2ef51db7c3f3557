"""docs/ and README.md stand on their own: every link resolves inside the repository (anchors
included), nothing points at notes a user of the repository does not have, and the tools' --help
says what the docs promise it says."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text().splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(page):
    text = page.read_text()
    for outside in ("shared/", "design.md", "test-environment.md", "style.md", "/work/"):
        assert outside not in text, f"{page.name} refers to {outside!r}, which a user of the repository does not have"
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "file://")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link {target!r} goes nowhere"
        assert ROOT in resolved.parents or resolved == ROOT, f"{page.name}: {target!r} leaves the repository"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {resolved.name}"


def test_every_protocol_section_the_docs_cite_exists():
    cited = set()
    for page in PAGES:
        cited |= {m for m in re.findall(r"§ ?(\d\.\d+)", page.read_text()) if m.split(".")[0] in "12456"}
    protocols = (ROOT / "docs" / "protocols.md").read_text()
    have = set(re.findall(r"^###? (\d\.\d+)", protocols, re.M))
    assert cited and cited <= have, sorted(cited - have)
    for section in re.split(r"^## ", protocols, flags=re.M)[1:]:
        assert "**Sources**" in section, section.splitlines()[0]


def helptext(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return " ".join(out.stdout.split())


def test_bosssim_help_lists_its_operations_faults_and_control():
    text = helptext("-m", "bosssim", "--help")
    for word in ("credit", "pay_bill", "query_balance", "/control/fault", "drop_reply", "/control/ledger",
                 "13800138000"):
        assert word in text, word


def test_kioskctl_emu_help_says_what_it_scripts():
    text = helptext("-m", "controller.kioskctl", "emu", "--help")
    for word in ("--simulate", "cctalk", "escpos", "insert_bill value=2000", "paper_out", "docs/emulators.md"):
        assert word in text, word


def test_the_emulators_send_command_is_in_help():
    assert "python -m hal.emulators send SOCKET JSON" in helptext("-m", "hal.emulators", "--help")
    text = helptext("-m", "hal.emulators", "send", "--help")
    assert "control socket" in text and '{"cmd": "insert_bill", "value": 2000}' in text

"""Each main screen fits the panel: nothing overflows the window or is clipped inside a button or a
heading, and every button is at least 15 mm on the 10.1" 1280x800 panel (88 px) — in Chinese at
1280x800 and in English at 1920x1080. The walk is the one docs/ui/'s screenshots come from."""
import re
from pathlib import Path

import pytest

from tests.ui.screens import MIN_TARGET_PX, run

pytestmark = pytest.mark.timeout(300)
DOCS = Path(__file__).parents[2] / "docs"
SCREENS = {"home", "phone", "readback", "amount", "note", "cash", "done", "card", "take_card", "apology_voucher",
           "password", "balance", "plan", "attract", "home_unavailable", "out_of_service", "maintenance", "please_wait"}

CHECK = """() => {
  const out = {overflow: null, small: [], clipped: []};
  const d = document.documentElement;
  if (d.scrollWidth > innerWidth || d.scrollHeight > innerHeight) out.overflow = [d.scrollWidth, d.scrollHeight];
  for (const el of document.querySelectorAll('button, h1, .entry, .readback, .amounts b, .voucher, .notices li, .msg, .note, .auto')) {
    const r = el.getBoundingClientRect();
    if (!r.width) continue;
    if (el.scrollWidth > el.clientWidth + 1) out.clipped.push(el.textContent.trim());  // wider than its box
    if (r.right > innerWidth + 1 || r.bottom > innerHeight + 1) out.clipped.push('off screen: ' + el.textContent.trim());
    if (el.tagName === 'BUTTON' && (r.width < MIN || r.height < MIN)) out.small.push([el.textContent.trim(), r.width, r.height]);
  }
  const main = document.querySelector('main');  // main hides its overflow: content past its end is cut off
  if (main && (main.scrollHeight > main.clientHeight + 2 || main.scrollWidth > main.clientWidth + 2)) {
    out.clipped.push(`main cut: ${main.scrollWidth}x${main.scrollHeight} in ${main.clientWidth}x${main.clientHeight}`);
  }
  return out;
}"""


@pytest.mark.parametrize("size, lang", [((1280, 800), "zh"), ((1920, 1080), "en")])
def test_every_main_screen_fits_with_big_touch_targets(tmp_path, size, lang):
    problems = {}
    seen = []

    def check(name, page):
        seen.append(name)
        for large in (False, True):
            if large:
                page.evaluate("ui.large = true; render()")
            found = page.evaluate(CHECK.replace("MIN", str(MIN_TARGET_PX)))
            if found["overflow"] or found["small"] or found["clipped"]:
                problems[f"{name}{' (larger text)' if large else ''}"] = found
        page.evaluate("ui.large = false; render()")

    run(tmp_path, *size, lang, each=check)
    assert SCREENS <= set(seen)
    import json

    assert not problems, json.dumps(problems, ensure_ascii=False, indent=1)


def test_docs_show_a_screenshot_of_each_main_screen():
    linked = set(re.findall(r"\]\(ui/([a-z_]+)\.png\)", (DOCS / "ui.md").read_text()))
    assert SCREENS <= linked, SCREENS - linked
    assert all((DOCS / "ui" / f"{name}.png").is_file() for name in linked), [n for n in linked if not (DOCS / "ui" / f"{n}.png").is_file()]

"""Each main screen fits the panel: nothing overflows the window or is clipped inside a button or a
heading, every button is at least 15 mm on the 10.1" 1280x800 panel (88 px), and every text stands
at least 7:1 against its background (4.5:1 on a disabled tile) — in Chinese at 1280x800 and in
English at 1920x1080, in both text sizes. The walk is the one docs/ui/'s screenshots come from."""
import re
from pathlib import Path

import pytest

from tests.ui.screens import MIN_TARGET_PX, run

pytestmark = pytest.mark.timeout(300)
DOCS = Path(__file__).parents[2] / "docs"
SCREENS = {"home", "phone", "readback", "amount", "note", "cash", "done", "card", "take_card", "apology_voucher",
           "password", "balance", "plan", "identify_method", "id_card", "loss_confirm", "attract", "home_unavailable", "out_of_service", "maintenance", "please_wait"}

CHECK = r"""() => {
  const out = {overflow: null, small: [], clipped: [], contrast: []};
  const d = document.documentElement;
  if (d.scrollWidth > innerWidth || d.scrollHeight > innerHeight) out.overflow = [d.scrollWidth, d.scrollHeight];
  for (const el of document.querySelectorAll('button, h1, .entry, .readback, .amounts b, .voucher, .notices li, .msg, .note, .auto')) {
    const r = el.getBoundingClientRect();
    if (!r.width) continue;
    if (el.scrollWidth > el.clientWidth + 1) out.clipped.push(el.textContent.trim());  // wider than its box
    if (r.right > innerWidth + 1 || r.bottom > innerHeight + 1) out.clipped.push('off screen: ' + el.textContent.trim());
    if (el.tagName === 'BUTTON' && (r.width < MIN || r.height < MIN)) out.small.push([el.textContent.trim(), r.width, r.height]);
  }
  // high contrast: every text at least 7:1 against what is behind it (WCAG 2.x AAA, "contrast
  // (enhanced)"), its opacity blended in; a greyed 暂停办理 tile (disabled) at least 4.5:1 (AA)
  const rgba = c => c.match(/[\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = el => { for (let e = el; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor);
    if ((c[3] ?? 1) > 0.5) return c; } return [255, 255, 255]; };
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = texts.nextNode(); n; n = texts.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el.getBoundingClientRect().width) continue;
    let alpha = 1;
    for (let e = el; e; e = e.parentElement) alpha *= +getComputedStyle(e).opacity;
    const bg = behind(el), fg = rgba(getComputedStyle(el).color).slice(0, 3).map((v, i) => v * alpha + bg[i] * (1 - alpha));
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x), ratio = (a + 0.05) / (b + 0.05);
    if (ratio < (el.closest('button:disabled') ? 4.5 : 7)) out.contrast.push([n.textContent.trim().slice(0, 20), +ratio.toFixed(2)]);
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
            if found["overflow"] or found["small"] or found["clipped"] or found["contrast"]:
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

"""The dashboard page in a real browser (headless Chromium): it loads without console
errors, every in-page link resolves, it loads nothing from elsewhere, and on a phone-sized
window only the tables scroll sideways, never the page.  The committed page
(reports/dashboard/index.html), or the one KLCONFORM_DASHBOARD_PAGE names (the Pages
workflow's); screenshots go to KLCONFORM_DASHBOARD_SHOTS when set.  Skipped where no
Chromium is installed (apt-get install chromium)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

PAGE = Path(os.environ.get("KLCONFORM_DASHBOARD_PAGE")
            or Path(__file__).resolve().parents[2] / "reports" / "dashboard" / "index.html").resolve()
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed (apt-get install chromium)")

# Injected into a copy of the page (the page itself has no script): the elements that reach
# past the window's right edge outside a scrolling table container.
PROBE = """<script>addEventListener('load',()=>{const W=document.documentElement.clientWidth,out=[];
for(const e of document.body.querySelectorAll('*')){if(e.closest('.scroll'))continue;
const r=e.getBoundingClientRect();if(r.right>W+1)out.push(e.tagName+' '+e.textContent.slice(0,60));}
document.body.setAttribute('data-overflow',JSON.stringify(out.slice(0,10)));});</script>"""


def browse(path: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           *extra, path.as_uri()], capture_output=True, text=True, timeout=180)


def test_loads_cleanly_and_every_link_resolves():
    p = browse(PAGE, "--window-size=1280,900", "--dump-dom")
    assert p.returncode == 0, p.stderr[-2000:]
    # any console message: the page has no script, so each one is an error (a failed load, ...)
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    dom = p.stdout
    ids = set(re.findall(r'\bid="([^"]+)"', dom))
    missing = sorted({a for a in re.findall(r'href="#([^"]+)"', dom) if unescape(a) not in ids and a not in ids})
    assert not missing, missing[:10]
    for table in ("glance", "matrix"):
        assert f'class="{table}"' in dom


def test_loads_nothing_from_elsewhere():
    html = PAGE.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "<img" not in html and "<iframe" not in html
    assert not re.search(r"""\bsrc\s*=|url\(\s*['"]?https?:""", html)
    # the only external addresses are the records' upstream references and the data files
    for href in re.findall(r'href="([^"#][^"]*)"', html):
        assert href.startswith(("https://", "http://")) or href in ("dashboard.json", "dashboard.csv"), href


@pytest.mark.parametrize("size", ["390,844", "1280,900"])
def test_only_tables_scroll_sideways(size, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(PAGE.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    p = browse(probe, f"--window-size={size}", "--dump-dom")
    m = re.search(r'data-overflow="([^"]*)"', p.stdout)
    assert m, p.stderr[-2000:]
    assert json.loads(unescape(m.group(1))) == []


def test_screenshots_are_taken(tmp_path):
    """Wide and narrow screenshots (reviewed by eye when the page changes: docs/dashboard.md)."""
    where = Path(os.environ.get("KLCONFORM_DASHBOARD_SHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    for size in ("1280,900", "390,844"):
        shot = where / f"dashboard-{size.replace(',', 'x')}.png"
        p = browse(PAGE, f"--window-size={size}", f"--screenshot={shot}", "--hide-scrollbars")
        assert p.returncode == 0 and shot.stat().st_size > 10_000, p.stderr[-2000:]

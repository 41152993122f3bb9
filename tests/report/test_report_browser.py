"""report.html in a real browser (headless Chromium): it loads without console errors and the
DOM the browser builds holds the plots' <svg> elements, the table of contents and the
collapsible per-case details.  Skipped where no Chromium is installed."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from klconform.report.html import render_html

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed (apt-get install chromium)")


def _browse(path, *extra):
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *extra, path.as_uri()], capture_output=True, text=True, timeout=120)


def test_report_html_loads_cleanly_with_plots(recorded, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(recorded), encoding="utf-8")
    p = _browse(page, "--dump-dom")
    assert p.returncode == 0, p.stderr[-2000:]
    console = [ln for ln in p.stderr.splitlines() if "Uncaught" in ln or "ERROR:CONSOLE" in ln]
    assert not console, console
    dom = p.stdout
    assert len(re.findall(r"<svg\b", dom)) >= 3, "verdict matrix, value and gradient error plots"
    assert re.search(r'<nav class="toc"[^>]*>.*?<a href="#plots">', dom, flags=re.S)
    assert "<details" in dom and "<summary>" in dom
    for anchor in re.findall(r'<a href="#([^"]+)"', dom):
        assert f'id="{anchor}"' in dom, anchor

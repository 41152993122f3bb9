"""report.md and report.html from recorded results: golden structure (not pixels), the HTML
parses, embeds its plots as inline SVG and needs no network."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from klconform.report.html import render_html
from klconform.report.markdown import OPTIONAL_SECTIONS, SECTIONS, render_markdown
from klconform.report.summary import build_model


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    VOID = {"meta", "br", "img", "link", "input", "hr", "circle", "line", "rect"}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_markdown_structure(recorded):
    md = render_markdown(recorded)
    heads = re.findall(r"^## (.+)$", md, flags=re.M)
    optional = {t for ts in OPTIONAL_SECTIONS.values() for t in ts}
    assert [h for h in heads if h not in optional] == list(SECTIONS)
    for after, titles in OPTIONAL_SECTIONS.items():     # where present, right after their anchor
        present = [h for h in heads if h in titles]
        if present:
            i = heads.index(after)
            assert heads[i + 1:i + 1 + len(present)] == present
    # one first-screen row, one matrix row and one fingerprint row per run
    for run in recorded.runs:
        assert len(re.findall(rf"^\| {re.escape(run.adapter)} — ", md, flags=re.M)) == 3
    # the first screen says what each API computes, marked against the canonical definition
    first = md.split("## What each API computes")[1].split("\n## ")[0]
    assert "log(p + 1e-12) (≠doc, ≠canon)" in first and "swapped: computes KL(Q‖P) (≠doc, ≠canon)" in first
    assert "batchmean→sum" in first
    # the fingerprint of each double is its true semantics
    assert "| double.target_eps — numpy" in md and "reduction as asked+target_log_eps(1e-12)" in md
    assert "batchmean→sum+swapped" in md
    # a discrepancy group is one line in report.md (its counterexample is in report.html)
    disc = md.split("\n## Discrepancies")[1].split("\n## ")[0]
    sec = disc.split("- **double.target_eps")[1].split("\n- **")[0]
    assert "NEW semantic vs canonical → `" in sec and "target_log_eps(1e-12)" in sec
    assert re.search(r"^- \*\*double\.canonical — [^*]*\*\*: no discrepancy$", md, flags=re.M)
    assert "python -m klconform run --seed 7" in md
    assert "exit status 1" in md


def test_html_parses_and_embeds_plots(recorded):
    page = render_html(recorded)
    p = Collector()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    names = [t for t, _ in p.tags]
    assert names.count("svg") == 3                      # verdict matrix, value errors, gradient errors
    assert names.count("circle") > 100                  # the scatter plots carry points
    assert "script" not in names
    for tag, attrs in p.tags:                           # self-contained: nothing fetched at view time
        if tag in ("img", "link", "script", "iframe", "object"):
            raise AssertionError(f"external resource tag <{tag}>")
        assert not any(k == "src" for k in attrs), (tag, attrs)
    text = "".join(p.text)
    for h in ("What each API computes", "Summary", "Semantic fingerprints", "Documentation claims", "Discrepancies", "Plots", "Environment",
              "Reproduction"):
        assert h in text
    assert "reduction as asked+target_log_eps(1e-12)" in text


def test_unexplained_behaviour_is_loud(corpus):
    from tests.report.conftest import run_doubles
    from tests.report import doubles
    res = run_doubles([doubles.Garbage], corpus[:150])
    md = render_markdown(res)
    loud = "neither a point of the reference family"
    assert re.search(rf"^> \*\*double\.garbage: \d+ outcome verdict\(s\) that {loud}", md, flags=re.M)
    assert loud in render_html(res)


def test_recorded_behaviour_raises_no_alarm(corpus):
    """Behaviour explained by known records is not under the alarm (it is listed as
    'the rest is recorded'); the alarm is for what nothing explains."""
    from tests.report.conftest import run_doubles
    from tests.report import doubles
    from klconform.report.summary import alarm
    res = run_doubles([doubles.Garbage], corpus[:60])
    for v in res.runs[0].verdicts:
        if v.cls != "match":
            v.known = "double-garbage-recorded"
    model = build_model(res)
    assert alarm(model.runs[0]) is None
    md = render_markdown(res, model)
    assert "neither a point of the reference family" not in md and "`double-garbage-recorded`" in md


def test_matrix_counts_add_up(recorded):
    model = build_model(recorded)
    for view in model.runs:
        canon = [v for v in view.run.verdicts if v.against == "canonical"]
        cells = view.cells.values()
        assert sum(c.match + c.known + c.new for c in cells) == len(canon)
        assert sum(c.match for c in cells) == sum(v.cls == "match" for v in canon)
    assert model.runs[0].failures == []                 # the canonical double conforms
    assert model.runs[1].failures and model.exit_status == 1

"""report.html: one self-contained file (inline CSS and SVG, no scripts, no network)."""
from __future__ import annotations

import re

import json
from html import escape as E

from ..results import RunResult
from ..areas import AREAS
from . import plots
from . import coverage, scale, versions
from .markdown import CANONICAL, bootstrap_command, case_counts, not_run_line, python_text, run_command
from .summary import (AREA_TITLES, EXIT_DOC, FIRST_SCREEN_COLUMNS, Group, ReportModel, alarm, build_model, error_points,
                      first_screen, gradient_points, recorded_rest)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4}
td.match{background:#e5f5e0}td.known{background:#fee6ce}td.new{background:#fcbba1;font-weight:bold}td.empty{color:#999}
.holds{color:#237804;font-weight:bold}.fails{color:#a8071a;font-weight:bold}.unchecked{color:#777}
.loud{border:2px solid #a8071a;background:#fff1f0;padding:.5em 1em;margin:1em 0}
.ok{border:2px solid #237804;background:#f6ffed;padding:.5em 1em;margin:1em 0}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
details{margin:.3em 0 .8em}summary{cursor:pointer}
dl.ex{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:.5em 0 .5em 1em;font-size:13px}
dl.ex dt{font-weight:bold}dl.ex dd{margin:0;word-break:break-all}
nav.toc{border:1px solid #ddd;background:#fafafa;padding:.4em 1em;margin:1em 0;font-size:13px}
nav.toc ol{margin:.3em 0;padding-left:1.5em;columns:2}
svg.plot{display:block;margin:.5em 0 1.5em;max-width:100%;height:auto}
"""


def _table(header, rows, classes=None) -> str:
    h = "".join(f"<th>{E(str(x))}</th>" for x in header)
    body = []
    for i, r in enumerate(rows):
        tds = []
        for j, c in enumerate(r):
            cls = classes[i][j] if classes and classes[i][j] else ""
            tds.append(f'<td class="{cls}">{c}</td>' if cls else f"<td>{c}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _group(g: Group) -> str:
    tag = f"known <code>{E(g.known)}</code>" if g.known else '<span class="fails">NEW</span>'
    eb = f" → <code>{E(g.explained_by)}</code>" if g.explained_by else ""
    parts = [f"<details{' open' if not g.known else ''}><summary><b>{E(g.cls)}</b> vs {E(g.against)}{eb} — "
             f"{g.count} case(s) — {tag}</summary><dl class=\"ex\">",
             f"<dt>SPEC clauses</dt><dd>{', '.join('<code>' + E(c) + '</code>' for c in g.clauses)}</dd>"]
    if g.when:
        parts.append(f"<dt>condition</dt><dd>{E(g.when)}</dd>")
    if g.citation:
        cit = E(g.citation)
        link = f'<a href="{cit}">{cit}</a>' if g.citation.startswith("http") else cit
        parts.append(f"<dt>upstream reference</dt><dd>{link}</dd>")
    parts.append(f"<dt>detail</dt><dd>{E(g.detail)}</dd>")
    e = g.example
    if e:
        parts += [f"<dt>minimal counterexample</dt><dd><code>{E(e.label or e.digest)}</code> (case <code>{E(e.digest)}</code>; {E(e.shrink)})</dd>",
                  f"<dt>question</dt><dd>{E(e.question)}</dd>",
                  f"<dt>target P</dt><dd><code>{E(e.target)}</code></dd>",
                  f"<dt>pred</dt><dd><code>{E(e.pred)}</code></dd>",
                  f"<dt>expected ({E(e.point)})</dt><dd><code>{E(e.expected)}</code></dd>",
                  f"<dt>observed</dt><dd><code>{E(e.observed)}</code></dd>",
                  f"<dt>bound</dt><dd><code>{E(e.bound)}</code></dd>"]
        if e.native_call:
            parts.append(f"<dt>native call</dt><dd><code>{E(e.native_call)}</code></dd>")
        if e.blob:
            parts.append(f"<dt>reproduce</dt><dd><code>klconform.engine.case_from_blob(\"{E(e.blob)}\")</code></dd>")
    parts.append("</dl></details>")
    return "".join(parts)


def _plots(model: ReportModel) -> str:
    r = model.result
    cache: dict = {}
    ok_runs = [v for v in model.runs if v.run.status == "ok"]
    err_panels = [(v.run.adapter, error_points(r, v.run, cache)) for v in ok_runs]
    grad_panels = [(v.run.adapter, [(m, e, dt) for m, e, dt, _ in gradient_points(r, v.run, v.fingerprint, cache)])
                   for v in ok_runs]
    rows = [v.label for v in ok_runs]
    cells = [[(v.cells[a].state, v.cells[a].text) for a in AREAS] for v in ok_runs]
    return "\n".join([
        "<h2 id=\"plots\">Plots</h2>",
        plots.verdict_matrix(rows, [AREA_TITLES[a] for a in AREAS], cells),
        plots.scatter_panels("Value error relative to the bound vs magnitude (canonical comparison), per framework and dtype",
                             err_panels, x_label="max |observed value|", y_label="|error| / bound"),
        plots.scatter_panels("Gradient error relative to the bound vs magnitude (against the observed fingerprint point)",
                             grad_panels, x_label="max |gradient|", y_label="|error| / bound"),
    ])


def _head(model: ReportModel) -> str:
    """Document head, title, the result box, the run's seed and size."""
    r = model.result
    n_fail = len(model.failures)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>klconform conformance report</title>", f"<style>{CSS}</style></head><body>",
           "<h1>klconform conformance report</h1>"]
    box = "loud" if n_fail else "ok"
    out.append(f'<div class="{box}"><b>{"No unexpected discrepancy" if not n_fail else f"{n_fail} unexpected finding(s)"}'
               f" (exit status {model.exit_status})</b><br><small>Exit status: {E(EXIT_DOC)}.</small></div>")
    if not r.complete:
        out.append('<div class="loud"><b>Partial results</b>: the run did not finish; only the adapters listed completed.</div>')
    out.append(f"<p>Seed {r.seed}, {E(case_counts(r)).replace('`', '')}, started {E(str(r.started_at or '?'))}"
               + (f", {r.elapsed_s:.1f} s" if r.elapsed_s is not None else "") + ".</p>")
    return "\n".join(out)


def _summary(model: ReportModel) -> str:
    """The verdict matrix: adapters x areas, cells coloured by state."""
    rows, classes = [], []
    for v in model.runs:
        if v.run.status == "ok":
            rows.append([E(v.label)] + [E(v.cells[a].text) for a in AREAS])
            classes.append([""] + [v.cells[a].state for a in AREAS])
    return ('<h2 id="summary">Summary</h2><p>Verdicts against the canonical definition per framework-version and '
            "dimension (✓ match, ✗ discrepancy).</p>\n"
            + _table(["framework-version"] + [AREA_TITLES[a] for a in AREAS], rows, classes) + _not_run(model))


def _fingerprints(model: ReportModel) -> str:
    """Observed family point per adapter next to the documented one; loud when none fits."""
    out = ['<h2 id="fingerprints">Semantic fingerprints</h2>'
           "<p>The family point each adapter's <em>observed</em> outcomes match (inferred from its outcomes, not "
           "copied from the adapter), next to its documented semantics.</p>"
           f"<p>Canonical definition: {E(CANONICAL)}.</p>"]
    frows = []
    for v in model.runs:
        if v.run.status != "ok":
            continue
        fp = v.fingerprint or {}
        doc = fp.get("documented") or {}
        status = fp.get("status", "no_data")
        verdict = {"exact": "explains every outcome", "partial": '<span class="fails">explains most outcomes only</span>',
                   "unexplained": "explains under 90% of outcomes",
                   "no_data": "no outcomes"}.get(status, E(status))
        frows.append([E(v.label), f"<code>{E((fp.get('observed') or {}).get('name') or '—')}</code>",
                      f"{fp.get('agree', 0)}/{fp.get('compared', 0)} ({verdict})",
                      f"<code>{E(v.documented_name or doc.get('name') or '—')}</code>",
                      f"{doc.get('agree', '—')}/{fp.get('compared', 0)}" if doc else "—",
                      f"{(fp.get('canonical') or {}).get('agree', '—')}/{fp.get('compared', 0)}",
                      E(", ".join(fp.get("differs_from_documented") or []) or "—"),
                      E(", ".join(fp.get("ties") or []) or "—")])
    out.append(_table(["framework-version", "observed (inferred)", "agreement", "documented", "documented agrees",
                       "canonical agrees", "observed differs from documented in", "equally good"], frows))
    items = []
    for v in model.runs:
        fp = v.fingerprint or {}
        if v.run.status != "ok" or not fp.get("observed"):
            continue
        rest = recorded_rest(v)
        items.append(f"<li><b>{E(v.run.adapter)}</b>: <code>{E(fp['observed']['name'])}</code> explains "
                     f"{fp.get('agree')}/{fp.get('compared')}"
                     + ("; the rest is recorded: " + ", ".join(f"<code>{E(r)}</code>" for r in rest) if rest else "")
                     + "</li>")
        loud = alarm(v)
        if loud:
            out.append(f'<div class="loud"><b>{E(loud)}</b></div>')
    out.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(out)


def _first_screen(model: ReportModel) -> str:
    """What each API computes (observed), marked where it differs from its docs / canon."""
    rows = []
    for v in model.runs:
        if v.run.status == "ok":
            fs = first_screen(v)
            rows.append([E(v.label)] + [E(fs[c]) for c in FIRST_SCREEN_COLUMNS])
    return ('<h2 id="computes">What each API computes</h2><p>Observed behaviour in the reference family\'s '
            "vocabulary (SPEC.md §Family); ≠doc: differs from the documented semantics, ≠canon: from the canonical "
            "definition.</p>\n" + _table(["framework-version", *FIRST_SCREEN_COLUMNS], rows) + _not_run(model))


def _not_run(model: ReportModel) -> str:
    """One paragraph for the adapter runs that did not run (the same line as report.md)."""
    line = not_run_line(model)
    return f"<p class=unchecked>{E(line[0])}</p>" if line else ""


def _claims(model: ReportModel) -> str:
    """Documentation claims and whether the observed behaviour bears them out."""
    crow = []
    for c in model.claims:
        cls = {"holds": "holds", "does not hold": "fails", "not checked": "unchecked"}[c.status]
        src = E(c.claim.source) + (f' <a href="{E(c.claim.url)}">{E(c.claim.url)}</a>' if c.claim.url else "")
        note = f"<br><small>{E(c.claim.note)}</small>" if c.claim.note else ""
        crow.append([f"<code>{E(c.claim.id)}</code><br>{E(c.claim.topic)}", E(c.run or "—"),
                     f'<span class="{cls}">{E(c.status)}</span>',
                     f"<q>{E(c.claim.quote)}</q><br><small>{src}</small>{note}", E(c.evidence)])
    return ('<h2 id="claims">Documentation claims</h2><p>Claims made by framework docs and the seed documents '
            "(<code>klconform/claims.toml</code>), checked against observed behaviour.</p>\n"
            + _table(["claim", "adapter", "status", "quote and source", "evidence"], crow))


def _discrepancies(model: ReportModel) -> str:
    """Every discrepancy group per adapter, with its counterexample and citation."""
    out = ['<h2 id="discrepancies">Discrepancies</h2>']
    for v in model.runs:
        out.append(f"<h3>{E(v.label)}</h3>")
        if v.run.status != "ok":
            out.append(f"<p>Not run: {E(v.run.status)} — {E(v.run.reason)}</p>")
            continue
        stat = ", ".join(f"{k}: {n}" for k, n in sorted(v.counts.items()))
        out.append(f"<p>API <code>{E(v.run.api)}</code>; {len(v.run.outcomes)} outcomes ({E(stat)}); docs: "
                   f"{E(v.run.documented_doc or '—')}</p>")
        out.append("".join(_group(g) for g in v.groups) or "<p>No discrepancy.</p>")
        if v.run.unmatched_known:
            out.append("<p>Known records not observed in this run: "
                       + ", ".join(f"<code>{E(x)}</code>" for x in v.run.unmatched_known) + "</p>")
    return "\n".join(out)


def _unexpected(model: ReportModel) -> str:
    """What fails CI (:func:`klconform.unexpected.unexpected_findings`)."""
    return '<h2 id="unexpected">Unexpected findings</h2>\n' + (
        "<ul>" + "".join(f"<li>{E(f)}</li>" for f in model.failures) + "</ul>" if model.failures
        else "<p>None: every discrepancy is a recorded, cited known discrepancy.</p>")


def _environment(model: ReportModel) -> str:
    """Per adapter: framework, versions, platform; the Hypothesis settings; the reference."""
    erows = []
    for v in model.runs:
        e = v.run.env or {}
        erows.append([E(v.run.adapter), E(str(e.get("framework", "—"))), E(str(e.get("version", "—"))),
                      E(python_text(e))] + [E(str(e.get(k, "—"))) for k in ("numpy", "platform", "device")]
                     + [E(v.run.status), E(v.run.reason or "")])
    out = ['<h2 id="environment">Environment</h2>',
           _table(["adapter", "framework", "version", "python", "numpy", "platform", "device", "status", "reason"], erows),
           f"<p>Hypothesis: <code>{E(json.dumps(model.result.hypothesis, sort_keys=True))}</code></p>"]
    if model.reference_note:
        out.append(f"<p>Reference: {E(model.reference_note)}.</p>")
    return "\n".join(out)


def _reproduction(model: ReportModel) -> str:
    """The commands that reproduce the results and re-render the report."""
    r = model.result
    return ('<h2 id="reproduction">Reproduction</h2><p>Re-run exactly this report (same seed, same framework '
            "versions → the same results.json apart from the timing fields <code>started_at</code> and "
            "<code>elapsed_s</code>):</p>"
            f"<pre>{E(run_command(r))}</pre>"
            f"<p>or, from a fresh clone (builds the environments first):</p><pre>{E(bootstrap_command(r))}</pre>"
            "<p>Re-render from the results file: <code>python -m klconform report results.json --out DIR</code>.</p>")


# The report, section by section.
RENDER_STEPS = (_head, _first_screen, _summary, _fingerprints, versions.html_section, coverage.html_section, scale.html_section, _claims, _discrepancies, _unexpected, _plots, _environment,
                _reproduction)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>", "", title).lower()).strip("-") or "section"


def _with_contents(head: str, body: str) -> str:
    """Every <h2> gets an id; a table of contents after the result box links to them."""
    body = re.sub(r"<h2>(.*?)</h2>", lambda m: f'<h2 id="{_slug(m.group(1))}">{m.group(1)}</h2>', body)
    links = "".join(f'<li><a href="#{i}">{t}</a></li>' for i, t in re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', body))
    return f'{head}\n<nav class="toc" aria-label="Contents"><b>Contents</b><ol>{links}</ol></nav>\n{body}'


def render(model: ReportModel) -> str:
    parts = [step(model) for step in RENDER_STEPS]
    return "\n".join([_with_contents(parts[0], "\n".join(p for p in parts[1:] if p)), "</body></html>"])


def render_html(result: RunResult, model: ReportModel | None = None) -> str:
    """report.html for ``result``."""
    return render(model or build_model(result))

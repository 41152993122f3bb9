"""The interop dashboard as one self-contained HTML page (inline CSS, no script, no external
resource): the first screen answers who conforms on the case kinds readers ask about and
what changed between versions; then the scores, the clause matrix, the history, the
records, the linked cases.  The model is :mod:`.dashboard`; docs/dashboard.md."""
from __future__ import annotations

import re
from html import escape as E

import numpy as np

from klconform.reference.spec import clause_text

from ..case import Case
from . import dashboard as D
from .summary import _fmt_array

# The case kinds on the first screen: what readers ask first.
GLANCE = ("zero-target", "zero-pred", "reduction=batchmean", "float16", "bfloat16", "nan-input", "inf-input", "empty",
          "weighted", "grad")
SYMBOL = {D.CONFORMS: "✓", D.RECORDED: "✗", D.UNEXPECTED: "!", D.DIFFERS: "✗", D.NOT_APPLICABLE: "–",
          D.NOT_COVERED: "?", D.NO_CASE: "·", D.NO_DETAIL: ""}
CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1500px;padding:.5em 1em 3em;color:#222;line-height:1.35}
h1{font-size:1.45em;margin:.3em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}h3{font-size:1.02em;margin:1.1em 0 .3em}
p,li{font-size:14px;overflow-wrap:anywhere}.meta{font-size:13px;color:#444;margin:.2em 0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
a{color:#0b57a4}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #e4e4e4;margin:.4em 0 1em}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #d6d6d6;padding:2px 4px;text-align:center;vertical-align:middle}
th{background:#f4f4f4;font-weight:600}
th.row,td.row{text-align:left;position:sticky;left:0;background:#fafafa;z-index:1;white-space:nowrap;max-width:15em;overflow:hidden;text-overflow:ellipsis}
th.vert{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;font-weight:500;padding:4px 2px;font-size:11px}
th.fam{background:#e9eef5}
th.base{font-style:italic;color:#555}
tr.sec td{background:#e9eef5;text-align:left;font-weight:600}
td.c{min-width:1.9em;padding:1px 2px}
td.c a{color:inherit;text-decoration:none;display:block}
.conforms{background:#d9f0d3}.recorded{background:#fdd9b5}.unexpected{background:#f4a3a3;font-weight:bold}
.differs{background:repeating-linear-gradient(45deg,#fde7cf,#fde7cf 4px,#f6f6f6 4px,#f6f6f6 8px)}
.not_applicable{background:#fff;color:#999}.not_covered{background:#fff8c5}.no_case{background:#fff;color:#aaa}
.no_detail{background:#f1f1f1}
td.score{font-variant-numeric:tabular-nums;white-space:nowrap}
.pct{display:block;font-size:10px;color:#333}
ul.legend{display:flex;flex-wrap:wrap;gap:3px 14px;list-style:none;padding:0;margin:.4em 0}
ul.legend li{font-size:12px;display:flex;align-items:center;gap:4px}
ul.legend b{display:inline-block;width:1.7em;text-align:center;border:1px solid #ccc;font-weight:600}
td.heat{font-weight:600}
.bar{display:inline-block;height:.7em;background:#4a8f3c;vertical-align:middle;margin-left:4px}
ul.changes li{margin:.15em 0}
li.note{color:#666}
dl.case{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:1px 10px;font-size:13px;margin:.2em 0 1em}
dl.case dt{font-weight:600}dl.case dd{margin:0;overflow-wrap:anywhere}
:target{outline:2px solid #0b57a4}
@media (max-width:700px){body{padding:.3em .5em 2em}h1{font-size:1.2em}th.row,td.row{max-width:9em}p,li{font-size:13px}}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


# Framework names as their users import them, for the group headers.
FAMILY_SHORT = {"tensorflow-probability": "tfp", "paddlepaddle": "paddle"}


def family_label(family: str) -> str:
    return FAMILY_SHORT.get(family, family)


def col_label(c: D.Column) -> str:
    """The column's API and version (without a local part such as +cpu: the column's title
    has it), without the framework its group header names."""
    api = c.adapter.partition(".")[2] if c.adapter.partition(".")[0] in (c.family, family_label(c.family)) else c.adapter
    return f"{api} {c.version.partition('+')[0]}"


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.0f}%" if d else "–"


def _score(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


SHORT = {D.CONFORMS: "conforms", D.RECORDED: "differs as recorded", D.UNEXPECTED: "differs unexpectedly",
         D.DIFFERS: "differs", D.NOT_APPLICABLE: "not applicable", D.NOT_COVERED: "not covered",
         D.NO_CASE: "no case", D.NO_DETAIL: "no clause detail"}


def _cell_title(row_title: str, c: D.Column, cell: D.Cell) -> str:
    n = cell.recorded + cell.unexpected + cell.differs
    parts = [f"{c.run} {c.version} · {row_title}: {SHORT[cell.state]}"]
    if cell.state != D.NO_DETAIL:
        parts.append(f"{cell.cases} cases" + (f", {n} differ" if n else "")
                     + (f" ({cell.unexpected} unexpectedly)" if cell.unexpected else ""))
    if cell.records:
        parts.append("records " + ", ".join(cell.records))
    return "; ".join(parts)


def _cell(row_title: str, c: D.Column, cell: D.Cell, linkable: set[str], *, pct: bool = False) -> str:
    """One matrix cell: the state's mark, the differing cases' count (or, ``pct``, the share
    of the cases that conform over a background from red to green), a link to the smallest case."""
    n = cell.recorded + cell.unexpected + cell.differs
    text = SYMBOL[cell.state]
    style = ""
    if pct and cell.state in (D.CONFORMS, D.RECORDED, D.UNEXPECTED, D.DIFFERS) and cell.cases:
        share = (cell.cases - n) / cell.cases
        text += f'<span class="pct">{_pct(cell.cases - n, cell.cases)}</span>'
        style = f' style="{_heat(share)}"'
    elif n:
        text += str(n)
    if cell.smallest and cell.smallest in linkable:
        text = f'<a href="#case-{E(cell.smallest)}">{text}</a>'
    return f'<td class="c {cell.state}"{style} title="{E(_cell_title(row_title, c, cell))}">{text}</td>'


def _header(cols: list[D.Column], lead: str, extra: str = "") -> str:
    fams: list[list] = []
    for c in cols:
        if fams and fams[-1][0] == c.family:
            fams[-1][1] += 1
        else:
            fams.append([c.family, 1])
    top = (f'<tr><th class="row" rowspan="2">{E(lead)}</th>' + (f'<th rowspan="2">{extra}</th>' if extra else "")
           + "".join(f'<th class="fam" colspan="{n}">{E(family_label(f))}</th>' for f, n in fams) + "</tr>")
    names = "".join(f'<th class="vert{" base" if c.source == "baseline" else ""}" title="{E(c.id)}'
                    f'{" — " + E(c.lacks) if c.lacks else ""}">{E(col_label(c))}{"ᵇ" if c.source == "baseline" else ""}</th>'
                    for c in cols)
    return f"<thead>{top}<tr>{names}</tr></thead>"


def _legend(heat: bool = False) -> str:
    items = "".join(f'<li><b class="{s}">{SYMBOL[s] or "&nbsp;"}</b>{E(w)}</li>'
                    for s, w in D.STATE_WORDS.items())
    if heat:
        items += ('<li><b style="background:hsl(0,70%,86%)">&nbsp;</b><b style="background:hsl(60,70%,86%)">&nbsp;</b>'
                  '<b style="background:hsl(120,55%,82%)">&nbsp;</b>share of the cases that conform: 0 %, 50 %, 100 %</li>')
    return f'<ul class="legend">{items}<li>ᵇ a baseline column</li></ul>'


def _heat(share: float) -> str:
    """A background from red (no case of the kind conforms) to green (all do)."""
    return f"background:hsl({120 * share:.0f},{70 - 15 * share:.0f}%,{86 - 4 * share:.0f}%)"


def render(board: D.Dashboard, *, json_name: str = "dashboard.json", csv_name: str = "dashboard.csv") -> str:
    cols = [c for c in board.columns if c.in_matrix]
    linkable = set(board.cases)
    score = board.scores[0] if board.scores else None
    digest = score["corpus_digest"] if score else ""
    clause_rows = [r for r in board.rows if r.type == "clause"]
    kind_rows = {r.id: r for r in board.rows if r.type == "case_kind"}
    n_base = sum(c.source == "baseline" for c in cols)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>klconform interop dashboard</title>", f"<style>{CSS}</style></head><body>",
           "<h1>klconform interop dashboard: the KL-divergence loss across frameworks</h1>"]
    corpus_cases = next((i.get("corpus_cases") for i in board.inputs if i["kind"] == "results"
                         and i["corpus_digest"] == digest), None)
    base_corpora = ", ".join(f"<code>{E(x)}</code>" for x in dict.fromkeys(c.corpus_digest for c in cols
                                                                          if c.source == "baseline"))
    out.append(f'<p class="meta">{len(cols)} adapter-versions ({len(cols) - n_base} from results with clause detail'
               + (f', {n_base} from baselines only (ᵇ, corpus {base_corpora})' if n_base else "")
               + f') × {len(clause_rows)} SPEC clauses in {len(board.sections)} sections. '
               f'Scores on the frozen corpus <code>{E(digest)}</code>'
               + (f" ({corpus_cases} cases)" if corpus_cases else "") +
               f'. Data: <a href="{E(json_name)}">{E(json_name)}</a>, <a href="{E(csv_name)}">{E(csv_name)}</a>; '
               f'<a href="#about">how to read it</a>.</p>')
    out.append(_changes_summary(board))
    out.append(_glance(board, cols, kind_rows, linkable, score))
    out.append(_scores(board, score))
    out.append(_matrix(board, cols, clause_rows, linkable, score))
    out.append(_kinds(board, cols, kind_rows, linkable))
    out.append(_history(board))
    out.append(_records(board))
    out.append(_cases(board))
    out.append(_about(board))
    out.append("</body></html>")
    return "\n".join(out)


def _glance(board, cols, kind_rows, linkable, score) -> str:
    rows = []
    for k in GLANCE:
        r = kind_rows[k]
        rows.append(f'<tr><td class="row">{E(r.title)}</td>' + "".join(_cell(r.title, c, r.cells[c.id], linkable, pct=True)
                                                                   for c in cols) + "</tr>")
    if score:
        cs = score["column_scores"]
        rows.append('<tr><td class="row" title="share of the SPEC clauses compared on the column that it conforms to '
                    f'(corpus {E(score["corpus_digest"])})">clauses conformed to, corpus <code>{E(score["corpus_digest"])}'
                    '</code></td>'
                    + "".join(f'<td class="score" title="{E(c.id)}: {cs[c.id]["conforms"]} of {cs[c.id]["compared"]} '
                              f'compared clauses (corpus {E(score["corpus_digest"])})">{_score(cs[c.id]["score"])}</td>'
                              if c.id in cs else '<td class="score" title="baseline: no clause detail">–</td>' for c in cols)
                    + "</tr>")
    return ('<h2 id="glance">Who conforms, by kind of case</h2>'
            "<p>Does each adapter-version compute what SPEC.md says on the compared cases of a kind (✓ on all of "
            "them), or does it differ where a known record says so (✗) or unexpectedly (!)? The percentage is the "
            "share of those cases it gets right; a click opens the smallest case.</p>"
            + _legend(heat=True)
            + f'<div class="scroll"><table class="glance">{_header(cols, "kind of case")}<tbody>{"".join(rows)}'
              "</tbody></table></div>")


def _step_title(board, step) -> str:
    """``mxnet.KLDivLoss 1.8.0 → 1.9.1``; ``tf_keras.KLDivergence 2.21.0 → keras.KLDivergence 3.15.1``."""
    a, b = board.column(step["old"]), board.column(step["new"])
    return f"{a.adapter} {a.version} → " + (f"{b.adapter} " if b.adapter != a.adapter else "") + b.version


def _changes_summary(board) -> str:
    """Each version step once (on the first corpus that has it, the scored one first): its
    count of changes and first sentence; the steps without a change on one line."""
    seen: set[tuple] = set()
    items, quiet = [], []
    for g in board.history.get("groups", []):
        for s in g["steps"]:
            a, b = board.column(s["old"]), board.column(s["new"])
            key = (a.line, a.version, b.version)
            if key in seen:
                continue
            seen.add(key)
            real = [c for c in s["changes"] if c["is_change"]]
            link = f'<a href="#{E(s["id"])}">{E(_step_title(board, s))}</a>'
            if not real:
                quiet.append(link)
                continue
            first = real[0]["sentence"]
            items.append(f"<li>{link}: {len(real)} change{'s' if len(real) != 1 else ''}, first: {E(first)}</li>")
    if quiet:
        items.append("<li>No behaviour change: " + ", ".join(quiet) + "</li>")
    if not items:
        return ""
    nc = board.history.get("not_compared") or []
    tail = f"<li>Not compared (measured on different corpora only): {E('; '.join(nc))}</li>" if nc else ""
    return ('<h2 id="changes">What changed between versions</h2>'
            f'<ul class="changes">{"".join(items)}{tail}</ul>')


def _scores(board, score) -> str:
    if not score:
        return ""
    d = E(score["corpus_digest"])
    rows = []
    for s in board.sections:
        v = score["sections"][s["number"]]
        w = 0 if v["score"] is None else round(80 * v["score"])
        rows.append(f'<tr><td style="text-align:left">§{E(s["number"])} {E(s["title"])}</td>'
                    f'<td class="score">{_score(v["score"])}<span class="bar" style="width:{w}px"></span></td>'
                    f'<td>{v["clauses_scored"]} of {v["clauses"]}</td><td><code>{d}</code></td></tr>')
    rows.append(f'<tr><td style="text-align:left"><b>interop (mean of the sections)</b></td><td class="score"><b>'
                f'{_score(score["interop"])}</b></td><td></td><td><code>{d}</code></td></tr>')
    return ('<h2 id="scores">Interop scores</h2>'
            f"<p>Per clause, the share of the {len(score['columns'])} adapter-versions with clause detail on corpus "
            f"<code>{d}</code> that conform, among those the clause was compared on (not applicable and not covered "
            "leave it out); per section, the mean of its clauses' scores (as wpt.fyi averages its tests per area). "
            "Computed on the frozen corpus only: a score moves when a framework or the corpus changes.</p>"
            '<div class="scroll"><table><thead><tr><th>SPEC section</th><th>score</th>'
            f'<th>clauses scored</th><th>corpus</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _matrix(board, cols, clause_rows, linkable, score) -> str:
    per = score["clauses"] if score else {}
    d = E(score["corpus_digest"]) if score else ""
    body = []
    by_sec = {s["number"]: s for s in board.sections}
    last = None
    for r in clause_rows:
        if r.section != last:
            s = by_sec[r.section]
            sv = score["sections"][r.section]["score"] if score else None
            body.append(f'<tr class="sec" id="sec-{E(r.section)}"><td class="row">§{E(r.section)}</td>'
                        f'<td class="score" title="section score, corpus {d}">{_score(sv)}</td>'
                        f'<td colspan="{len(cols)}">{E(s["title"])}</td></tr>')
            last = r.section
        try:
            text = clause_text(r.id)
        except KeyError:
            text = ""
        cs = per.get(r.id, {})
        body.append(f'<tr id="clause-{E(r.id)}"><td class="row" title="{E(text[:400])}">{E(r.id)}</td>'
                    f'<td class="score" title="{cs.get("conforming", 0)} of {cs.get("compared", 0)} conform (corpus {d})">'
                    f'{_score(cs.get("score"))}</td>'
                    + "".join(_cell(r.id, c, r.cells[c.id], linkable) for c in cols) + "</tr>")
    if score:
        cs = score["column_scores"]
        body.append(f'<tr><td class="row"><b>clauses conformed to</b></td><td class="score"><code title="{d}">{d[:8]}</code></td>'
                    + "".join(f'<td class="score" title="{cs[c.id]["conforms"]} of {cs[c.id]["compared"]} compared '
                              f'clauses; {cs[c.id]["not_applicable"]} not applicable, {cs[c.id]["not_covered"]} not '
                              f'covered (corpus {d})">{_score(cs[c.id]["score"])}</td>' if c.id in cs else "<td>–</td>"
                              for c in cols) + "</tr>")
    head = f'interop<br><code title="{d}">{d[:8]}</code>'
    return ('<h2 id="matrix">The matrix: SPEC clauses × adapter-versions</h2>'
            "<p>A clause differs on a column when a canonical discrepancy verdict on a compared case cites it among the "
            "clauses that decide the verdict (klconform/deciding.py); it conforms when a compared case reaches it "
            "and none does. The mark's number counts the differing cases; hover for the counts and record ids; a "
            f"click opens the smallest case. The score column is the clause's interop score (corpus <code>{d}</code>). "
            "Baseline columns (ᵇ) keep verdict classes only: they fill SPEC §10 and the case kinds below.</p>"
            f'<div class="scroll"><table class="matrix">{_header(cols, "SPEC clause", head)}'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _kinds(board, cols, kind_rows, linkable) -> str:
    rows = "".join(f'<tr id="kind-{E(_slug(r.id))}"><td class="row">{E(r.title)}</td>'
                   + "".join(_cell(r.title, c, r.cells[c.id], linkable, pct=True) for c in cols) + "</tr>"
                   for r in kind_rows.values())
    return ('<h2 id="kinds">Every kind of case</h2><p>As the first table, for every tag <code>klconform diff</code> '
            "words cases with (dtype, reduction, encodings, special inputs).</p>"
            f'<div class="scroll"><table>{_header(cols, "kind of case")}<tbody>{rows}</tbody></table></div>')


def _history(board) -> str:
    groups = board.history.get("groups", [])
    nc = board.history.get("not_compared") or []
    parts = ['<h2 id="history">History across framework versions</h2>',
             "<p>Consecutive versions of one API (Keras 2's tf_keras before Keras 3) measured on one corpus, with every "
             "sentence of <code>klconform diff</code> between them; each row whose cell moved links to the sentences "
             "about its cases. Versions measured on different corpora are never compared.</p>"]
    if not groups:
        parts.append("<p>No API has two versions on one corpus in these inputs.</p>")
    for g in groups:
        parts.append(f'<h3>Corpus <code>{E(g["corpus_digest"])}</code></h3>')
        for s in g["steps"]:
            a, b = board.column(s["old"]), board.column(s["new"])
            real = [c for c in s["changes"] if c["is_change"]]
            parts.append(f'<h3 id="{E(s["id"])}">{E(_step_title(board, s))} '
                         f'<small>({len(real)} change{"s" if len(real) != 1 else ""})</small></h3>')
            if s["moved"]:
                rows = []
                for key, ids in s["moved"].items():
                    typ, _, rid = key.partition(":")
                    row = next(r for r in board.rows if r.type == typ and r.id == rid)
                    links = _sentence_links(s, ids)
                    ca, cb = row.cells[a.id], row.cells[b.id]
                    rows.append(f'<tr><td class="row">{E(row.title if typ == "case_kind" else rid)}</td>'
                                + _cell(row.title, a, ca, set()) + _cell(row.title, b, cb, set())
                                + f'<td style="text-align:left">{links}</td></tr>')
                parts.append('<div class="scroll"><table><thead><tr><th class="row">row that moved</th>'
                             f'<th>{E(a.version)}</th><th>{E(b.version)}</th><th>sentences</th></tr></thead>'
                             f'<tbody>{"".join(rows)}</tbody></table></div>')
            items = []
            for c in s["changes"]:
                eg = ", ".join(c["cases"][:5]) + (", …" if c["cases_total"] > 5 else "")
                n = c["cases_total"]
                items.append(f'<li id="{E(c["id"])}"{"" if c["is_change"] else " class=note"}>'
                             f'<b>{E(c["id"].rsplit("-", 1)[1])}.</b> {E(c["sentence"])}'
                             + (f' <small>({n} case{"s" if n != 1 else ""}: <code>{E(eg)}</code>)</small>' if n else "")
                             + "</li>")
            parts.append(f'<ul class="changes">{"".join(items)}</ul>' if items else "<p>No behaviour change.</p>")
    if nc:
        parts.append("<p>Not compared: " + E("; ".join(nc)) + ".</p>")
    return "\n".join(parts)


def _sentence_links(step, ids: list[str]) -> str:
    """The first sentence about a row, linked, and how many more."""
    if not ids:
        return "—"
    text = {c["id"]: c["sentence"] for c in step["changes"]}
    first = text[ids[0]]
    first = first if len(first) <= 90 else first[:88] + "…"
    more = f' <a href="#{E(ids[1])}">+{len(ids) - 1} more</a>' if len(ids) > 1 else ""
    return f'<a href="#{E(ids[0])}">{E(first)}</a>{more}'


def _records(board) -> str:
    cited = {rid for r in board.rows for cell in r.cells.values() for rid in cell.records}
    items = []
    for rid in sorted(cited):
        rec = board.records.get(rid, {})
        cit = rec.get("citation", "")
        link = f'<a href="{E(cit)}">{E(cit)}</a>' if cit.startswith(("http://", "https://")) else E(cit)
        cols = ", ".join(sorted({board.column(c).run for c in rec.get("columns", [])}))
        items.append(f'<li id="rec-{E(rid)}"><code>{E(rid)}</code> ({E(rec.get("cls", ""))}; {E(cols)}): '
                     f'{E(rec.get("when", ""))} — {link}</li>')
    return ('<h2 id="records">Known records cited</h2><p>The reviewed records (klconform/known/) that cover the '
            "discrepancies marked ✗, with their upstream references.</p>" + f'<ul>{"".join(items)}</ul>')


def _cases(board) -> str:
    parts = ['<h2 id="cases">Cases the cells link to</h2>',
             "<p>The smallest case of each cell; <code>python -m klconform show DIGEST --results RESULTS</code> "
             "prints it with the reference's answer and every run's outcome.</p>"]
    cols = [c for c in board.columns if c.in_matrix]
    shows: dict[str, list[str]] = {}
    for r in board.rows:
        for c in cols:
            cell = r.cells[c.id]
            if cell.smallest in board.cases and cell.state in (D.RECORDED, D.UNEXPECTED):
                recs = ", ".join(f'<a href="#rec-{E(x)}">{E(x)}</a>' for x in cell.records)
                shows.setdefault(cell.smallest, []).append(
                    f"{E(c.run)} {E(c.version)} · {E(r.id if r.type == 'clause' else r.title)}: "
                    f"{SHORT[cell.state]}" + (f" ({recs})" if recs else ""))
    for d, j in sorted(board.cases.items(), key=lambda kv: kv[0]):
        try:
            case = Case.from_json({k: v for k, v in j.items() if k != "_results"})
            target, pred = _fmt_array(np.asarray(case.target), 16), _fmt_array(np.asarray(case.pred), 16)
            shape = f"P {list(case.target.shape)}, Q {list(case.pred.shape)}"
        except Exception:  # noqa: BLE001 - a case that does not decode is shown by its fields
            target = pred = "—"
            shape = ""
        q = (f"{j.get('dtype')}, target {j.get('target_kind')}, pred {j.get('pred_kind')}, reduction "
             f"{j.get('reduction')}, {shape}" + (", weighted" if j.get("weight") is not None
                                                 or j.get("sample_weight") is not None else ""))
        parts.append(f'<dl class="case" id="case-{E(d)}"><dt>case</dt><dd><code>{E(d)}</code> {E(j.get("label", ""))}</dd>'
                     f"<dt>question</dt><dd>{E(q)}</dd><dt>target P</dt><dd><code>{E(target)}</code></dd>"
                     f"<dt>pred</dt><dd><code>{E(pred)}</code></dd>" + _differs_here(shows.get(d, []))
                     + f"<dt>show</dt><dd><code>python -m klconform show {E(d)} --results "
                       f"{E(j.get('_results', 'RESULTS'))}</code></dd></dl>")
    return "\n".join(parts)


def _differs_here(lines: list[str], limit: int = 8) -> str:
    """The cells that differ on this case (their records linked), at most ``limit``."""
    if not lines:
        return ""
    more = f"<br>… {len(lines) - limit} more" if len(lines) > limit else ""
    return f"<dt>differs in</dt><dd>{'<br>'.join(lines[:limit])}{more}</dd>"


def _about(board) -> str:
    inputs = []
    for i in board.inputs:
        if i["kind"] == "results":
            inputs.append(f"<li>results <code>{E(i['path'])}</code>: corpus <code>{E(i['corpus_digest'])}</code> "
                          f"({i['corpus_cases']} cases), {len(i['runs'])} adapter runs"
                          + (f"; not run: {E(', '.join(i['not_run']))}" if i["not_run"] else "") + "</li>")
    base = [i for i in board.inputs if i["kind"] == "baseline"]
    if base:
        shown = sum(i["shown"] for i in base)
        inputs.append(f"<li>{len(base)} baseline files, {shown} shown ({len(base) - shown} repeat an adapter-version "
                      "already given on the same corpus); corpora: "
                      + ", ".join(f"<code>{E(d)}</code>" for d in dict.fromkeys(i["corpus_digest"] for i in base))
                      + "</li>")
    notes = "".join(f"<li>{E(n)}</li>" for n in board.notes)
    return ('<h2 id="about">How to read it</h2>'
            "<p>Columns are adapter-versions (one API of one framework version), grouped by framework, versions in "
            "order; rows are the clauses of reference/SPEC.md, grouped by section, and kinds of case. A results "
            "column is judged on the compared cases of the frozen corpus (large cases and shrunk counterexamples "
            "left out) against the canonical definition. Not applicable comes from the capabilities each run "
            "records; not covered means no compared case reached the clause. Columns measured on another corpus "
            "than the scored one are never mixed into a score. Details and the JSON/CSV schema: docs/dashboard.md "
            "in the klconform repository.</p>"
            f"<h3>Inputs</h3><ul>{''.join(inputs)}</ul>" + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else ""))

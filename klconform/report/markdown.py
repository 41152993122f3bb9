"""report.md: the run at a glance, then every finding in detail (for a PR comment or a terminal)."""
from __future__ import annotations

import json

from ..results import RunResult
from ..areas import AREAS
from .summary import AREA_TITLES, EXIT_DOC, Group, ReportModel, RunView, build_model
from . import coverage, versions

CANONICAL = ("KL(P‖Q) = Σ p·log(p/q) along the class axis, on the values as given (no normalisation, "
             "no epsilon), 0·log(0/q) = 0, p>0 & q=0 → +∞, then the reduction asked (SPEC.md KL-DEF-1, "
             "KL-ZERO-1, KL-ZERO-2, §4)")
SECTIONS = ("Summary", "Semantic fingerprints", "Corpus coverage", "Documentation claims", "Discrepancies",
            "Unexpected findings", "Environment", "Reproduction")


def python_text(env: dict) -> str:
    """``3.11.7 (/path/to/python)`` from a worker environment."""
    ver, path = env.get("python_version"), env.get("python")
    return f"{ver} ({path})" if ver and path else (ver or path or "—")


def bootstrap_command(r: RunResult) -> str:
    """The reproduction command through the README's bootstrap (same options)."""
    cmd = r.command or f"python -m klconform run --seed {r.seed}"
    return cmd.replace("python -m klconform run", "python3 bootstrap.py run", 1)


def cell(text) -> str:
    """A markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or " "


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


def fingerprint_row(v: RunView) -> list[str]:
    fp = v.fingerprint or {}
    obs = (fp.get("observed") or {}).get("name") or "—"
    status = fp.get("status", "no_data")
    agree = f"{fp.get('agree', 0)}/{fp.get('compared', 0)}"
    canon = fp.get("canonical") or {}
    doc = fp.get("documented") or {}
    verdict = {"exact": "explains every outcome", "partial": "**explains most outcomes only**",
               "unexplained": "**NO POINT OF THE FAMILY EXPLAINS THIS BEHAVIOUR**",
               "no_data": "no outcomes"}.get(status, status)
    differs = ", ".join(fp.get("differs_from_documented") or []) or "—"
    return [v.label, obs, f"{agree} ({verdict})", v.documented_name or doc.get("name") or "—",
            f"{doc.get('agree', '—')}/{fp.get('compared', 0)}" if doc else "—",
            f"{canon.get('agree', '—')}/{fp.get('compared', 0)}", differs]


def group_lines(g: Group) -> list[str]:
    tag = f"known `{g.known}`" if g.known else "**NEW**"
    eb = f" → `{g.explained_by}`" if g.explained_by else ""
    out = [f"#### {g.cls} vs {g.against}{eb} — {g.count} case(s) — {tag}", ""]
    out.append(f"- SPEC clauses: {', '.join(f'`{c}`' for c in g.clauses)}")
    if g.when:
        out.append(f"- condition: {g.when}")
    if g.citation:
        out.append(f"- upstream reference: {g.citation}")
    out.append(f"- detail: {g.detail}")
    e = g.example
    if e:
        out += ["- minimal counterexample"
                + (f" (`{e.label}`, case `{e.digest}`; {e.shrink})" if e.label else f" (case `{e.digest}`; {e.shrink})") + ":",
                f"  - question: {e.question}",
                f"  - target P: `{e.target}`",
                f"  - pred: `{e.pred}`",
                f"  - expected ({e.point}): `{e.expected}`",
                f"  - observed: `{e.observed}`",
                f"  - bound: `{e.bound}`"]
        if e.native_call:
            out.append(f"  - native call: `{e.native_call}`")
        if e.blob:
            out.append(f"  - reproduce: `klconform.engine.case_from_blob(\"{e.blob[:60]}…\")` (full blob in results.json)"
                       if len(e.blob) > 60 else f"  - reproduce: `klconform.engine.case_from_blob(\"{e.blob}\")`")
    out.append("")
    return out


def header_section(model: ReportModel) -> list[str]:
    """Title, the result and exit status, the run's seed and size."""
    r = model.result
    out = ["# klconform conformance report", ""]
    n_fail = len(model.failures)
    out.append(f"**Result: {'no unexpected discrepancy' if not n_fail else f'{n_fail} unexpected finding(s)'} "
               f"(exit status {model.exit_status})** — exit status: {EXIT_DOC}.")
    if not r.complete:
        out.append("")
        out.append("> **Partial results**: the run did not finish; only the adapters listed completed.")
    out += ["", f"Seed {r.seed}, {len(r.cases)} cases (corpus digest `{r.corpus_digest}`), "
                f"{len(r.runs)} adapter run(s), started {r.started_at or '?'}"
                + (f", {r.elapsed_s:.1f} s" if r.elapsed_s is not None else "") + ".", ""]
    return out


def summary_section(model: ReportModel) -> list[str]:
    """The verdict matrix: adapters x areas."""
    out = ["## Summary", "", "Verdicts against the canonical definition per framework-version and dimension: "
           "`✓` match, `✗` discrepancy (all of them are listed under Discrepancies).", ""]
    rows = []
    for v in model.runs:
        if v.run.status != "ok":
            rows.append([v.label] + [f"not run: {v.run.status}"] + [""] * (len(AREAS) - 1))
        else:
            rows.append([v.label] + [v.cells[a].text for a in AREAS])
    return out + table(["framework-version"] + [AREA_TITLES[a] for a in AREAS], rows) + [""]


def fingerprints_section(model: ReportModel) -> list[str]:
    """Observed family point per adapter next to the documented one; loud when none fits."""
    out = ["## Semantic fingerprints", "",
           "The family point each adapter's *observed* outcomes match (inferred from its outcomes by "
           "`klconform/fingerprint.py`, not copied from the adapter), next to its documented semantics.",
           "", f"Canonical definition: {CANONICAL}.", ""]
    out += table(["framework-version", "observed (inferred)", "agreement", "documented", "documented agrees",
                  "canonical agrees", "observed differs from documented in"],
                 [fingerprint_row(v) for v in model.runs if v.run.status == "ok"]) + [""]
    for v in model.runs:
        fp = v.fingerprint or {}
        if fp.get("status") in ("partial", "unexplained"):
            out.append(f"> **{v.run.adapter}: no point of the reference family explains all of its behaviour** — "
                       f"best {fp.get('agree')}/{fp.get('compared')} ({(fp.get('observed') or {}).get('name')}); "
                       f"unexplained cases e.g. {', '.join('`' + d + '`' for d in (fp.get('unexplained_cases') or [])[:3])}.")
            out.append("")
        if fp.get("ties"):
            out.append(f"- {v.run.adapter}: equally good on these cases: {', '.join('`' + t + '`' for t in fp['ties'])}")
    out.append("")
    return out


def claims_section(model: ReportModel) -> list[str]:
    """Documentation claims and whether the observed behaviour bears them out."""
    out = ["## Documentation claims", "",
           "Claims made by framework docs and the seed documents (`klconform/claims.toml`), checked against "
           "observed behaviour.", ""]
    crow = []
    for c in model.claims:
        src = c.claim.source + (f" <{c.claim.url}>" if c.claim.url else "")
        mark = {"holds": "✅ holds", "does not hold": "❌ does not hold", "not checked": "➖ not checked"}[c.status]
        crow.append([c.claim.id, c.run or "—", mark, f"“{c.claim.quote}” — {src}", c.evidence])
    return out + table(["claim", "adapter", "status", "quote and source", "evidence"], crow) + [""]


def discrepancies_section(model: ReportModel) -> list[str]:
    """Every discrepancy group per adapter, with its counterexample and citation."""
    out = ["## Discrepancies", ""]
    for v in model.runs:
        out += [f"### {v.label}", ""]
        if v.run.status != "ok":
            out += [f"Not run: {v.run.status} — {v.run.reason}", ""]
            continue
        stat = ", ".join(f"{k}: {n}" for k, n in sorted(v.counts.items()))
        out += [f"API `{v.run.api}`; {len(v.run.outcomes)} outcomes ({stat}); docs: {v.run.documented_doc or '—'}", ""]
        if not v.groups:
            out += ["No discrepancy.", ""]
        for g in v.groups:
            out += group_lines(g)
        if v.run.unmatched_known:
            out += [f"Known records not observed in this run: {', '.join('`' + x + '`' for x in v.run.unmatched_known)}", ""]
    return out


def unexpected_section(model: ReportModel) -> list[str]:
    """What fails CI (:func:`klconform.unexpected.unexpected_findings`)."""
    out = ["## Unexpected findings", ""]
    out += [f"- {f}" for f in model.failures] or ["None: every discrepancy is a recorded, cited known discrepancy."]
    return out + [""]


def environment_section(model: ReportModel) -> list[str]:
    """Per adapter: framework, versions, platform; the Hypothesis settings; the reference."""
    out = ["## Environment", ""]
    erows = []
    for v in model.runs:
        e = v.run.env or {}
        erows.append([v.run.adapter, e.get("framework", "—"), e.get("version", "—"), python_text(e),
                      e.get("numpy", "—"), e.get("platform", "—"), e.get("device", "—"), v.run.status,
                      v.run.reason or ""])
    out += table(["adapter", "framework", "version", "python", "numpy", "platform", "device", "status", "reason"], erows)
    out += ["", f"Hypothesis: `{json.dumps(model.result.hypothesis, sort_keys=True)}`", ""]
    if model.reference_note:
        out += [f"Reference: {model.reference_note}.", ""]
    return out


def reproduction_section(model: ReportModel) -> list[str]:
    """The commands that reproduce the results and re-render the report."""
    r = model.result
    return ["## Reproduction", "", "Re-run exactly this report (same seed, same framework versions → the same "
            "results.json apart from the timing fields `started_at` and `elapsed_s`):", "", "```sh",
            r.command or f"python -m klconform run --seed {r.seed}", "```", "",
            "or, from a fresh clone (builds the environments first):", "", "```sh", bootstrap_command(r), "```", "",
            "Re-render from the results file: `python -m klconform report results.json --out DIR`.", ""]


# The report, section by section (the titles are SECTIONS).
RENDER_STEPS = (header_section, summary_section, fingerprints_section, versions.markdown_section, coverage.markdown_section, claims_section, discrepancies_section,
                unexpected_section, environment_section, reproduction_section)


def render(model: ReportModel) -> str:
    return "\n".join(line for step in RENDER_STEPS for line in step(model))


def render_markdown(result: RunResult, model: ReportModel | None = None) -> str:
    """report.md for ``result``."""
    return render(model or build_model(result))

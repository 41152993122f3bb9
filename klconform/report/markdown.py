"""report.md: the run at a glance, then every finding in detail (for a PR comment or a terminal)."""
from __future__ import annotations

import json

from ..results import RunResult
from ..areas import AREAS
from .summary import (AREA_TITLES, EXIT_DOC, FIRST_SCREEN_COLUMNS, ReportModel, RunView, alarm, build_model,
                      first_screen, recorded_rest, skipped_note)
from . import coverage, scale, versions

CANONICAL = ("KL(P‖Q) = Σ p·log(p/q) along the class axis, on the values as given (no normalisation, "
             "no epsilon), 0·log(0/q) = 0, p>0 & q=0 → +∞, then the reduction asked (SPEC.md KL-DEF-1, "
             "KL-ZERO-1, KL-ZERO-2, §4)")
SECTIONS = ("What each API computes", "Summary", "Semantic fingerprints", "Corpus coverage", "Documentation claims", "Discrepancies",
            "Recorded discrepancies", "Unexpected findings", "Environment", "Reproduction")
# Sections present only when the run has something for them (large cases; several devices).
OPTIONAL_SECTIONS = {"Corpus coverage": (scale.LARGE_TITLE, scale.DEVICE_TITLE)}
# report.md is read first (a PR comment, a terminal): one line per framework-version or per
# group of identical ones; long lists stop here and continue in report.html.
MAX_CHANGES = 6


def grouped(rows: list[list], key_from: int = 1) -> list[list]:
    """Rows whose cells from ``key_from`` on are equal, merged into one (first cells joined
    with ", "), in first-appearance order."""
    out: dict[tuple, list] = {}
    for r in rows:
        k = tuple(str(c) for c in r[key_from:])
        if k in out:
            out[k][0] = f"{out[k][0]}, {r[0]}"
        else:
            out[k] = [r[0], *r[key_from:]] if key_from == 1 else list(r)
    return list(out.values())


def not_run_line(model: ReportModel) -> list[str]:
    """One line for every adapter run that did not run, grouped by reason, and the cases
    a circuit breaker did not send."""
    by: dict[str, list[str]] = {}
    for v in model.runs:
        if v.run.status != "ok":
            by.setdefault(f"{v.run.status}: {v.run.reason or ''}".rstrip(": "), []).append(v.run.adapter)
    skipped = [f"{v.run.adapter} ({note})" for v in model.runs if v.run.status == "ok" and (note := skipped_note(v.run))]
    parts = (["Not run: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in by.items()) + "."] if by else []) \
        + (["Not sent: " + "; ".join(skipped) + "."] if skipped else [])
    return [" ".join(parts), ""] if parts else []


def python_text(env: dict) -> str:
    """``3.11.7 (/path/to/python)`` from a worker environment."""
    ver, path = env.get("python_version"), env.get("python")
    return f"{ver} ({path})" if ver and path else (ver or path or "—")


def run_command(r: RunResult) -> str:
    """The command that reproduces ``r``: the recorded one, plus ``--python ENV=PATH`` for
    each side interpreter a ``NAME@ENV`` run used that the command does not name (one set
    through ``KLCONFORM_PYTHON_<ENV>`` leaves no trace in the command line)."""
    import shlex
    cmd = r.command or f"python -m klconform run --seed {r.seed}"
    words = shlex.split(cmd)
    named = {w.split("=", 1)[0].lower() for i, w in enumerate(words) if i and words[i - 1] == "--python"}
    extra: list[str] = []
    for run in r.runs:
        _, at, env = run.adapter.partition("@")
        path = (run.env or {}).get("python")
        if at and env and path and env.lower() not in named:
            named.add(env.lower())
            extra += ["--python", f"{env}={path}"]
    return shlex.join(words + extra) if extra else cmd


def bootstrap_command(r: RunResult) -> str:
    """The reproduction command through the README's bootstrap (same options)."""
    return run_command(r).replace("python -m klconform run", "python3 bootstrap.py run", 1)


def case_counts(r: RunResult) -> str:
    """What the results' cases are, each count named: the corpus's cases, the forms sent to
    adapters that take another encoding or dtype, large cases, shrunk counterexamples, and
    the outcomes (adapter run × case) compared."""
    shrunk = {ce.get("case") for run in r.runs for ce in (run.counterexamples or {}).values()
              if ce.get("case") != ce.get("found_as")}
    corpus = sent = large = small = 0
    for d, j in r.cases.items():
        if j.get("recipe") is not None:
            large += 1
        elif d in shrunk and j.get("canonical") not in (None, d):
            small += 1
        elif j.get("canonical") not in (None, d):
            sent += 1
        else:
            corpus += 1
    outcomes = sum(len(run.outcomes) for run in r.runs)
    ok = sum(1 for run in r.runs if run.status == "ok")
    parts = [f"{sent} translated for adapters that take another encoding or dtype" if sent else "",
             f"{large} large" if large else "", f"{small} shrunk counterexample(s)" if small else ""]
    parts = [x for x in parts if x]
    return (f"corpus of {corpus} cases (digest `{r.corpus_digest}`)"
            + (f"; {len(r.cases)} distinct cases in the results ({corpus} of the corpus, {', '.join(parts)})"
               if parts else "")
            + f"; {outcomes} outcomes compared (adapter run × case) over {ok} of {len(r.runs)} adapter run(s)")


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
               "unexplained": "explains under 90% of outcomes",
               "no_data": "no outcomes"}.get(status, status)
    differs = ", ".join(fp.get("differs_from_documented") or []) or "—"
    return [v.label, obs, f"{agree} ({verdict})", v.documented_name or doc.get("name") or "—",
            f"{doc.get('agree', '—')}/{fp.get('compared', 0)}" if doc else "—",
            f"{canon.get('agree', '—')}/{fp.get('compared', 0)}", differs]


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
    out += ["", f"Seed {r.seed}, {case_counts(r)}, started {r.started_at or '?'}"
                + (f", {r.elapsed_s:.1f} s" if r.elapsed_s is not None else "") + ".", ""]
    return out


def first_screen_section(model: ReportModel) -> list[str]:
    """The first screen: per framework-version, what the API computes (observed), marked
    where it differs from its documentation (≠doc) or the canonical definition (≠canon)."""
    out = ["## What each API computes", "",
           "Observed behaviour in the reference family's vocabulary (SPEC.md §Family, inferred from outcomes by "
           "`klconform/fingerprint.py`); ≠doc: differs from the adapter's documented semantics, ≠canon: from the "
           f"canonical definition ({CANONICAL}).", ""]
    rows = []
    for v in model.runs:
        if v.run.status != "ok":
            continue
        fs = first_screen(v)
        rows.append([v.label] + [fs[c] for c in FIRST_SCREEN_COLUMNS])
    return out + table(["framework-version", *FIRST_SCREEN_COLUMNS], rows) + [""] + not_run_line(model)


def summary_section(model: ReportModel) -> list[str]:
    """The verdict matrix: adapters x areas."""
    out = ["## Summary", "", "Verdicts against the canonical definition per framework-version and dimension: "
           "`✓` match, `✗` discrepancy (all of them are listed under Discrepancies).", ""]
    rows = [[v.label] + [v.cells[a].text for a in AREAS] for v in model.runs if v.run.status == "ok"]
    return out + table(["framework-version"] + [AREA_TITLES[a] for a in AREAS], rows) + [""]


def fingerprints_section(model: ReportModel) -> list[str]:
    """Observed family point per adapter next to the documented one (identical rows
    merged); loud only for what neither the fingerprint nor a known record explains."""
    out = ["## Semantic fingerprints", "",
           "The family point each adapter's *observed* outcomes match (inferred from its outcomes by "
           "`klconform/fingerprint.py`, not copied from the adapter), next to its documented semantics; "
           "what it does not explain is recorded (see Recorded discrepancies) unless an alarm says otherwise. "
           "Equally good templates and per-record lists are in report.html.", ""]
    rows = grouped([fingerprint_row(v) for v in model.runs if v.run.status == "ok"])
    out += table(["framework-version", "observed (inferred)", "agreement", "documented", "documented agrees",
                  "canonical agrees", "observed differs from documented in"], rows) + [""]
    for v in model.runs:
        loud = alarm(v) if v.run.status == "ok" else None
        if loud:
            out.append(f"> **{loud}**")
            out.append("")
    return out


def claims_section(model: ReportModel) -> list[str]:
    """Documentation claims: counts, and every claim that does not hold (all of them in the
    HTML report)."""
    out = ["## Documentation claims", ""]
    n = {st: sum(c.status == st for c in model.claims) for st in ("holds", "does not hold", "not checked")}
    out += [f"{len(model.claims)} claim checks (`klconform/claims.toml`, each quoting its source): "
            f"{n['holds']} hold, {n['does not hold']} do not hold, {n['not checked']} not checked "
            "(all with their evidence in report.html).", ""]
    by: dict[str, list] = {}
    for c in model.claims:
        if c.status != "does not hold":
            continue
        if c.claim.id in by:
            by[c.claim.id][1].append(c.run or "—")
            continue
        src = c.claim.source + (f" <{c.claim.url}>" if c.claim.url else "")
        by[c.claim.id] = [c.claim.id, [c.run or "—"], f"“{c.claim.quote[:120]}” — {src}", c.evidence[:200]]
    crow = [[cid, ", ".join(runs), q, ev] for cid, runs, q, ev in by.values()]
    if crow:
        out += table(["claim that does not hold", "adapters", "quote and source", "evidence (first adapter)"],
                     crow) + [""]
    return out


def discrepancies_section(model: ReportModel) -> list[str]:
    """Discrepancy groups per adapter, one line each (counterexamples in report.html)."""
    out = ["## Discrepancies", "", "One line per group (class vs point → explaining point, cases, record); the "
           "minimal counterexamples and every detail are in report.html.", ""]
    for v in model.runs:
        if v.run.status != "ok":
            continue
        if not v.groups:
            out += [f"- **{v.label}**: no discrepancy"]
            continue
        known = sum(g.count for g in v.groups if g.known)
        new = [g for g in v.groups if not g.known]
        out += [f"- **{v.label}**: {len(v.groups)} group(s), {known} recorded verdict(s)"
                + (f", **{len(new)} new group(s)**" if new else "")]
        for g in new[:8]:
            eb = f" → `{g.explained_by}`" if g.explained_by else ""
            out.append(f"  - NEW {g.cls} vs {g.against}{eb}: {g.count} case(s); {g.detail[:160]}")
        if len(new) > 8:
            out.append(f"  - … {len(new) - 8} more new group(s) in report.html")
        if v.run.unmatched_known:
            out.append(f"  - known records not observed: {', '.join('`' + x + '`' for x in v.run.unmatched_known)}")
    return out + [""] + not_run_line(model)


def recorded_section(model: ReportModel) -> list[str]:
    """The known records this run's verdicts cite, one row per citation (the reviewed
    source each record quotes, klconform/known/*.toml)."""
    by: dict[str, list[str]] = {}
    seen: set[str] = set()
    for v in model.runs:
        for g in v.groups:
            if g.known and g.known not in seen:
                seen.add(g.known)
                by.setdefault(g.citation or "—", []).append(g.known)
    if not by:
        return ["## Recorded discrepancies", "", "None observed in this run.", ""]
    out = ["## Recorded discrepancies", "", f"{len(seen)} known record(s) observed in this run, by the source each "
           "cites (`klconform/known/*.toml`; what each covers, with its counterexample, in report.html).", ""]
    return out + table(["citation", "records"], [[c, ", ".join(f"known `{k}`" for k in ks)]
                                                for c, ks in by.items()]) + [""]


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
        if v.run.status != "ok":
            continue
        e = v.run.env or {}
        erows.append([v.run.adapter, e.get("framework", "—"), e.get("version", "—"), python_text(e),
                      e.get("numpy", "—"), e.get("platform", "—"), e.get("device", "—")])
    out += table(["adapter(s)", "framework", "version", "python", "numpy", "platform", "device"], grouped(erows))
    out += [""] + not_run_line(model)[:1]
    out += ["", f"Hypothesis: `{json.dumps(model.result.hypothesis, sort_keys=True)}`", ""]
    if model.reference_note:
        out += [f"Reference: {model.reference_note}.", ""]
    return out


def reproduction_section(model: ReportModel) -> list[str]:
    """The commands that reproduce the results and re-render the report."""
    r = model.result
    return ["## Reproduction", "", "Re-run exactly this report (same seed, same framework versions → the same "
            "results.json apart from the timing fields `started_at` and `elapsed_s`):", "", "```sh",
            run_command(r), "```", "",
            "or, from a fresh clone (builds the environments first):", "", "```sh", bootstrap_command(r), "```", "",
            "Re-render from the results file: `python -m klconform report results.json --out DIR`.", ""]


# The report, section by section (the titles are SECTIONS).
RENDER_STEPS = (header_section, first_screen_section, summary_section, fingerprints_section, versions.markdown_section,
                coverage.markdown_section, scale.markdown_section, claims_section, discrepancies_section, recorded_section,
                unexpected_section, environment_section, reproduction_section)


def render(model: ReportModel) -> str:
    return "\n".join(line for step in RENDER_STEPS for line in step(model))


def render_markdown(result: RunResult, model: ReportModel | None = None) -> str:
    """report.md for ``result``."""
    return render(model or build_model(result))

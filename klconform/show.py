"""``klconform show DIGEST [--results FILE] [--corpus FILE]``: one case by its digest.

The digest sentences of ``diff``, ``baseline check`` and the reports name cases by digest;
this prints one: its inputs, the reference's value and bound at the canonical point and,
with a results file, at each run's documented point, and each run's outcome and verdicts.
A digest is a canonical (corpus) digest or a sent one (a case as translated for an
adapter, results.json ``cases``); a unique prefix is enough.

Cases are looked up in the corpus (the frozen corpus, or ``--corpus``) and in the results
file.  An unknown or ambiguous digest is a :class:`ShowError` (one line, exit 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .case import Case
from .compare import expected_value, format_array, format_number, judged_dtype
from .results import RunResult

# Entries printed per array; a larger array prints its shape and a summary.
MAX_ENTRIES = 16


class ShowError(Exception):
    """An unknown or ambiguous digest, or an unreadable file: one line for the user."""


def _array(a) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size <= MAX_ENTRIES:
        return format_array(a, MAX_ENTRIES)
    with np.errstate(invalid="ignore"):
        fin = a[np.isfinite(a)]
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"{a.size} entries"]
    if fin.size:
        parts.append(f"finite in [{format_number(fin.min())}, {format_number(fin.max())}]")
    if nan or inf:
        parts.append(f"{nan} NaN, {inf} infinite")
    return f"array{[int(n) for n in a.shape]} ({', '.join(parts)})"


def resolve(prefix: str, digests: Iterable[str]) -> str:
    """The one digest of ``digests`` starting with ``prefix`` (case-insensitive)."""
    p = prefix.strip().lower()
    if not p or any(c not in "0123456789abcdef" for c in p):
        raise ShowError(f"{prefix!r} is not a case digest (hexadecimal, e.g. 0123abcd)")
    hits = sorted({d for d in digests if d.lower().startswith(p)})
    if not hits:
        raise ShowError(f"no case with digest {prefix} in the corpus or the results")
    if len(hits) > 1:
        shown = ", ".join(hits[:5]) + (", ..." if len(hits) > 5 else "")
        raise ShowError(f"digest {prefix} is ambiguous: {len(hits)} cases ({shown}); give more digits")
    return hits[0]


def _inputs(case: Case) -> list[str]:
    out = [f"  {case.dtype}, reduction {case.reduction}, class_axis {case.class_axis}, batch_axis "
           f"{case.batch_axis}, gradients {'asked' if case.grad else 'not asked'}"]
    for name, kind in (("target", case.target_kind), ("pred", case.pred_kind)):
        arr = getattr(case, name)
        dt = case.input_dtype(name)
        out.append(f"  {name} (P, {kind}" if name == "target" else f"  {name} (Q side, {kind}")
        out[-1] += f", {dt}{', sent as ' + str(list(case.target_sent_shape)) if name == 'target' and case.target_sent_shape else ''}) " \
                   f"{[int(n) for n in arr.shape]}: {_array(arr)}"
    if case.weight is not None:
        out.append(f"  weight {format_number(case.weight)}")
    if case.sample_weight is not None:
        out.append(f"  sample_weight {[int(n) for n in case.sample_weight.shape]}: {_array(case.sample_weight)}")
    return out


def _reference(case: Case, point, used: str | None = None) -> str:
    """The reference's value, bound and gradients at ``point`` (judged in ``used``)."""
    from .reference.evaluate import evaluate
    try:
        exp = evaluate(case, point)
    except ValueError as exc:       # UndefinedCase: the spec defines no value here
        return f"undefined: {exc}"
    v, b = expected_value(exp, case.dtype, used or case.dtype)
    text = f"value {_array(v)}, bound {_array(b)}"
    for k in sorted(exp.grads or {}):
        if exp.grads[k] is not None:
            text += f"; d/d{k} {_array(exp.grads[k])} (bound {_array(exp.grad_bounds.get(k, 0.0))})"
    return text


def _outcome_line(o: dict[str, Any]) -> str:
    from . import wire
    oc = wire.from_json(o)
    if oc.status != "ok":
        msg = (oc.error_message or "").splitlines()[0][:200] if oc.error_message else ""
        return f"{oc.status}" + (f": {oc.error_type or ''} {msg}".rstrip() if oc.error_type or msg else "")
    shape = list(oc.shape) if oc.shape is not None else "?"
    text = f"value {_array(oc.value)} ({oc.dtype}, shape {shape})"
    for k in sorted(oc.grads or {}):
        text += f"; d/d{k} {_array(oc.grads[k])}"
    return text


def _verdict_line(v) -> str:
    what = v.cls + (f" (explained by {v.explained_by})" if v.explained_by else "")
    rec = f", known: {v.known}" if v.known else ""
    return f"vs {v.against}: {what}{rec} [{', '.join(v.clauses)}]" + (f" {v.detail}" if v.detail else "")


def show(prefix: str, *, results: RunResult | None = None, corpus: list[Case] | None = None) -> str:
    """The text of ``klconform show`` for the case whose digest starts with ``prefix``."""
    from .reference.family import Point, canonical
    by_digest: dict[str, Case | dict] = {c.digest: c for c in corpus or ()}
    sent_of: dict[str, list[str]] = {}      # canonical digest -> sent digests (results)
    if results is not None:
        for d, j in results.cases.items():
            by_digest.setdefault(d, j)
            sent_of.setdefault(j.get("canonical") or d, []).append(d)
    digest = resolve(prefix, by_digest)
    found = by_digest[digest]
    case = found if isinstance(found, Case) else Case.from_json(found)
    canon = None if isinstance(found, Case) else found.get("canonical")
    head = f"case {digest}" + (f" ({case.label})" if case.label else "")
    if canon and canon != digest:
        head += f": sent form of corpus case {canon}"
    out = [head, *_inputs(case)]
    if not isinstance(found, Case) and found.get("conversions"):
        out.append("  conversions: " + "; ".join(str(c.get("what") or c) for c in found["conversions"]))
    cpt = canonical(case)
    out += ["", f"reference at the canonical point ({cpt.name}): {_reference(case, cpt)}"]
    if results is None:
        out += ["", "(no results file: give --results FILE for each run's outcome and verdicts)"]
        return "\n".join(out)
    shown = [digest] + [d for d in sent_of.get(digest, []) if d != digest]
    any_run = False
    for run in results.runs:
        for d in shown:
            if d not in run.outcomes and not any(v.case == d for v in run.verdicts):
                continue
            any_run = True
            sent = case if d == digest else Case.from_json(results.cases[d])
            env = run.env or {}
            out += ["", f"{run.adapter} ({run.api}; {env.get('framework', '?')} {env.get('version', '?')})"
                        + (f" on sent case {d}" if d != digest else "") + ":"]
            o = run.outcomes.get(d)
            out.append(f"  outcome: {_outcome_line(o) if o else 'none recorded'}")
            doc = ((run.documented or {}).get("points") or {}).get(sent.reduction)
            if doc:
                dpt = Point.from_json(doc)
                if dpt != canonical(sent):
                    used = judged_dtype(sent.dtype, (o or {}).get("dtype"))
                    out.append(f"  reference at the documented point ({dpt.name}): {_reference(sent, dpt, used)}")
            for v in run.verdicts:
                if v.case == d:
                    out.append(f"  {_verdict_line(v)}")
    if not any_run:
        out += ["", "no run of the results file answered this case"]
    return "\n".join(out)


def load_inputs(results_path: str | None, corpus_path: str | None) -> tuple[RunResult | None, list[Case]]:
    """The results file (None) and corpus (default: the frozen corpus) to look cases up in."""
    from . import frozen
    from .resultsio import ResultsError, read_results
    try:
        results = read_results(results_path) if results_path else None
    except ResultsError as exc:
        raise ShowError(str(exc).splitlines()[0]) from None
    try:
        corpus = frozen.load(Path(corpus_path) if corpus_path else None)
    except frozen.FrozenCorpusError as exc:
        raise ShowError(str(exc).splitlines()[0]) from None
    return results, corpus


def main(args) -> int:
    """``klconform show``: prints the case, 0; an unknown or ambiguous digest or an
    unreadable file raises :class:`ShowError` (the command line's one line, exit 2)."""
    results, corpus = load_inputs(getattr(args, "results", None), getattr(args, "corpus", None))
    print(show(args.digest, results=results, corpus=corpus))
    return 0


def add_parser(sub) -> None:
    """The ``show`` subcommand (registered by klconform/cli.py)."""
    s = sub.add_parser("show", help="print a case by its digest: inputs, the reference's value and bound, "
                                    "each run's outcome and verdicts")
    s.add_argument("digest", metavar="DIGEST", help="canonical or sent case digest (a unique prefix is enough)")
    s.add_argument("--results", default=None, metavar="FILE", help="results.json: each run's outcome and verdicts")
    s.add_argument("--corpus", default=None, metavar="FILE", help="corpus file (default: the frozen corpus)")

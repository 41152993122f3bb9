"""Report section "Versions side by side": what changed between consecutive versions of one
framework that ran in the same run (each in its own interpreter, on identical cases), in
the words of klconform.diff.  Registered in markdown.RENDER_STEPS and html.RENDER_STEPS.

Versions of one adapter are its ``NAME`` and ``NAME@ENV`` runs, ordered by version; the
Keras 2 API (``tf_keras.*``) counts as the earlier version of Keras 3 (``keras.*``): the
Keras-2 -> Keras-3 upgrade of a user whose ``tf.keras`` became Keras 3 with TensorFlow 2.16.
"""
from __future__ import annotations

from html import escape as E

from ..baseline import adapter_name, from_result
from ..diff import compare_baselines, version_steps
from ..results import RunResult

TITLE = "Versions side by side"
# Earlier-version aliases: adapter -> the adapter it is the earlier version of.
UPGRADE_ALIASES = {
    "tf_keras.KLDivergence": "keras.KLDivergence",
}
_last: tuple[RunResult, list] | None = None   # both renderers of one report share the work


def version_changes(result: RunResult) -> list[tuple]:
    """``[(old Baseline, new Baseline, [Change])]`` for every consecutive version step."""
    global _last
    if _last is not None and _last[0] is result:
        return _last[1]
    # only the runs that have another version in this run are compared: baselines cost a
    # reference evaluation per case (a generation per large case)
    family = [UPGRADE_ALIASES.get(adapter_name(r.adapter), adapter_name(r.adapter)) for r in result.runs]
    runs = [r for r, f in zip(result.runs, family) if r.status == "ok"
            and sum(g == f for g, x in zip(family, result.runs) if x.status == "ok") > 1]
    steps = [(a, b, observable(result, a, b, compare_baselines(a, b)))
             for a, b in version_steps(from_result(result, runs), UPGRADE_ALIASES)] if runs else []
    _last = (result, steps)
    return steps


def _run_id(b) -> str:
    return str(b.header.get("run_id") or b.adapter)


def _step_title(a, b) -> str:
    ra, rb = _run_id(a), _run_id(b)
    name = ra if ra == rb else f"{ra} -> {rb}"
    return f"{name}: {a.version} -> {b.version}"


# --------------------------------------------------------------------------- evidence
def _eps_words(pt: dict) -> str:
    e = pt.get("epsilon", "none")
    return f"{e}({pt.get('eps', 0):g})" if e != "none" else str(e)


def field_moves(old, new) -> list[tuple[str, str, str, list[str]]]:
    """The fingerprint's field moves from ``old`` to ``new`` (baselines):
    ``(field, old words, new words, [asked reductions])``, worded as klconform.diff words them."""
    po = (old.header.get("fingerprint") or {}).get("points") or {}
    pn = (new.header.get("fingerprint") or {}).get("points") or {}
    moves: dict[tuple[str, str, str], list[str]] = {}
    for asked in sorted(set(po) & set(pn)):
        a, b = po[asked], pn[asked]
        for f in sorted((set(a) | set(b)) - {"reduction", "eps"}):
            va, vb = (_eps_words(a), _eps_words(b)) if f == "epsilon" else (str(a.get(f)), str(b.get(f)))
            if va != vb:
                moves.setdefault((f, va, vb), []).append(asked)
    return [(f, va, vb, reds) for (f, va, vb), reds in sorted(moves.items())]


def distinguishing_case(result: RunResult, old, new, field: str, asked: list[str],
                        evaluate=None) -> tuple[str | None, int]:
    """(the first case of ``new``'s run, smallest first, whose outcome the new fingerprint
    point explains and the same point with ``field`` as in the old version does not; how
    many cases were looked at).  None: on these cases the two behaviours agree within the
    bound, so the evidence cannot tell them apart."""
    import dataclasses

    from ..compare import check_outcome, judged_dtype
    from ..case import Case
    from ..evaluator import make_evaluator
    from ..reference.family import Point
    from .. import wire
    ev = make_evaluator(evaluate)
    run = next((r for r in result.runs if r.adapter == _run_id(new)), None)
    po = (old.header.get("fingerprint") or {}).get("points") or {}
    pn = (new.header.get("fingerprint") or {}).get("points") or {}
    old_points: dict = {}
    if run is None:
        return None, 0
    looked = 0
    digests = sorted((d for d in run.outcomes if (result.cases.get(d) or {}).get("reduction") in asked
                      and (result.cases.get(d) or {}).get("recipe") is None),
                     key=lambda d: (len(result.cases[d].get("target") or ""), d))
    for d in digests:
        o = wire.from_json(run.outcomes[d])
        if o.status != "ok":
            continue
        case = Case.from_json(result.cases[d])
        new_pt = Point.from_json(pn[case.reduction])
        if case.reduction not in old_points:
            old_fields = po.get(case.reduction) or {}
            changes = {field: old_fields.get(field)} if field != "epsilon" else \
                {"epsilon": old_fields.get("epsilon", "none"), "eps": old_fields.get("eps", 0.0)}
            try:
                old_points[case.reduction] = dataclasses.replace(new_pt, **changes)
            except (TypeError, ValueError):
                old_points[case.reduction] = None
        old_pt = old_points[case.reduction]
        if old_pt is None:      # the old behaviour is no point of the family: nothing to weigh
            return d, looked
        looked += 1
        used = judged_dtype(case.dtype, o.dtype)
        grads = tuple(sorted(o.grads or {}))
        e_new, e_old = ev(case, new_pt), ev(case, old_pt)
        if isinstance(e_new, Exception) or isinstance(e_old, Exception):
            continue
        if check_outcome(e_new, o, case, used, grads).ok and not check_outcome(e_old, o, case, used, grads).ok:
            return d, looked
    return None, looked


def markdown_section(model) -> list[str]:
    steps = version_changes(model.result)
    if not steps:
        return []
    out = [f"## {TITLE}", "",
           "Consecutive versions of one framework in this run, on identical cases; each sentence "
           "names the cases that show it (`klconform diff` words, docs/upgrade-checks.md). "
           "Moves within a case's bound are no change.", ""]
    for a, b, changes in steps:
        real = [c for c in changes if c.is_change]
        out += [f"### {_step_title(a, b)}", "",
                f"{len(real)} change{'s' if len(real) != 1 else ''}." if real else "No behaviour change.", ""]
        # what became unobservable is said beside the changes (a note, but about the fingerprint)
        unobservable = [c for c in changes if c.kind == "fingerprint" and not c.is_change]
        shown = unobservable + (real[:6] if real else [c for c in changes if c not in unobservable][:6])
        out += [f"- {c.line()}" for c in shown]
        if len(changes) > len(shown):
            out.append(f"- … {len(changes) - len(shown)} more in report.html")
        out.append("")
    return out


def html_section(model) -> str:
    steps = version_changes(model.result)
    if not steps:
        return ""
    parts = [f"<h2>{E(TITLE)}</h2>",
             "<p>Consecutive versions of one framework in this run, on identical cases. Moves within a "
             "case's bound are no change.</p>"]
    for a, b, changes in steps:
        real = [c for c in changes if c.is_change]
        parts.append(f"<h3>{E(_step_title(a, b))}</h3>")
        parts.append(f"<p>{len(real)} change{'s' if len(real) != 1 else ''}.</p>" if real
                     else "<p>No behaviour change.</p>")
        if changes:
            parts.append("<ul>" + "".join(f"<li{'' if c.is_change else ' class=note'}>{E(c.line())}</li>"
                                          for c in changes) + "</ul>")
    return "\n".join(parts)


def observable(result: RunResult, old, new, changes: list) -> list:
    """``changes`` with each fingerprint sentence "F changed from X to Y" kept only where a
    case of the new version tells X from Y (:func:`distinguishing_case`); elsewhere it
    becomes a note, "no longer observable: ..." (e.g. MXNet's 1e-12 target epsilon,
    still in its source, computed in float32: invisible on every case)."""
    import dataclasses
    out = list(changes)
    for f, va, vb, reds in field_moves(old, new):
        prefix = f"{f.replace('_', ' ')} changed from {va} to {vb}"
        hit, looked = distinguishing_case(result, old, new, f, reds)
        if hit is not None:
            continue
        where = f"reduction {', '.join(map(repr, reds))}"
        for i, c in enumerate(out):
            if c.kind == "fingerprint" and c.sentence.startswith(prefix):
                out[i] = dataclasses.replace(
                    c, is_change=False,
                    sentence=f"no longer observable: {f.replace('_', ' ')} {va} (on the {looked} answered cases of "
                             f"{_run_id(new)} {new.version} with {where}, {va} and {vb} agree within the bound; "
                             f"the fingerprint names {vb})")
    return out

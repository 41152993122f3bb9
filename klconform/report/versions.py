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
    steps = [(a, b, compare_baselines(a, b))
             for a, b in version_steps(from_result(result, runs), UPGRADE_ALIASES)] if runs else []
    _last = (result, steps)
    return steps


def _step_title(a, b) -> str:
    name = a.adapter if a.adapter == b.adapter else f"{a.adapter} -> {b.adapter}"
    return f"{name}: {a.version} -> {b.version}"


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
        shown = real[:6] if real else changes[:6]
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

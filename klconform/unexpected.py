"""What fails CI: the one rule behind the exit status, the report's "Unexpected findings"
and the per-area conformance tests.

A discrepancy verdict no known record covers is *new*; a known record that applies to the
run but covered no verdict is *not observed* (``AdapterRun.unmatched_known``, strict).
Both are unexpected.
"""
from __future__ import annotations

from typing import Mapping

from .areas import area_of
from .case import Case
from .facts import facts
from .results import AdapterRun, Verdict


def unrecorded(run: AdapterRun) -> list[Verdict]:
    """The discrepancy verdicts of ``run`` no known record covers."""
    return [v for v in run.verdicts if v.cls != "match" and not v.known]


def unexpected_findings(run: AdapterRun, *, area: str | None = None,
                        cases: Mapping[str, Case] | None = None) -> list[str]:
    """One line per unexpected finding of ``run``: each group of new discrepancies (same
    comparison, class and explaining point; with a count, an example case and its
    detail), then each known record no case showed.  With ``area`` only the new
    discrepancies in that report area (:func:`klconform.areas.area_of`; ``cases``: digest
    -> :class:`Case` of the run's verdicts) -- known records belong to no area."""
    if area is not None and cases is None:
        raise ValueError("unexpected_findings: an area filter needs the cases")
    groups: dict[tuple[str, str, str], list[Verdict]] = {}
    for v in unrecorded(run):
        if area is not None and area_of(v, facts(cases[v.case], v)) != area:
            continue
        groups.setdefault((v.against, v.cls, v.explained_by or ""), []).append(v)
    lines = [f"{run.adapter}: NEW {cls} vs {against}{' (' + eb + ')' if eb else ''}: {len(vs)} case(s), "
             f"e.g. case {vs[0].case}: {vs[0].detail[:160]}" for (against, cls, eb), vs in sorted(groups.items())]
    if area is None:
        lines += [f"{run.adapter}: known record {rid!r} was not observed (behaviour changed?)"
                  for rid in run.unmatched_known]
    return lines

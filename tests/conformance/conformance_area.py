"""Shared assertions of the per-area conformance modules."""
from __future__ import annotations

from klconform.areas import area_of
from klconform.facts import facts
from klconform.unexpected import unexpected_findings


def new_in_area(result, area: str) -> list[str]:
    """The unexpected findings of ``result`` in ``area`` (the rule of the exit status,
    :func:`klconform.unexpected.unexpected_findings`, restricted to one area)."""
    return unexpected_findings(result.run, area=area, cases=result.cases)


def cases_in_area(result, area: str) -> int:
    """Number of distinct cases with a verdict in ``area``."""
    return len({v.case for f, v, e in result.facts_and_verdicts() if area_of(v, f) == area})


def cases_per_adapter() -> int:
    """Generated cases each adapter receives at least: 10 x the profile's max_examples."""
    import os

    from hypothesis import settings
    return int(os.environ.get("KLCONFORM_CASES", 10 * settings().max_examples))


class AdapterResult:
    """One adapter's run: the AdapterRun, the evaluated cases, the facts per verdict."""

    def __init__(self, run, evaluated, unavailable: str = ""):
        self.run, self.evaluated, self.unavailable = run, evaluated, unavailable
        self.cases = {e.sent.case.digest: e.sent.case for e in evaluated}   # digest -> sent Case

    def facts_and_verdicts(self):
        version = str(self.run.env.get("version", "")) or None
        for e in self.evaluated:
            for v in e.verdicts:
                yield facts(e.sent.case, v, e.outcome, run=self.run.adapter, version=version), v, e

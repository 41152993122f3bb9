"""Shared assertions of the per-area conformance modules."""
from __future__ import annotations

from klconform.verdicts import area_of


def new_in_area(result, area: str) -> list[str]:
    """One line per group of unrecorded discrepancies of ``result`` in ``area``."""
    groups: dict[tuple, list] = {}
    for f, v, e in result.facts_and_verdicts():
        if v.cls == "match" or v.known or area_of(v, f) != area:
            continue
        groups.setdefault((v.against, v.cls, v.explained_by, f["dtype"], f["reduction"]), []).append((v, e))
    lines = []
    for (against, cls, eb, dtype, red), items in sorted(groups.items(), key=str):
        v, e = items[0]
        lines.append(f"NEW {cls} vs {against}{' (' + eb + ')' if eb else ''} [{dtype}, {red}] x{len(items)}: "
                     f"{e.sent.case!r} {v.detail[:160]}")
    return lines


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

    def facts_and_verdicts(self):
        from klconform.verdicts import facts
        version = str(self.run.env.get("version", "")) or None
        for e in self.evaluated:
            for v in e.verdicts:
                yield facts(e.sent.case, v, e.outcome, run=self.run.adapter, version=version), v, e

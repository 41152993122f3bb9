"""Shared helpers of the conformance modules."""
from __future__ import annotations

from klconform.areas import area_of

# Generated cases the frozen corpus gives every adapter at least (docs/corpus.md: it was
# drawn with 300 per adapter).
CASES_PER_ADAPTER = 300


def cases_in_area(result, area: str) -> int:
    """Number of distinct cases with a verdict in ``area``."""
    return len({v.case for f, v, e in result.facts_and_verdicts() if area_of(v, f) == area})

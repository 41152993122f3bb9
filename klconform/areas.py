"""The areas of the report matrix and of the per-area conformance tests: which area a
verdict belongs to."""
from __future__ import annotations

from typing import Any

from .results import Verdict

AREAS = ("values", "reductions", "epsilon_zeros", "dtypes", "gradients", "shapes_invalid")


def area_of(verdict: Verdict, case_facts: dict[str, Any]) -> str:
    """The report/test area (one of :data:`AREAS`) a verdict belongs to: gradients, dtypes;
    shape/error/crash/timeout and special values on invalid, non-finite or empty input
    -> shapes_invalid; a semantic verdict by what its explaining point changes
    (reduction -> reductions, epsilon or 0*inf convention -> epsilon_zeros); special values
    on zero entries -> epsilon_zeros; everything else (matches by case family) -> values."""
    cls, f = verdict.cls, case_facts
    invalid = f.get("has_nonfinite") or f.get("has_negative") or f.get("empty")
    zeros = f.get("has_zero_target") or f.get("has_zero_pred")
    if cls == "gradient":
        return "gradients"
    if cls == "dtype":
        return "dtypes"
    if cls in ("shape", "error", "crash", "timeout"):
        return "shapes_invalid"
    if cls == "semantic":
        name = verdict.explained_by or ""
        if name.split("+", 1)[0] != f.get("reduction"):
            return "reductions"
        if "eps" in name or "clip" in name or "0*inf" in name:
            return "epsilon_zeros"
        return "values"
    if cls == "special_value":
        return "shapes_invalid" if invalid else "epsilon_zeros" if zeros else "values"
    if cls == "precision":
        return "values"
    # match: by what the case exercises
    if invalid or f.get("broadcast"):
        return "shapes_invalid"
    if zeros or f.get("family") in ("tiny", "one_hot"):
        return "epsilon_zeros"
    if f.get("dtype") in ("float16", "bfloat16"):
        return "dtypes"
    return "values"

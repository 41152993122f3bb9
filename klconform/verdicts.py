"""Classify one adapter outcome against the reference: the verdicts of klconform.

:func:`classify` compares an :class:`~klconform.adapters.base.Outcome` with
``reference.evaluate(case, point)`` for one point of the reference family (the canonical
point, or the adapter's documented one) and returns the verdicts for that comparison:

* one *value* verdict — ``match``; ``semantic`` when another family point (the
  explanation search, :mod:`klconform.explain`) explains the value, named in
  ``explained_by``; otherwise ``shape`` (returned shape differs), ``special_value``
  (NaN / +-inf / finite disagree) or ``precision`` (finite, beyond the reference's
  per-case, per-dtype bound); ``error`` (raised where the spec defines a value, or
  returned one where the spec defines an error), ``crash`` or ``timeout`` from the worker;
* a ``dtype`` verdict when the value or a gradient comes back in another dtype than the
  case's (a silent down-/up-cast); the value is then held to the bound of the coarser dtype;
* a ``gradient`` verdict per differentiable input whose gradient is missing or differs
  beyond its bound from the gradient of the point that explains the value.

A comparison with no discrepancy yields exactly one ``match`` verdict.  Every verdict
cites the SPEC.md clause ids that decide it (:mod:`klconform.deciding`: the special value,
the reduction, the family fields, the gradient formula or the bound at stake), then its
class clause ``KL-VERDICT-<CLASS>``; every clause that governed the reference's result is
``reference.evaluate(case, point).clauses`` (what coverage counts).  The comparison rules
are in :mod:`klconform.compare`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

from klconform.reference.family import Point
from klconform.reference.spec import VERDICT_CLAUSES

from .case import Case
from . import deciding
from .compare import check_outcome, format_array, judged_dtype
from .evaluator import make_evaluator
from .explain import explain
from .results import Verdict


def verdict_clause(cls: str) -> str:
    """The SPEC.md clause id of a verdict class."""
    return VERDICT_CLAUSES[cls]


def _clauses(*groups: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        for c in g or ():
            if c not in out:
                out.append(c)
    return tuple(out)


def effective_point(point: Point | None, case: Case) -> Point | None:
    """``point`` with the fields that cannot matter for ``case`` reset to their defaults:
    without weights, where weights act and what they divide by change nothing
    (KL-WEIGHT-*), so ``distribution+weights@distribution`` is just ``distribution``."""
    if point is None or case.weight is not None or case.sample_weight is not None:
        return point
    if point.weight_level == "element" and point.weight_divisor == "count":
        return point
    return dataclasses.replace(point, weight_level="element", weight_divisor="count")


def classify(case: Case, outcome, *, adapter: str, against: str, point: Point,
             documented: Point | None = None, gradients: Iterable[str] = ("pred", "target"),
             evaluate: Callable | None = None, search: bool = True,
             max_candidates: int = 24) -> list[Verdict]:
    """The verdicts of ``outcome`` (what adapter run ``adapter`` returned for ``case``)
    compared with the reference at ``point``; ``against`` is ``"canonical"`` or
    ``"documented"``.  ``documented`` seeds the semantic search; ``gradients`` are the
    inputs the adapter can differentiate; ``evaluate`` defaults to ``reference.evaluate``
    (pass :func:`make_evaluator`'s result to share a cache).

    Semantic search (when the compared point does not explain the outcome,
    :func:`klconform.explain.explain`): candidate points are tried simplest first
    (:mod:`klconform.candidates`; among equally simple ones, those keeping the compared
    reduction first).  The verdict names the simplest point explaining the value *and*
    the gradients, else the simplest explaining the value, whose gradients are then
    judged.  A disagreement made only of NaN entries is not evidence for any point: a NaN
    value allows only one-field points, and NaN-only gradient differences (with a matching
    value) name none -- the gradient verdict then stands against the compared point.
    Candidates whose result shape differs from the returned one are skipped unevaluated."""
    ev = make_evaluator(evaluate)
    gradients = tuple(gradients)
    digest = ev.digest(case)
    point, documented = effective_point(point, case), effective_point(documented, case)

    def V(cls, clauses=(), **kw):
        return Verdict(adapter=adapter, case=digest, against=against, cls=cls,
                       clauses=_clauses(clauses, [verdict_clause(cls)]), **kw)

    status = outcome.status
    if status in ("crash", "timeout"):
        return [V(status, detail=(outcome.error_message or status)[:300])]
    if status in ("unsupported", "missing", "import_error", "skipped"):
        return []
    exp = ev(case, point)
    if isinstance(exp, Exception):
        undefined = deciding.error_clauses(case, point, exp)
        if status == "error":
            return [V("match", undefined, detail=f"spec defines an error ({exp}); raised {outcome.error_type}")]
        return [V("error", undefined, detail=f"returned a value where the spec defines an error: {exp}")]
    if status == "error":
        return [V("error", deciding.error_clauses(case, point, exp), detail=f"raised {outcome.error_type}: {(outcome.error_message or '')[:200]} "
                                            f"where the spec defines {format_array(exp.value)}")]
    verdicts: list[Verdict] = []
    rdt = outcome.dtype
    used = judged_dtype(case.dtype, rdt)
    # a gradient comes back in the dtype of the input it is taken w.r.t. (KL-DTYPE-1, KL-DTYPE-4)
    grad_dts = {k: v for k, v in (outcome.grad_dtypes or {}).items()
                if v != (case.input_dtype(k) if k in ("target", "pred") else case.dtype)}
    if (rdt and rdt != case.dtype) or grad_dts:
        parts = [f"value returned as {rdt}"] if rdt != case.dtype else []
        parts += [f"gradient wrt {k} as {v}" for k, v in sorted(grad_dts.items())]
        verdicts.append(V("dtype", deciding.dtype_clauses(case), detail=f"{', '.join(parts)} for a {case.dtype} case"))

    base = check_outcome(exp, outcome, case, used, gradients)
    if base.ok:
        return verdicts or [V("match", (), err_over_bound=base.value.err_over_bound, detail=base.value.detail)]
    hit = explain(case, outcome, base, point, documented, ev, adapter=adapter, used=used,
                  gradients=gradients, max_candidates=max_candidates) if search else None
    judged = base
    if hit is not None:
        cand, judged, full = hit
        verdicts.append(V("semantic", deciding.point_difference(point, judged.exp.point, case),
                          explained_by=cand.name,
                          err_over_bound=base.value.err_over_bound,
                          detail=f"{point.name} gives {format_array(exp.value)}; observed {format_array(outcome.value)} "
                                 f"is {cand.name}" + ("" if full else " (value only)")))
    elif not base.value.ok:
        verdicts.append(V(base.value.cls, deciding.value_clauses(base.value.cls, case, point, exp, base.value,
                                                                 outcome.value),
                          err_over_bound=base.value.err_over_bound, detail=base.value.detail))
    jpoint = judged.exp.point
    for k, c in judged.grad_fails:
        gclauses = deciding.gradient_clauses(k, case, jpoint, judged.exp, c, (outcome.grads or {}).get(k))
        if c is None:
            verdicts.append(V("gradient", gclauses, detail=f"gradient wrt {k}: not returned"))
        else:
            verdicts.append(V("gradient", gclauses, err_over_bound=c.err_over_bound,
                              detail=f"gradient wrt {k}: {c.cls}: {c.detail}"))
    return verdicts

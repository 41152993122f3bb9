"""``evaluate(case, point)``: the reference's answer to one case under one family point.

The expected value, its per-case error bound for ``case.dtype``, the gradients of
Σ(output) w.r.t. the encoded inputs with their bounds, and the SPEC.md clauses that
governed the result.  Probability/probability terms and sums come from the accurate core
(``reference._accurate``, ≤ 2 ulp); log encodings, logits and epsilon variants are computed
in the case's working precision (:mod:`reference.variants`: extended precision, or float64
for large cases of lower-precision dtypes, which need no accurate core either, KL-BOUND-8).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._quiet import quiet
from .dtypes import round_to

from . import bounds as _bounds
from ._accurate import kl_divergence, kl_terms
from . import gradients as _gradients
from .family import Point, canonical
from . import variants as _variants
from .variants import Prepared, UndefinedCase, invalid_mask, prepare, reduce_sum, terms

__all__ = ["Expected", "UndefinedCase", "evaluate"]

_REDUCTION_CLAUSE = {
    "none": "KL-RED-NONE", "distribution": "KL-RED-DIST", "sum": "KL-RED-SUM",
    "mean": "KL-RED-MEAN", "batchmean": "KL-RED-BATCHMEAN",
    "distribution_mean": "KL-RED-SOBS", "sample_sum": "KL-RED-SAMPLE-SUM",
    "sample_mean": "KL-RED-SAMPLE-MEAN",
}
_EPS_CLAUSE = {"none": "KL-EPS-NONE", "target_log_eps": "KL-EPS-TARGET-LOG",
               "clip_both": "KL-EPS-CLIP"}
_DIVIDING = ("mean", "batchmean", "distribution_mean", "sample_mean")


@dataclasses.dataclass
class Expected:
    """The reference's answer (all arrays float64)."""

    value: np.ndarray                  # exact-to-float64 value, shape per KL-SHAPE-2
    value_in_dtype: np.ndarray         # value rounded to case.dtype (overflow -> inf, KL-DTYPE-3)
    bound: np.ndarray                  # max abs error allowed (0 where value_in_dtype non-finite)
    grads: dict[str, np.ndarray]       # "pred"/"target" -> d Σ(output) / d input (encoded)
    grad_bounds: dict[str, np.ndarray]
    clauses: tuple[str, ...]           # SPEC.md ids that governed this result
    point: Point

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape


# ---------------------------------------------------------------------------- accurate core
def _use_core(prep: Prepared) -> bool:
    """Whether the accurate core computes the value: canonical probability/probability
    points, except in float64 working precision (KL-BOUND-8: its ≤ 2 ulp buy nothing
    against a lower-precision bound and cost more than the rest of the evaluation)."""
    pt = prep.point
    return (prep.work is not np.float64 and pt.epsilon == "none" and pt.zero_inf == "zero"
            and not pt.generalised and not pt.normalise and pt.negative == "nan"
            and prep.target.kind == "prob" and prep.pred.kind == "prob")


def _weighted_sums(prep: Prepared, t: np.ndarray | None) -> np.ndarray:
    """Σ W_i T_i per output (working precision), before the scalar weight and the divisor;
    ``t``: the terms of :func:`element_terms` where already computed."""
    if _use_core(prep) and prep.shape and prep.axes:
        a = np.broadcast_to(np.asarray(prep.a, dtype=np.float64), prep.shape)
        b = np.broadcast_to(np.asarray(prep.b, dtype=np.float64), prep.shape)
        w = None if prep.W is None else np.asarray(prep.W, dtype=np.float64)
        return np.asarray(kl_divergence(a, b, axis=prep.axes, weights=w), dtype=prep.work)
    if t is None:
        t = element_terms(prep)
    with quiet:
        if prep.W is not None:
            t = t * prep.W
        return reduce_sum(t, prep)


def element_terms(prep: Prepared) -> np.ndarray:
    """The elementwise terms T on S (working precision), from the core where it applies."""
    if _use_core(prep):
        a = np.asarray(prep.a, dtype=np.float64)
        b = np.asarray(prep.b, dtype=np.float64)
        return np.asarray(np.broadcast_to(kl_terms(a, b), prep.shape), dtype=prep.work)
    return terms(prep.point, prep.a, prep.la, prep.b, prep.lb, prep.a_is_log, prep.b_is_log)


def value_working(prep: Prepared, t: np.ndarray | None) -> np.ndarray:
    """The point's output in working precision: w * Σ W T / D (``t`` as for _weighted_sums)."""
    s = _weighted_sums(prep, t)
    with quiet:
        return s * prep.work(prep.weight) / prep.work(prep.divisor)


# ---------------------------------------------------------------------------- clauses
def _clauses(prep: Prepared, value: np.ndarray, value_in_dtype: np.ndarray, grads: bool):
    c = ["KL-DEF-1", "KL-DEF-2", "KL-ARG-1", "KL-SHAPE-1", "KL-SHAPE-2", "KL-DTYPE-1",
         "KL-FAM-1", "KL-BOUND-1", "KL-BOUND-2", "KL-BOUND-4", "KL-BOUND-5",
         *(["KL-BOUND-8"] if prep.work is np.float64 else []),
         *(["KL-BOUND-6"] if prep.point.generalised or prep.point.normalise else []),
         "KL-TARGET-PROB" if prep.target.kind == "prob" else "KL-TARGET-LOGPROB",
         {"prob": "KL-INPUT-PROB", "logprob": "KL-INPUT-LOGPROB",
          "logits": "KL-INPUT-LOGITS"}[prep.pred.kind],
         _REDUCTION_CLAUSE[prep.point.reduction], _EPS_CLAUSE[prep.point.epsilon]]
    pt, a, b = prep.point, prep.a, prep.b
    if pt.swap:
        c.append("KL-ARG-ORDER")
    if pt.target_as or pt.pred_as:
        c.append("KL-MISREAD-1")
    if prep.case.weight is not None:
        c.append("KL-WEIGHT-SCALAR")
    if prep.W is not None:
        c += ["KL-WEIGHT-SHAPE",
              "KL-WEIGHT-ELEMENT" if pt.weight_level == "element" else "KL-WEIGHT-DIST"]
        if pt.reduction in _DIVIDING:
            c.append("KL-WEIGHT-SUMDIV" if pt.weight_divisor == "weight_sum"
                     else "KL-WEIGHT-DIVISOR")
    if pt.generalised:
        c.append("KL-GEN-1")
    if pt.normalise:
        c.append("KL-NORM-1")
        if not np.all(np.isfinite(a) & np.isfinite(b)):
            c.append("KL-NORM-2")
    if pt.generalised or pt.normalise or pt.negative != "nan":
        c.append("KL-FAM-2")
    with quiet:
        # Where no entry is NaN or negative (min >= 0 fails on NaN), min and max answer the
        # questions below without a mask over S (passes that count on large cases).
        a_min, b_min = np.min(a, initial=np.inf), np.min(b, initial=np.inf)
        ok = a_min >= 0 and b_min >= 0
        if not ok:
            invalid = invalid_mask(a, b)
            if pt.negative == "inf" and np.any((a < 0) | (b < 0)):
                c.append("KL-NEG-INF")
            elif pt.negative == "zero" and np.any(a < 0):
                c.append("KL-NEG-ZERO")
                if np.any(np.isnan(a) | ~(b >= 0)):
                    c.append("KL-INVALID-1")
            else:
                c.append("KL-INVALID-1")
        if pt.epsilon != "clip_both":
            if a_min == 0 if ok else np.any((a == 0) & ~invalid):
                c.append("KL-ZERO-1")
                if pt.generalised:
                    c.append("KL-GEN-2")
                if pt.zero_inf == "nan":
                    c.append("KL-ZERO-3")
            if (b_min == 0 and np.any((a > 0) & (b == 0))) if ok \
                    else np.any((a > 0) & (b == 0) & ~invalid):
                c.append("KL-ZERO-2")
        if (np.max(a, initial=0) == np.inf or np.max(b, initial=0) == np.inf) if ok \
                else np.any(np.isinf(a) | np.isinf(b)):
            c.append("KL-GEN-2" if pt.generalised else "KL-INF-1")
    if prep.axes is not None and not np.all(np.isfinite(value)):
        c.append("KL-SPECIAL-SUM-1")
    if prep.axes is not None and any(prep.shape[i] == 0 for i in prep.axes):
        c.append("KL-EMPTY-1")
    if pt.reduction in _DIVIDING and prep.divisor == 0:
        c.append("KL-EMPTY-2")
    if np.any(np.isinf(value_in_dtype) & np.isfinite(value)):
        c.append("KL-DTYPE-3")
    if prep.case.dtype in ("float16", "bfloat16"):
        c.append("KL-DTYPE-2")
    if grads:
        c += ["KL-GRAD-1", "KL-GRAD-RED", "KL-BOUND-3",
              *(["KL-BOUND-6"] if pt.generalised or pt.normalise else []),
              "KL-GRAD-TARGET-PROB" if prep.target.kind == "prob" else "KL-GRAD-TARGET-LOGPROB",
              {"prob": "KL-GRAD-PRED-PROB", "logprob": "KL-GRAD-PRED-LOGPROB",
               "logits": "KL-GRAD-PRED-LOGITS"}[prep.pred.kind]]
        if pt.epsilon != "none":
            c.append("KL-GRAD-EPS")
        if pt.generalised:
            c.append("KL-GRAD-GEN")
        if pt.normalise:
            c.append("KL-GRAD-NORM")
        if "KL-ZERO-1" in c:
            c.append("KL-GRAD-ZERO")
        if "KL-ZERO-2" in c or "KL-INF-1" in c or "KL-INVALID-1" in c:
            c.append("KL-GRAD-INF")
    return tuple(dict.fromkeys(c))


# ---------------------------------------------------------------------------- entry point
def evaluate(case, point: Point | None = None) -> Expected:
    """The expected result of ``case`` under ``point`` (default: ``canonical(case)``).

    Raises :class:`UndefinedCase` (a ValueError carrying the clause id) where the spec
    defines no value (KL-RED-0D, KL-WEIGHT-DIST, KL-WEIGHT-SUMDIV, KL-INPUT-LOGITS,
    KL-NORM-1 on a 0-D case), and its
    subclass ``ExtendedPrecisionUnavailable`` (KL-BOUND-5) for a float64 case that needs
    extended precision on a platform whose longdouble is float64.
    """
    point = point or canonical(case)
    prep = prepare(case, point)
    want_grads = getattr(case, "grad", True)
    if case.dtype == "float64" and not _variants.extended_precision():
        # KL-BOUND-5: only the accurate core is float64-exact without extended precision;
        # lower-precision dtypes have bounds 2**29 times wider than longdouble = float64 errs.
        if not _use_core(prep):
            raise _variants.ExtendedPrecisionUnavailable(f"the value under {point.name}")
        if want_grads:
            raise _variants.ExtendedPrecisionUnavailable("the gradient")
    # outside the core the value and its bound share one evaluation of the terms
    t = None if _use_core(prep) else element_terms(prep)
    with quiet:     # a working-precision value beyond float64 is ±inf
        value = np.asarray(value_working(prep, t), dtype=np.float64)
    # KL-DTYPE-3: rounded to nearest as IEEE rounds, so |value| >= max + half an ulp is ±inf
    value_in_dtype = round_to(value, case.dtype)
    bound = _bounds.value_bound(prep, value, t)
    bound = np.where(np.isfinite(value_in_dtype), bound, 0.0)
    grads: dict[str, np.ndarray] = {}
    grad_bounds: dict[str, np.ndarray] = {}
    if want_grads:
        grads, grad_bounds = _gradients.gradients_and_bounds(prep)
    return Expected(value, value_in_dtype, bound, grads, grad_bounds,
                    _clauses(prep, value, value_in_dtype, bool(grads)), point)

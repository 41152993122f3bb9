"""The SPEC clauses that decide a verdict: the few a user acts on, not every clause the case
touches.

``reference.evaluate(case, point).clauses`` names every clause that governed a result
(20-odd for a gradient case: the definition, the encodings, the bounds, ...); coverage
counts those (:mod:`klconform.coverage`).  A verdict cites only what decides it:

* ``special_value``: the clauses of the special values among the terms of the entry that
  differs (KL-ZERO-2 for a ``p > 0, q = 0`` term, KL-INF-1, KL-INVALID-1, ...), how they
  combine (KL-SPECIAL-SUM-1), an empty sum or mean (KL-EMPTY-*), an overflow (KL-DTYPE-3);
* ``precision``: the bound (KL-BOUND-2, KL-BOUND-4, and KL-BOUND-7/8 where they shape it),
  or the reduction when every entry is off by one factor (a divisor);
* ``semantic``: the clauses of the family fields in which the explaining point differs
  from the compared one (both reductions for a divisor, both epsilon policies, ...);
* ``gradient``: the partial's formula for that input (KL-GRAD-PRED-LOGPROB, ...), plus
  KL-GRAD-ZERO / KL-GRAD-INF at a special entry, KL-GRAD-RED and the reduction when the
  gradient is off by one factor (a divisor), else the gradient bound KL-BOUND-3;
* ``shape``: KL-SHAPE-2 and the reduction; ``dtype``: KL-DTYPE-1 (KL-DTYPE-4 for mixed
  inputs); ``error``: the clause that leaves the value undefined, or the clauses that
  define it.

Every verdict ends with its class clause ``KL-VERDICT-<CLASS>`` (added by the verdicts).
"""
from __future__ import annotations

import numpy as np

from klconform.reference.evaluate import _EPS_CLAUSE as EPS_CLAUSE
from klconform.reference.evaluate import _REDUCTION_CLAUSE as REDUCTION_CLAUSE
from klconform.reference.family import Point
from klconform.reference._quiet import quiet

from .case import Case

_TARGET_CLAUSE = {"prob": "KL-TARGET-PROB", "logprob": "KL-TARGET-LOGPROB"}
_PRED_CLAUSE = {"prob": "KL-INPUT-PROB", "logprob": "KL-INPUT-LOGPROB", "logits": "KL-INPUT-LOGITS"}
_GRAD_CLAUSE = {("target", "prob"): "KL-GRAD-TARGET-PROB", ("target", "logprob"): "KL-GRAD-TARGET-LOGPROB",
                ("pred", "prob"): "KL-GRAD-PRED-PROB", ("pred", "logprob"): "KL-GRAD-PRED-LOGPROB",
                ("pred", "logits"): "KL-GRAD-PRED-LOGITS"}
_DIVIDING = ("mean", "batchmean", "distribution_mean", "sample_mean")
# Relative spread under which the observed / expected ratios count as one factor.
_ONE_FACTOR = 1e-3


def _unique(cs) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for c in cs if c))


def _prepare(case: Case, point: Point):
    from klconform.reference.variants import prepare
    try:
        return prepare(case, point)
    except Exception:       # an undefined case has no terms to look at
        return None


def _output_mask(prep, out_shape: tuple[int, ...], entry: int | None) -> np.ndarray:
    """Mask on S of the terms that enter output entry ``entry`` (all terms when unknown)."""
    shape = prep.shape
    mask = np.ones(shape, dtype=bool)
    if entry is None:
        return mask
    axes = set(prep.axes) if prep.axes is not None else set()
    kept = [ax for ax in range(len(shape)) if ax not in axes]
    if tuple(shape[ax] for ax in kept) != tuple(out_shape):
        return mask
    coords = np.unravel_index(entry, out_shape) if out_shape else ()
    for ax, c in zip(kept, coords):
        sel = np.zeros(shape[ax], dtype=bool)
        sel[c] = True
        mask &= sel.reshape([-1 if i == ax else 1 for i in range(len(shape))])
    return mask


def _input_mask(prep, case: Case, key: str, entry: int | None) -> np.ndarray:
    """Mask on S of the terms that input ``key``'s entry ``entry`` enters (its whole row
    along the class axis for logits, which log_softmax mixes)."""
    shape = prep.shape
    arr = getattr(case, key)
    if entry is None or arr.size == 0:
        return np.ones(shape, dtype=bool)
    idx = np.broadcast_to(np.arange(arr.size).reshape(arr.shape), shape)
    mask = idx == entry
    kind = case.target_kind if key == "target" else case.pred_kind
    if kind == "logits" and prep.ca is not None and mask.ndim:
        mask = np.broadcast_to(mask.any(axis=prep.ca, keepdims=True), shape)
    return mask


def special_clauses(prep, mask: np.ndarray) -> list[str]:
    """The §2 clauses of the special terms under ``mask`` (first applicable per term, as
    SPEC.md orders them), and KL-SPECIAL-SUM-1 when several terms meet a special one."""
    if prep is None:
        return []
    pt = prep.point
    a = np.asarray(np.broadcast_to(prep.a, prep.shape)[mask], dtype=np.float64)
    b = np.asarray(np.broadcast_to(prep.b, prep.shape)[mask], dtype=np.float64)
    out: list[str] = []
    with quiet:
        negative = (a < 0) | (b < 0)
        invalid = np.isnan(a) | np.isnan(b) | negative
        valid = ~invalid
        if invalid.any():
            out.append("KL-NEG-INF" if pt.negative == "inf" and negative.any() else "KL-INVALID-1")
        special = invalid.copy()
        if pt.epsilon != "clip_both":
            zero_p = valid & (a == 0)
            if zero_p.any():
                out.append("KL-ZERO-3" if pt.zero_inf == "nan" else "KL-ZERO-1")
                special |= zero_p
            zero_q = valid & (a > 0) & (b == 0)
            if zero_q.any():
                out.append("KL-ZERO-2")
                special |= zero_q
        inf = valid & (np.isinf(a) | np.isinf(b))
        if inf.any():
            out.append("KL-GEN-2" if pt.generalised else "KL-INF-1")
            special |= inf
    if a.size > 1 and special.any() and prep.axes is not None:
        out.append("KL-SPECIAL-SUM-1")
    if special.any():
        out.append(_TARGET_CLAUSE[prep.target.kind] if prep.target.kind != "prob" else "")
        out.append(_PRED_CLAUSE[prep.pred.kind] if prep.pred.kind != "prob" else "")
    return [c for c in out if c]


def _one_factor(expected, observed) -> bool:
    """True when ``observed`` is ``expected`` times one factor other than 1 on every
    finite nonzero entry (a wrong divisor or weight), at least one such entry."""
    e = np.asarray(expected, dtype=np.float64).reshape(-1)
    o = np.asarray(observed, dtype=np.float64).reshape(-1)
    if e.shape != o.shape:
        return False
    with quiet:
        use = np.isfinite(e) & np.isfinite(o) & (e != 0) & (o != 0)
        if not use.any():
            return False
        r = o[use] / e[use]
        f = float(np.median(r))
        return bool(abs(f - 1) > _ONE_FACTOR and np.all(np.abs(r - f) <= _ONE_FACTOR * abs(f)))


def _reduction_clauses(case: Case, point: Point) -> list[str]:
    out = [REDUCTION_CLAUSE[point.reduction]]
    if case.weight is not None:
        out.append("KL-WEIGHT-SCALAR")
    if case.sample_weight is not None and point.reduction in _DIVIDING:
        out.append("KL-WEIGHT-SUMDIV" if point.weight_divisor == "weight_sum" else "KL-WEIGHT-DIVISOR")
    return out


def point_difference(compared: Point, explaining: Point, case: Case) -> list[str]:
    """The clauses of the family fields in which ``explaining`` differs from ``compared``
    (both sides' clauses, so a divisor names both reductions)."""
    out: list[str] = []
    a, b = compared, explaining
    if a.reduction != b.reduction:
        out += [REDUCTION_CLAUSE[a.reduction], REDUCTION_CLAUSE[b.reduction]]
    if (a.epsilon, a.eps) != (b.epsilon, b.eps):
        out += [EPS_CLAUSE[a.epsilon], EPS_CLAUSE[b.epsilon]]
    if a.weight_level != b.weight_level:
        out += ["KL-WEIGHT-ELEMENT", "KL-WEIGHT-DIST"]
    if a.weight_divisor != b.weight_divisor:
        out += ["KL-WEIGHT-DIVISOR", "KL-WEIGHT-SUMDIV"]
    if a.zero_inf != b.zero_inf:
        out += ["KL-ZERO-1", "KL-ZERO-3"]
    if a.swap != b.swap:
        out += ["KL-ARG-1", "KL-ARG-ORDER"]
    if (a.target_as, a.pred_as) != (b.target_as, b.pred_as):
        out += ["KL-MISREAD-1"]
        if a.target_as != b.target_as:
            out.append(_TARGET_CLAUSE.get(case.target_kind, ""))
        if a.pred_as != b.pred_as:
            out.append(_PRED_CLAUSE.get(case.pred_kind, ""))
    if a.generalised != b.generalised:
        out += ["KL-DEF-2", "KL-GEN-1"]
    if a.normalise != b.normalise:
        out += ["KL-DEF-1", "KL-NORM-1"]
    if a.negative != b.negative:
        out += ["KL-INVALID-1", "KL-NEG-INF"]
    return [c for c in out if c]


def value_clauses(cls: str, case: Case, point: Point, exp, comparison, observed) -> tuple[str, ...]:
    """The clauses deciding a value verdict of class ``cls`` (``special_value``,
    ``precision``, ``shape``) against ``exp`` (the reference at ``point``)."""
    if cls == "shape":
        return _unique(["KL-SHAPE-2", REDUCTION_CLAUSE[point.reduction],
                        "KL-SHAPE-3" if getattr(case, "target_sent_shape", None) else ""])
    value = np.asarray(exp.value, dtype=np.float64)
    entry = getattr(comparison, "entry", None)
    if cls == "special_value":
        prep = _prepare(case, point)
        out: list[str] = []
        if prep is not None:
            mask = _output_mask(prep, value.shape, entry)
            out += special_clauses(prep, mask)
            if prep.axes is not None and not mask.any():
                out.append("KL-EMPTY-1")
            if point.reduction in _DIVIDING and prep.divisor == 0:
                out.append("KL-EMPTY-2")
        if entry is not None and value.size:
            v, vd = value.reshape(-1)[entry], np.asarray(exp.value_in_dtype, dtype=np.float64).reshape(-1)[entry]
            if np.isfinite(v) and np.isinf(vd):
                out.append("KL-DTYPE-3")
        if not out:     # no special input: a finite term the framework made special
            out = ["KL-DEF-2", REDUCTION_CLAUSE[point.reduction]]
        return _unique(out)
    # precision
    if observed is not None and _one_factor(value, observed):
        return _unique([*_reduction_clauses(case, point), "KL-BOUND-4"])
    return _unique(["KL-BOUND-2", "KL-BOUND-4",
                    *(c for c in exp.clauses if c in ("KL-BOUND-7", "KL-BOUND-8", "KL-DTYPE-2")),
                    EPS_CLAUSE[point.epsilon] if point.epsilon != "none" else ""])


def gradient_clauses(key: str, case: Case, point: Point, exp, comparison, observed) -> tuple[str, ...]:
    """The clauses deciding a ``gradient`` verdict w.r.t. input ``key`` (``comparison``
    None: the gradient was not returned)."""
    kind = (point.target_as or case.target_kind) if key == "target" else (point.pred_as or case.pred_kind)
    formula = _GRAD_CLAUSE.get((key, kind), "KL-GRAD-1")
    extra = ["KL-ARG-ORDER" if point.swap else "",
             "KL-GRAD-EPS" if point.epsilon != "none" else "",
             "KL-GRAD-GEN" if point.generalised else "", "KL-GRAD-NORM" if point.normalise else ""]
    if comparison is None:
        return _unique(["KL-GRAD-1", formula])
    if comparison.cls == "special_value":
        prep = _prepare(case, point)
        out = []
        if prep is not None:
            sp = special_clauses(prep, _input_mask(prep, case, key, comparison.entry))
            if "KL-ZERO-1" in sp or "KL-ZERO-3" in sp:
                out.append("KL-GRAD-ZERO")
            if {"KL-ZERO-2", "KL-INF-1", "KL-INVALID-1", "KL-NEG-INF", "KL-GEN-2"} & set(sp):
                out.append("KL-GRAD-INF")
            out += [c for c in sp if c.startswith(("KL-TARGET-", "KL-INPUT-"))]
        return _unique([formula, *out, *extra])
    expected = (getattr(exp, "grads", None) or {}).get(key)
    if observed is not None and expected is not None and _one_factor(expected, observed):
        return _unique(["KL-GRAD-RED", *_reduction_clauses(case, point), formula])
    return _unique([formula, *extra, "KL-BOUND-3"])


def error_clauses(case: Case, point: Point, exp) -> tuple[str, ...]:
    """The clauses deciding an ``error`` verdict: the clause that leaves the value
    undefined (``exp`` an exception), else those that define it (the reduction, and the
    special values of the case's terms)."""
    if isinstance(exp, Exception):
        c = getattr(exp, "clause", None)
        return _unique([c or "KL-RED-0D"])
    prep = _prepare(case, point)
    sp = special_clauses(prep, np.ones(prep.shape, dtype=bool)) if prep is not None else []
    return _unique([*sp, *_reduction_clauses(case, point)])


def dtype_clauses(case: Case) -> tuple[str, ...]:
    mixed = case.input_dtype("target") != case.dtype or case.input_dtype("pred") != case.dtype
    return _unique(["KL-DTYPE-1", "KL-DTYPE-4" if mixed else ""])

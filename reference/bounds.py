"""Per-case error bounds (SPEC.md KL-BOUND-1..4): how far a correctly implemented
framework computing in ``case.dtype`` may be from the exact result.

Model (KL-BOUND-1): the straightforward algorithm in the dtype — decode (log, exp,
log_softmax), ``d = log a - log b``, ``T = a*d``, weight, sum the ``k`` terms of each
output in any order, divide by ``D`` — with every elementary operation within 2u relative
(libm log/exp within 1 ulp) and an absolute η = (smallest normal)·u per subnormal result.
The bounds are first-order forward error bounds of that algorithm, summed with absolute
values, so they hold for any summation order.
"""
from __future__ import annotations

import numpy as np

from .dtypes import FINFO, UNIT_ROUNDOFF
from .summation import accumulation_units

from .variants import LD, Prepared, effective_logs, reduce_sum, terms


def unit_roundoff(dtype: str) -> float:
    return UNIT_ROUNDOFF[dtype]


def underflow_unit(dtype: str) -> float:
    """η: the absolute error of one operation whose result is subnormal."""
    return FINFO[dtype][1] * UNIT_ROUNDOFF[dtype]


def _finite(x: np.ndarray) -> np.ndarray:
    """Non-finite budget entries only occur where the result is non-finite (bound 0 there)."""
    return np.where(np.isfinite(x), x, 0)


def log_softmax_factor(prep: Prepared) -> np.ndarray:
    """λ on S: the log_softmax error of log q in units of u (0 unless logits, KL-BOUND-2)."""
    d = prep.pred
    if d.kind != "logits" or d.axis is None:
        return np.zeros(prep.shape, dtype=LD)
    z = np.asarray(d.raw, dtype=LD)
    n_c = z.shape[d.axis]
    with np.errstate(invalid="ignore"):
        m = np.max(np.where(np.isfinite(z), z, LD(-np.inf)), axis=d.axis, keepdims=True) \
            if n_c else np.zeros_like(z)
        lam = np.abs(z - m) + (accumulation_units(n_c, prep.case.dtype) + 1) + np.log(max(n_c, 1)) + np.abs(d.lv)
    return np.broadcast_to(_finite(lam), prep.shape)


#: Above this many elements a value bound is summed in float64 instead of extended
#: precision (10× faster on 10⁷ terms; a sum of non-negative float64 budgets errs by
#: < 2⁻⁴⁰ relative, covered by BIG_SLACK).  Smaller cases keep the extended path.
BIG = 2**16
BIG_SLACK = 1 + 2.0**-40


def value_bound(prep: Prepared, value: np.ndarray) -> np.ndarray:
    """KL-BOUND-2, float64, shaped like ``value``."""
    a2, la2, b2, lb2 = effective_logs(prep.point, prep.a, prep.la, prep.b, prep.lb)
    t = np.abs(terms(prep.point, prep.a, prep.la, prep.b, prep.lb, prep.a_is_log))
    lam = log_softmax_factor(prep)
    parts = [a2, la2, b2, lb2, t, lam, np.abs(prep.coef), prep.a_nu, prep.b_nu]
    work = LD
    if int(np.prod(prep.shape, dtype=np.int64)) > BIG:
        with np.errstate(over="ignore"):
            narrow = [None if x is None else np.asarray(x, dtype=np.float64) for x in parts]
        if all(_kept(x, y) for x, y in zip(parts, narrow)):
            work, parts = np.float64, narrow
    a2, la2, b2, lb2, t, lam, c, a_nu, b_nu = parts
    u = work(unit_roundoff(prep.case.dtype))
    eta = work(underflow_unit(prep.case.dtype))
    with np.errstate(invalid="ignore", over="ignore"):
        logs = _finite(np.abs(la2)) + _finite(np.abs(lb2)) + 1 + lam
        per = np.where(a2 == 0, work(0), np.abs(a2) * logs) + 3 * t + lam * t
        per = per + _new_points_budget(prep.point, a2, la2, b2, lb2, t, a_nu, b_nu)
        budget = reduce_sum(_finite(c * per), prep)
        absum = reduce_sum(_finite(c * t), prep)
        k = work(prep.terms_per_output)
        acc = work(accumulation_units(prep.terms_per_output, prep.case.dtype))
        d = work(prep.divisor) if prep.divisor else work(1)
        b = (2 * u * (budget + acc * absum) / d + u * np.abs(np.asarray(value, dtype=work))
             + (4 * k + 1) * eta / d)
    b = np.asarray(b, dtype=np.float64) * (BIG_SLACK if work is np.float64 else 1)
    return np.where(np.isfinite(value), b, 0.0)


def _kept(x, narrow) -> bool:
    """True when float64 ``narrow`` kept every finite entry of ``x`` finite."""
    if x is None or not np.isinf(narrow).any():
        return True
    return not np.any(np.isinf(narrow) & np.isfinite(x))


def _new_points_budget(pt, a2, la2, b2, lb2, t, a_nu, b_nu) -> np.ndarray:
    """KL-BOUND-6: the extra first-order error (in units of u) of the generalised term's
    ``- a + b`` (two roundings of at most |a log(a/b)| + |a| + |b|) and of normalised inputs
    (relative errors ν_a, ν_b of a and b perturb T by at most (ν_a + ν_b)(|a| + |b| + |T|))."""
    extra = np.zeros(t.shape, dtype=t.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        mag = _finite(np.abs(a2)) + _finite(np.abs(b2))
        if pt.generalised:
            extra = extra + mag + _finite(np.abs(np.where(a2 == 0, 0, a2 * (la2 - lb2))))
        if pt.normalise and a_nu is not None:
            extra = extra + (a_nu + b_nu) * (mag + t)
    return _finite(extra)


def normalise_backward(prep: Prepared, side: str, log_space: bool, g: np.ndarray,
                       gb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL-GRAD-NORM on S: the gradient ``g`` w.r.t. a normalised side (log or value) carried
    back through the normalisation along the class axis, and its bound (KL-BOUND-6)."""
    vh = prep.a if side == "a" else prep.b
    s = prep.a_sum if side == "a" else prep.b_sum
    nu = prep.a_nu if side == "a" else prep.b_nu
    ax = prep.ca
    u = LD(unit_roundoff(prep.case.dtype))
    n_c = prep.shape[ax]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if log_space:
            sg = np.sum(g, axis=ax, keepdims=True)
            res = g - vh * sg
            b = (gb + _finite(np.abs(vh)) * np.sum(gb, axis=ax, keepdims=True)
                 + 2 * u * _finite(np.abs(vh)) * (nu + accumulation_units(n_c, prep.case.dtype) + 1) * np.sum(_finite(np.abs(g)), axis=ax, keepdims=True)
                 + 2 * u * (_finite(np.abs(res)) + _finite(np.abs(vh * sg))))
        else:
            gv = np.where(vh == 0, LD(0), g * vh)
            sgv = np.sum(gv, axis=ax, keepdims=True)
            res = (g - sgv) / s
            b = ((gb + np.sum(gb * _finite(np.abs(vh)), axis=ax, keepdims=True)
                  + 2 * u * (nu + accumulation_units(n_c, prep.case.dtype) + 1) * np.sum(_finite(np.abs(gv)), axis=ax, keepdims=True)
                  + 2 * u * (_finite(np.abs(g)) + _finite(np.abs(sgv)))) / _finite(np.abs(s))
                 + 2 * u * _finite(np.abs(res)))
    return res, _finite(b)


def grad_bound(prep: Prepared, side: str, log_space: bool, partial: np.ndarray,
               coef: np.ndarray, grad_s: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """KL-BOUND-3 before any softmax backward, summed to the input's ``shape`` (longdouble).

    ``partial`` is ∂T/∂(input encoding) on S, ``coef`` c_i = w W_i / D, ``grad_s`` = c·∂.
    """
    from .variants import sum_to_shape
    a2, la2, b2, lb2 = effective_logs(prep.point, prep.a, prep.la, prep.b, prep.lb)
    with np.errstate(invalid="ignore", over="ignore"):
        logs = _finite(np.abs(la2)) + _finite(np.abs(lb2)) + 1
        dp = _finite(np.abs(partial))
        a_part = np.where(a2 == 0, LD(0), np.abs(a2) * logs)
        if side == "a":
            e = a_part + 2 * dp if log_space else logs + dp
        else:
            e = np.abs(_finite(a2)) + dp if log_space else 2 * dp
        ac = np.abs(coef)
        if prep.point.normalise and prep.a_nu is not None:
            # KL-BOUND-6: the partial evaluated at normalised a, b off by ν_a u, ν_b u relative
            e = e + (prep.a_nu + prep.b_nu) * (1 + dp)
        per = _finite(ac * e) + 3 * _finite(np.abs(grad_s))
        k_b = LD(max(1, int(np.prod(prep.shape, dtype=np.int64)))
                 / max(1, int(np.prod(shape, dtype=np.int64))))
        acc = LD(accumulation_units(int(k_b), prep.case.dtype))
        budget = sum_to_shape(per, shape) + acc * sum_to_shape(_finite(np.abs(grad_s)), shape)
    u = LD(unit_roundoff(prep.case.dtype))
    return 2 * u * budget + 4 * k_b * LD(underflow_unit(prep.case.dtype))


def softmax_backward_bound(prep: Prepared, g: np.ndarray, g_bound: np.ndarray,
                           result: np.ndarray) -> np.ndarray:
    """Bound of G = g − q·Σg (logits), given the bound of g (KL-BOUND-3)."""
    d = prep.pred
    u = LD(unit_roundoff(prep.case.dtype))
    q = d.v
    n_c = q.shape[d.axis]
    z = np.asarray(d.raw, dtype=LD)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(np.where(np.isfinite(z), z, LD(-np.inf)), axis=d.axis, keepdims=True) \
            if n_c else np.zeros_like(z)
        n_acc = accumulation_units(n_c, prep.case.dtype) + 1
        lam = _finite(np.abs(z - m) + n_acc + np.log(max(n_c, 1)) + np.abs(d.lv))
        sg = np.sum(g, axis=d.axis, keepdims=True)
        sabs = np.sum(_finite(np.abs(g)), axis=d.axis, keepdims=True)
        sb = np.sum(g_bound, axis=d.axis, keepdims=True)
        b = (g_bound + _finite(q) * sb + 2 * u * _finite(q) * (lam + n_acc) * sabs
             + 2 * u * (_finite(np.abs(result)) + _finite(q * np.abs(sg))))
    return b

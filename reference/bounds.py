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

from ._quiet import quiet
from .dtypes import FINFO, UNIT_ROUNDOFF
from .summation import accumulation_units

from . import variants as _variants
from .variants import LD, Prepared, effective_logs, reduce_sum, terms


def unit_roundoff(dtype: str) -> float:
    return UNIT_ROUNDOFF[dtype]


def underflow_unit(dtype: str) -> float:
    """η: the absolute error of one operation whose result is subnormal."""
    return FINFO[dtype][1] * UNIT_ROUNDOFF[dtype]


def _finite(x: np.ndarray) -> np.ndarray:
    """Non-finite budget entries only occur where the result is non-finite (bound 0 there).
    ``x`` itself when it is finite throughout (callers never write into the result)."""
    fin = np.isfinite(x)
    return x if fin.all() else np.where(fin, x, 0)


def log_softmax_factor(prep: Prepared) -> np.ndarray | None:
    """λ on S: the log_softmax error of log q in units of u (KL-BOUND-2); None (λ = 0)
    unless the prediction is read as logits."""
    d = prep.pred
    if d.kind != "logits" or d.axis is None:
        return None
    z = np.asarray(d.raw, dtype=prep.work)
    n_c = z.shape[d.axis]
    with quiet:
        m = np.max(np.where(np.isfinite(z), z, prep.work(-np.inf)), axis=d.axis, keepdims=True) \
            if n_c else np.zeros_like(z)
        lam = np.abs(z - m) + (accumulation_units(n_c, prep.case.dtype) + 1) + np.log(max(n_c, 1)) + np.abs(d.lv)
    return np.broadcast_to(_finite(lam), prep.shape)


#: Above ``variants.BIG`` elements a value bound is summed in float64 (10× faster on 10⁷
#: terms than extended precision; a sum of non-negative float64 budgets errs by < 2⁻⁴⁰
#: relative, covered by BIG_SLACK, as are the few float64 ulps of KL-BOUND-8's terms).
BIG_SLACK = 1 + 2.0**-40


def value_bound(prep: Prepared, value: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """KL-BOUND-2, float64, shaped like ``value``; ``t``: the point's terms
    (``variants.terms`` of ``prep``) where the caller has them already."""
    a2, la2, b2, lb2 = effective_logs(prep.point, prep.a, prep.la, prep.b, prep.lb)
    if t is None:
        t = terms(prep.point, prep.a, prep.la, prep.b, prep.lb, prep.a_is_log, prep.b_is_log)
    lam = log_softmax_factor(prep)
    # without sample weights c'_i = w everywhere: a scalar, not an array of S (None for 1)
    c = np.abs(prep.coef) if prep.W is not None else abs(prep.work(prep.weight))
    c = None if prep.W is None and c == 1 else c
    parts = [a2, la2, b2, lb2, t, lam, c, prep.a_nu, prep.b_nu]
    work = prep.work
    if work is LD and int(np.prod(prep.shape, dtype=np.int64)) > _variants.BIG:
        with quiet:
            narrow = [None if x is None else np.asarray(x, dtype=np.float64) for x in parts]
        if all(_kept(x, y) for x, y in zip(parts, narrow)):
            work, parts = np.float64, narrow
    a2, la2, b2, lb2, t, lam, c, a_nu, b_nu = parts
    u = work(unit_roundoff(prep.case.dtype))
    eta = work(underflow_unit(prep.case.dtype))
    with quiet:
        summands = _fused_budgets(prep.point, work, a2, la2, lb2, t, lam, c) or \
            _budgets(prep.point, work, a2, la2, b2, lb2, t, lam, c, a_nu, b_nu)
        budget, absum = (reduce_sum(x, prep) for x in summands)
        k = work(prep.terms_per_output)
        acc = work(accumulation_units(prep.terms_per_output, prep.case.dtype))
        d = work(prep.divisor) if prep.divisor else work(1)
        b = (2 * u * (budget + acc * absum) / d + u * np.abs(np.asarray(value, dtype=work))
             + (4 * k + 1) * eta / d)
    b = np.asarray(b, dtype=np.float64) * (BIG_SLACK if work is np.float64 else 1)
    return np.where(np.isfinite(value), b, 0.0)


def _budgets(pt, work, a2, la2, b2, lb2, t, lam, c, a_nu, b_nu) -> tuple[np.ndarray, np.ndarray]:
    """``value_bound``'s two summands on S, non-finite entries 0: the per-entry budget
    c·(|a|·(|log a| + |log b| + 1 + λ) + (3 + λ)|T| + KL-BOUND-6's extra) and c·|T|."""
    # in-place steps write only into results made here (0-D: scalars, rebound)
    t = np.abs(t)
    logs = _finite(np.abs(la2)) + _finite(np.abs(lb2))
    logs += 1
    if lam is not None:
        logs += lam
    per = np.abs(a2) * logs
    zero = a2 == 0
    if zero.any():          # a2 = 0 adds nothing, even where float64 logs overflowed
        per = np.where(zero, work(0), per)
    per += 3 * t
    if lam is not None:
        per += lam * t
    extra = _new_points_budget(pt, a2, la2, b2, lb2, t, a_nu, b_nu)
    if extra is not None:
        per += extra
    return _finite(per if c is None else c * per), _finite(t if c is None else c * t)


def _fused_budgets(pt, work, a2, la2, lb2, t, lam, c) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_budgets` in one compiled pass (``_kernel.bound_budgets``: bitwise its
    results, ~20 passes over S fewer) where its computation is only this: a large float64
    working precision without log_softmax, weights or KL-BOUND-6 terms, every array of S's
    shape, and numba present.  None: take the numpy steps."""
    if (lam is not None or c is not None or pt.generalised or pt.normalise or work is not np.float64
            or not isinstance(t, np.ndarray) or t.size <= _variants.BIG):
        return None
    arrays = (a2, la2, lb2, t)
    if not all(isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == t.shape
               and x.flags.c_contiguous for x in arrays):
        return None
    from . import _accurate
    if _accurate.backend() != "numba":
        return None
    per, absolute = np.empty(t.shape), np.empty(t.shape)
    _accurate._kernel_module().bound_budgets(*(x.reshape(-1) for x in arrays), per.reshape(-1),
                                             absolute.reshape(-1))
    return per, absolute


def _kept(x, narrow) -> bool:
    """True when float64 ``narrow`` kept every finite entry of ``x`` finite."""
    if x is None or not np.isinf(narrow).any():
        return True
    return not np.any(np.isinf(narrow) & np.isfinite(x))


def _new_points_budget(pt, a2, la2, b2, lb2, t, a_nu, b_nu) -> np.ndarray | None:
    """KL-BOUND-6: the extra first-order error (in units of u) of the generalised term's
    ``- a + b`` (two roundings of at most |a log(a/b)| + |a| + |b|) and of normalised inputs
    (relative errors ν_a, ν_b of a and b perturb T by at most (ν_a + ν_b)(|a| + |b| + |T|));
    None (no extra) for the other points."""
    if not pt.generalised and not pt.normalise:
        return None
    extra = np.zeros(t.shape, dtype=t.dtype)
    with quiet:
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
    u = prep.work(unit_roundoff(prep.case.dtype))
    n_c = prep.shape[ax]
    with quiet:
        if log_space:
            sg = np.sum(g, axis=ax, keepdims=True)
            res = g - vh * sg
            b = (gb + _finite(np.abs(vh)) * np.sum(gb, axis=ax, keepdims=True)
                 + 2 * u * _finite(np.abs(vh)) * (nu + accumulation_units(n_c, prep.case.dtype) + 1) * np.sum(_finite(np.abs(g)), axis=ax, keepdims=True)
                 + 2 * u * (_finite(np.abs(res)) + _finite(np.abs(vh * sg))))
        else:
            gv = np.where(vh == 0, prep.work(0), g * vh)
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
    with quiet:
        logs = _finite(np.abs(la2)) + _finite(np.abs(lb2)) + 1
        dp = _finite(np.abs(partial))
        a_part = np.where(a2 == 0, prep.work(0), np.abs(a2) * logs)
        if side == "a":
            e = a_part + 2 * dp if log_space else logs + dp
        else:
            e = np.abs(_finite(a2)) + dp if log_space else 2 * dp
        ac = np.abs(coef)
        if prep.point.normalise and prep.a_nu is not None:
            # KL-BOUND-6: the partial evaluated at normalised a, b off by ν_a u, ν_b u relative
            e = e + (prep.a_nu + prep.b_nu) * (1 + dp)
        per = _finite(ac * e) + 3 * _finite(np.abs(grad_s))
        k_b = prep.work(max(1, int(np.prod(prep.shape, dtype=np.int64)))
                 / max(1, int(np.prod(shape, dtype=np.int64))))
        acc = prep.work(accumulation_units(int(k_b), prep.case.dtype))
        budget = sum_to_shape(per, shape) + acc * sum_to_shape(_finite(np.abs(grad_s)), shape)
    u = prep.work(unit_roundoff(prep.case.dtype))
    return 2 * u * budget + 4 * k_b * prep.work(underflow_unit(prep.case.dtype))


def softmax_backward_bound(prep: Prepared, g: np.ndarray, g_bound: np.ndarray,
                           result: np.ndarray) -> np.ndarray:
    """Bound of G = g − q·Σg (logits), given the bound of g (KL-BOUND-3)."""
    d = prep.pred
    u = prep.work(unit_roundoff(prep.case.dtype))
    q = d.v
    n_c = q.shape[d.axis]
    z = np.asarray(d.raw, dtype=prep.work)
    with quiet:
        m = np.max(np.where(np.isfinite(z), z, prep.work(-np.inf)), axis=d.axis, keepdims=True) \
            if n_c else np.zeros_like(z)
        n_acc = accumulation_units(n_c, prep.case.dtype) + 1
        lam = _finite(np.abs(z - m) + n_acc + np.log(max(n_c, 1)) + np.abs(d.lv))
        sg = np.sum(g, axis=d.axis, keepdims=True)
        sabs = np.sum(_finite(np.abs(g)), axis=d.axis, keepdims=True)
        sb = np.sum(g_bound, axis=d.axis, keepdims=True)
        b = (g_bound + _finite(q) * sb + 2 * u * _finite(q) * (lam + n_acc) * sabs
             + 2 * u * (_finite(np.abs(result)) + _finite(q * np.abs(sg))))
    return b

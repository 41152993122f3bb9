"""An independent arbitrary-precision oracle of the family (SPEC.md §1–§7), for tests.

Written from the spec text, not from reference/: object arrays of mpmath numbers, finite
positive inputs only (special values are tested against the clauses directly).  §11:
``generalised`` (KL-GEN-1) and ``normalise`` (KL-NORM-1); ``negative`` only matters for
negative inputs, which this oracle does not take.
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 50
_log = np.vectorize(mp.log, otypes=[object])
_exp = np.vectorize(mp.exp, otypes=[object])
_mpf = np.vectorize(lambda x: mp.mpf(float(x)), otypes=[object])


def to_mp(a) -> np.ndarray:
    return _mpf(np.asarray(a, dtype=np.float64))


def decode(x: np.ndarray, kind: str, axis: int | None):
    """(probabilities, logs) of an object array read as ``kind``."""
    if kind == "prob":
        return x, _log(x)
    if kind == "logprob":
        return _exp(x), x
    m = np.max(x, axis=axis, keepdims=True)
    lv = (x - m) - _log(np.sum(_exp(x - m), axis=axis, keepdims=True))
    return _exp(lv), lv


def loss(case, point, target=None, pred=None, *, as_float64_value=False):
    """Σ(output) and the output of ``case`` under ``point`` (target/pred override values).
    ``as_float64_value``: the swapped first side of a log-encoded prediction is the float64
    value of exp(log q) (KL-ARG-ORDER), a rounding that finite differences must not see."""
    t = to_mp(case.target) if target is None else target
    z = to_mp(case.pred) if pred is None else pred
    shape = np.broadcast_shapes(t.shape, z.shape)
    nd = len(shape)
    ca = case.class_axis % nd if nd else None
    ba = case.batch_axis % nd if nd else None
    p, lp = decode(t, point.target_as or case.target_kind, None)
    q, lq = decode(z, point.pred_as or case.pred_kind,
                   None if ca is None else ca - (nd - z.ndim))
    p, lp, q, lq = (np.broadcast_to(v, shape) for v in (p, lp, q, lq))
    if getattr(point, "normalise", False):
        # KL-NORM-1: each side divided by its class-axis sum on S (finite positive inputs,
        # so dividing probabilities and log_softmax of logs agree)
        p = p / np.sum(p, axis=ca, keepdims=True)
        q = q / np.sum(q, axis=ca, keepdims=True)
        lp, lq = _log(p), _log(q)
    if point.swap:
        p, lp, q, lq = q, lq, p, lp
        if as_float64_value and (point.pred_as or case.pred_kind) != "prob":
            # KL-ARG-ORDER: the first side is q = exp(log q) as a float64 value (exp(-1000)
            # is 0); its log stays the given log q
            p = _mpf(np.vectorize(float, otypes=[np.float64])(p))
    if point.epsilon == "target_log_eps":
        lp = _log(p + mp.mpf(point.eps))
    elif point.epsilon == "clip_both":
        eps = mp.mpf(point.eps)
        clip = np.vectorize(lambda v: min(max(v, eps), mp.mpf(1)), otypes=[object])
        # log p' is the side's own log where nothing was clipped (log clip(exp x) = x; the
        # swapped side's float64 value does not change its log)
        relog = np.vectorize(lambda c, v, lv: lv if c == v else mp.log(c), otypes=[object])
        cp, cq = clip(p), clip(q)
        lp, lq = relog(cp, p, lp), relog(cq, q, lq)
        p, q = cp, cq
    T = p * (lp - lq)
    if getattr(point, "generalised", False):
        T = T - p + q                                   # KL-GEN-1
    X = T * (mp.mpf(1) if case.weight is None else mp.mpf(case.weight))
    if case.sample_weight is not None:
        X = X * np.broadcast_to(to_mp(case.sample_weight), shape)
    n = int(np.prod(shape))
    r = point.reduction
    if r == "none":
        out = X
    elif r == "distribution":
        out = np.sum(X, axis=ca)
    elif r == "sum":
        out = np.sum(X)
    elif r == "mean":
        out = np.sum(X) / n
    elif r == "batchmean":
        out = np.sum(X) / (shape[ba] if nd else 1)
    elif r == "distribution_mean":
        out = np.sum(X) / (n // shape[ca])
    elif r == "sample_sum":
        out = np.sum(X, axis=tuple(i for i in range(nd) if i != ba))
    elif r == "sample_mean":
        out = np.sum(X, axis=tuple(i for i in range(nd) if i != ba)) / (n // shape[ba])
    else:
        raise ValueError(r)
    out = np.asarray(out, dtype=object)
    return mp.fsum(out.ravel().tolist()), out


def value(case, point) -> np.ndarray:
    """The output as float64 (correctly rounded from 50 digits)."""
    _, out = loss(case, point, as_float64_value=True)
    return np.vectorize(float, otypes=[np.float64])(out) if out.shape else np.float64(float(out[()]))


def fd_gradient(case, point, which: str, h=mp.mpf(10) ** -20) -> np.ndarray:
    """Central differences of Σ(output) w.r.t. ``which`` ("target" / "pred") at 50 digits."""
    base = {"target": to_mp(case.target), "pred": to_mp(case.pred)}
    x = base[which]
    g = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += h
        lo[idx] -= h
        f_hi, _ = loss(case, point, **{**base, which: hi})
        f_lo, _ = loss(case, point, **{**base, which: lo})
        g[idx] = float((f_hi - f_lo) / (2 * h))
    return g

"""A second, independent implementation of reference/SPEC.md, written from its text alone.

``evaluate(case, point)`` returns the value and the gradients of one point of the family
(SPEC.md §7, §11) for one :class:`klconform.case.Case`, exactly as the clauses read, with
no code shared with ``reference/`` (only the ``Point`` vocabulary).  It is slow on purpose:
one Python loop per entry, each entry decided by the clauses in the order SPEC §2 gives,
in numpy ``longdouble`` (x87 extended precision: relative error 2⁻⁶⁴ per operation, and
the exponent range to evaluate ``exp`` of every float64 log-probability the corpus holds).

The results are ``longdouble`` arrays: the "exact" value of the point; :func:`in_dtype`
rounds them once into a case dtype (KL-DTYPE-1, KL-DTYPE-3).  Where SPEC defines no value
(KL-RED-0D, KL-WEIGHT-DIST, KL-WEIGHT-SUMDIV, KL-INPUT-LOGITS, KL-NORM-1 on 0-D) it raises
:class:`Undefined`, as a framework raises.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

L = np.longdouble
ZERO_L = L(0)
ONE_L = L(1)
INF_L = L("inf")
NAN_L = L("nan")

# Classes of a decoded probability (SPEC §2: the conventions test these, in order).
NAN, NEG, ZERO, POS, INF = 0, 1, 2, 3, 4


class Undefined(ValueError):
    """SPEC defines no value here; ``clause`` says which clause."""

    def __init__(self, clause: str, why: str):
        super().__init__(f"{clause}: {why}")
        self.clause = clause


@dataclasses.dataclass
class Result:
    value: np.ndarray                    # longdouble, shape per KL-SHAPE-2
    grads: dict[str, np.ndarray]         # "target"/"pred": longdouble, the inputs' held shapes


# ------------------------------------------------------------------------------ decoding
@dataclasses.dataclass
class Side:
    """One input decoded entry by entry on S: class, probability ``v``, its log ``lv``, and
    whether the input holds logs (KL-ZERO-3 and KL-ARG-ORDER look at the encoding).  The
    arrays are computed elementwise at once (numpy's scalar log costs microseconds)."""

    cls: np.ndarray
    v: np.ndarray
    lv: np.ndarray
    log_encoded: bool


def from_prob(x) -> Side:
    """KL-TARGET-PROB / KL-INPUT-PROB; KL-INVALID-1 (−0.0 is zero, −∞ is negative)."""
    x = np.asarray(x, dtype=L)
    cls = np.where(np.isnan(x), NAN, np.where(x == 0, ZERO, np.where(x < 0, NEG, np.where(np.isinf(x), INF, POS))))
    v = x.copy()        # −0.0 is a zero (its class) that keeps its sign in −p/q (KL-GRAD-INF)
    lv = np.where(cls == POS, np.log(np.where(cls == POS, x, ONE_L)),
                  np.where(cls == ZERO, -INF_L, np.where(cls == INF, INF_L, NAN_L)))
    return Side(cls.astype(np.int8), v, lv, False)


def from_log(lx) -> Side:
    """KL-TARGET-LOGPROB / KL-INPUT-LOGPROB: p = exp(log p); never negative (KL-INVALID-1)."""
    lx = np.asarray(lx, dtype=L)
    cls = np.where(np.isnan(lx), NAN, np.where(lx == -INF_L, ZERO, np.where(lx == INF_L, INF, POS)))
    return Side(cls.astype(np.int8), np.exp(lx), lx.copy(), True)


# ------------------------------------------------------------------------------ the term
_NAN5 = (NAN_L, NAN_L, NAN_L, NAN_L, NAN_L)
_ZERO5 = (ZERO_L, ZERO_L, ZERO_L, ZERO_L, ZERO_L)


def term(ac, av, alv, alve, alog, bc, bv, blv, point, eps, log_eps):
    """T(a, b), a the first side (P; Q under swap), and its partials, as a tuple
    (T, ∂T/∂a, ∂T/∂b, ∂T/∂(log a), ∂T/∂(log b)): SPEC §2, §6, §11 and §8 (KL-GRAD-*).
    ``alve`` is log(a + eps) for target_log_eps."""
    gen = point.generalised
    if point.epsilon == "clip_both":
        # KL-EPS-CLIP: clipping comes before every convention; negatives become eps, NaN stays
        # NaN (so T is NaN); KL-GRAD-EPS: the derivative of clip selects, so an entry outside
        # [eps, 1] (NaN included) has partial 0 and one inside keeps the clipped partial
        a1, la1, ia = _clipped(ac, av, alv, eps, log_eps)
        b1, lb1, ib = _clipped(bc, bv, blv, eps, log_eps)
        d = la1 - lb1
        t = a1 * d + ((b1 - a1) if gen else ZERO_L)
        da = (d if gen else d + 1) if ia else ZERO_L
        db = -((a1 / b1 - 1) if gen else a1 / b1) if ib else ZERO_L
        # log encodings: chain rule through p = exp(t) (KL-GRAD-EPS); outside [eps, 1] the
        # derivative of clip is 0, so the partial w.r.t. the log is 0 too (at +∞ as well)
        return t, da, db, (av * da if ia else ZERO_L), (bv * db if ib else ZERO_L)

    # KL-INVALID-1 / KL-NEG-INF / KL-NEG-ZERO
    if ac == NAN or bc == NAN:
        return _NAN5
    if ac == NEG or bc == NEG:
        neg = point.negative
        if neg == "inf":
            return (INF_L, NAN_L, NAN_L, NAN_L, NAN_L)
        if neg == "zero" and bc != NEG:
            return _ZERO5          # a negative first side: T = 0, zero partials
        return _NAN5

    tleps = point.epsilon == "target_log_eps"
    if ac == POS and bc == POS:
        # 0 < p, q < +∞: the formula itself (KL-DEF-1, KL-EPS-TARGET-LOG, KL-GEN-1) and its
        # partials (KL-GRAD-PRED-*, KL-GRAD-TARGET-*, KL-GRAD-EPS, KL-GRAD-GEN)
        d = (alve if tleps else alv) - blv
        t = ZERO_L if d == 0 else av * d       # exactly 0 when P == Q (KL-DEF-2)
        r = av / bv
        if gen:
            t = t - av + bv
            da = d + av / (av + eps) - 1 if tleps else d
            return t, da, 1 - r, av * da, bv - av
        da = d + av / (av + eps) if tleps else d + 1
        return t, da, -r, av * da, -av
    # partials by the formula, in IEEE arithmetic (KL-GRAD-INF; KL-GRAD-EPS, KL-GRAD-GEN)
    lae = alve if tleps else alv
    if ac == ZERO:
        # KL-GRAD-ZERO / KL-GRAD-GEN at p = 0 (valid q)
        if tleps:
            da = lae - blv                     # own formula: log(0 + eps) − log q + 0
        else:
            da = -INF_L if bc != ZERO else NAN_L
        dla = ZERO_L if bc != ZERO else NAN_L  # t = −∞, q > 0: 0 (the limit)
        db = ONE_L if gen else ZERO_L
        dlb = bv if gen else ZERO_L
    else:
        d = lae - blv
        if tleps:
            da = d + av / (av + eps) - (1 if gen else 0)
        else:
            da = d if gen else d + 1
        db = (1 - av / bv) if gen else -av / bv
        dla = av * da
        dlb = (bv - av) if gen else -av

    # value: the conventions of §2 in order (KL-GEN-2 for the generalised term)
    if ac == ZERO:
        if point.zero_inf == "nan" and (bc == ZERO or alog):
            t = NAN_L                          # KL-ZERO-3 (gradients stay canonical)
        else:
            t = bv if gen else ZERO_L          # KL-ZERO-1 / KL-GEN-2
    elif bc == ZERO:
        t = INF_L                              # KL-ZERO-2
    elif ac == INF and bc == INF:
        t = NAN_L                              # KL-INF-1 / KL-GEN-2; the partials are their
                                               # formulas on their own (KL-GRAD-INF)
    elif ac == INF:
        t = INF_L                              # KL-INF-1 / KL-GEN-2
    elif bc == INF:
        t = INF_L if gen else -INF_L           # KL-INF-1 / KL-GEN-2
    else:
        dd = lae - blv
        t = ZERO_L if dd == 0 else av * dd     # exactly 0 when P == Q (KL-DEF-2)
        if gen:
            t = t - av + bv
    return t, da, db, dla, dlb


def _clipped(c, v, lv, eps, log_eps):
    """KL-EPS-CLIP: (a', log a', 1[eps ≤ a ≤ 1]); NaN stays NaN and fails the test."""
    if c == NAN:
        return NAN_L, NAN_L, False
    if c == NEG or c == ZERO or (c == POS and v < eps):
        return eps, log_eps, False
    if c == INF or v > 1:
        return ONE_L, ZERO_L, False
    return v, lv, True


# ------------------------------------------------------------------------------ shapes
def _axis(ax: int, nd: int) -> int:
    if not -nd <= ax < nd:
        raise Undefined("KL-SHAPE-1", f"axis {ax} out of range for {nd}-D")
    return ax % nd


def _log_softmax_rows(values: np.ndarray, axis: int) -> np.ndarray:
    """KL-INPUT-LOGITS along ``axis``: (z − m) − log Σ exp(z − m); a row with NaN or +∞, or
    only −∞, is NaN throughout; −∞ in an otherwise finite row gives −∞."""
    z = np.moveaxis(np.asarray(values, dtype=L), axis, -1)
    out = np.empty(z.shape, dtype=L)
    for idx in np.ndindex(z.shape[:-1]):
        row = z[idx]
        if len(row) == 0:
            continue
        if np.isnan(row).any() or (row == INF_L).any() or (row == -INF_L).all():
            out[idx] = NAN_L
            continue
        m = row[row != -INF_L].max()
        s = ZERO_L
        for e in np.exp(row - m):
            s += e
        out[idx] = (row - m) - np.log(s)
    return np.moveaxis(out, -1, axis)


def _sum_to(g: np.ndarray, S: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient on S (flat, C order) back onto an input's own shape (KL-GRAD-1)."""
    out = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype=L)
    if g.size and not shape:
        np.add.at(out, np.zeros(g.size, dtype=np.intp), g)
    elif g.size:
        multi = np.unravel_index(np.arange(g.size), S)
        lead = len(S) - len(shape)
        sub = tuple(np.zeros(g.size, dtype=np.intp) if shape[k] == 1 else multi[lead + k] for k in range(len(shape)))
        dest = np.ravel_multi_index(sub, shape)
        np.add.at(out, dest, g)        # unbuffered: one addition per entry, in order
    return out.reshape(shape)


def _rows(S: tuple[int, ...], ca: int | None) -> list[np.ndarray]:
    """The flat indices (C order on S) of each distribution along the class axis."""
    N = int(np.prod(S, dtype=np.int64))
    if ca is None:
        return [np.arange(N)]
    idx = np.moveaxis(np.arange(N).reshape(S), ca, -1)
    return [r for r in idx.reshape(-1, S[ca])] if S[ca] else []


# ------------------------------------------------------------------------------ evaluate
def evaluate(case, point=None) -> Result:
    """Value and gradients (w.r.t. the inputs as sent, in their encodings) of ``point``."""
    with np.errstate(all="ignore"):        # IEEE specials are the point, not accidents
        return _evaluate(case, point)


def _evaluate(case, point) -> Result:
    from klconform.reference.family import Point
    point = point or Point(reduction=case.reduction)
    red = point.reduction
    target = np.asarray(case.target, dtype=np.float64)
    pred = np.asarray(case.pred, dtype=np.float64)
    S = tuple(np.broadcast_shapes(target.shape, pred.shape))
    nd = len(S)
    N = int(np.prod(S, dtype=np.int64))
    tk = point.target_as or case.target_kind
    pk = point.pred_as or case.pred_kind

    # ---- what SPEC leaves undefined
    if nd == 0 and red in ("distribution", "distribution_mean", "sample_sum", "sample_mean"):
        raise Undefined("KL-RED-0D", f"{red} on a 0-D case")
    if point.weight_divisor == "weight_sum" and red not in ("mean", "distribution_mean"):
        raise Undefined("KL-WEIGHT-SUMDIV", f"weight_sum divisor with {red}")
    if point.normalise and nd == 0:
        raise Undefined("KL-NORM-1", "normalise on a 0-D case")
    ca = _axis(case.class_axis, nd) if nd else None
    ba = _axis(case.batch_axis, nd) if nd else None
    if pk == "logits" and (nd == 0 or ca < nd - pred.ndim):
        raise Undefined("KL-INPUT-LOGITS", "the prediction has no class axis")

    # ---- weights (§5): W on S; distribution-level weights must not vary along ca
    W = None
    if case.sample_weight is not None:
        W = np.broadcast_to(np.asarray(case.sample_weight, dtype=np.float64), S)
        if point.weight_level == "distribution" and nd and S[ca]:
            for row in np.moveaxis(W, ca, -1).reshape(-1, S[ca]):
                if not all(x == row[0] or (math.isnan(x) and math.isnan(row[0])) for x in row.tolist()):
                    raise Undefined("KL-WEIGHT-DIST", "a sample_weight varying along the class axis")
    w = L(case.weight) if case.weight is not None else ONE_L
    Wf = np.broadcast_to(np.asarray(W, dtype=L), S).ravel() if W is not None else np.ones(N, dtype=L)

    # ---- decode (§3); logits in the prediction's own shape, then broadcast (KL-SHAPE-1)
    t_flat = np.broadcast_to(target, S).ravel()
    tside = from_log(t_flat) if tk == "logprob" else from_prob(t_flat)
    lq = None
    if pk == "logits":
        lq = _log_softmax_rows(pred, ca - (nd - pred.ndim))
        pside = from_log(np.broadcast_to(lq, S).ravel())
    elif pk == "logprob":
        pside = from_log(np.broadcast_to(pred, S).ravel())
    else:
        pside = from_prob(np.broadcast_to(pred, S).ravel())

    # ---- normalisation (KL-NORM-1/2), on S, before misreading/swap/epsilon
    rows = _rows(S, ca) if point.normalise else []
    t_sums = p_sums = None
    if point.normalise:
        tside, t_sums = _normalise(tside, rows)
        if pk != "logits":              # logits are already normalised
            pside, p_sums = _normalise(pside, rows)

    # ---- the first and second sides; swap exchanges them (KL-ARG-ORDER)
    a_side, b_side = (pside, tside) if point.swap else (tside, pside)
    a_cls = a_side.cls.copy()
    a_v, a_lv = a_side.v.copy(), a_side.lv.copy()
    if point.swap and a_side.log_encoded:
        # KL-ARG-ORDER: the swapped first side is exp(log q) rounded to float64: a zero where
        # it rounds to 0, +∞ (log +∞) beyond the largest finite value; else its log is log q
        as64 = a_v.astype(np.float64)
        a_v = np.where(a_cls == POS, as64.astype(L), a_v)
        flushed = (a_cls == POS) & (as64 == 0)
        over = (a_cls == POS) & np.isinf(as64)
        a_cls[flushed] = ZERO
        a_v[flushed] = ZERO_L
        a_cls[over] = INF
        a_v[over] = INF_L
        a_lv[over] = INF_L
    eps = L(point.eps)
    log_eps = np.log(eps) if point.eps > 0 else NAN_L
    a_lve = np.log(a_v + eps) if point.epsilon == "target_log_eps" else a_lv

    # ---- the terms, one entry at a time (§2, §6, §11; partials §8)
    alog = a_side.log_encoded
    out = [term(ac, av, alv, alve, alog, bc, bv, blv, point, eps, log_eps)
           for ac, av, alv, alve, bc, bv, blv in zip(a_cls.tolist(), list(a_v), list(a_lv), list(a_lve),
                                                     b_side.cls.tolist(), list(b_side.v), list(b_side.lv))]
    T, dA, dB, dLA, dLB = (np.array(col, dtype=L).reshape(N) for col in (zip(*out) if out else [()] * 5))

    # ---- reduction (§4) with weights (§5); D the divisor
    X = w * Wf * T
    flat_idx = np.arange(N)
    multi = np.unravel_index(flat_idx, S) if nd else ()
    if red == "none":
        out_shape, key, D = S, flat_idx, ONE_L
    elif red == "distribution":
        out_shape = tuple(S[k] for k in range(nd) if k != ca)
        key, D = _project(multi, S, [k for k in range(nd) if k != ca], N), ONE_L
    elif red in ("sum", "mean", "batchmean", "distribution_mean"):
        out_shape, key = (), np.zeros(N, dtype=np.intp)
        if red == "sum":
            D = ONE_L
        elif red == "mean":
            D = L(N) if point.weight_divisor == "count" else _weight_sum(W, S, None, N)
        elif red == "batchmean":
            D = L(S[ba]) if nd else ONE_L
        else:
            n_dist = int(np.prod([S[k] for k in range(nd) if k != ca], dtype=np.int64))
            D = L(n_dist) if point.weight_divisor == "count" else \
                _weight_sum(W, S, ca if point.weight_level == "distribution" else None, n_dist)
    else:   # sample_sum, sample_mean
        out_shape = (S[ba],)
        key = np.asarray(multi[ba], dtype=np.intp)
        D = ONE_L if red == "sample_sum" else L(int(np.prod([S[k] for k in range(nd) if k != ba], dtype=np.int64)))
    acc = np.zeros(int(np.prod(out_shape, dtype=np.int64)), dtype=L)
    np.add.at(acc, key, X)                 # KL-SPECIAL-SUM-1: IEEE sums; KL-EMPTY-1: 0
    value = (acc / D).reshape(out_shape)   # KL-EMPTY-2: 0/0 is NaN

    grads: dict[str, np.ndarray] = {}
    if getattr(case, "grad", True):
        c = w * Wf / D                     # KL-GRAD-RED
        # the target gets the first side's partials, the prediction the second's; under
        # swap the other way round (KL-GRAD-EPS); log encodings take the log partials
        (t_lin, t_log), (p_lin, p_log) = ((dB, dLB), (dA, dLA)) if point.swap else ((dA, dLA), (dB, dLB))
        gt = c * (t_log if tside.log_encoded else t_lin)
        gp = c * (p_log if pside.log_encoded else p_lin)
        if point.normalise:
            gt = _normalise_backward(gt, rows, tside, t_sums)
            if pk != "logits":
                gp = _normalise_backward(gp, rows, pside, p_sums)
        g_target = _sum_to(gt, S, target.shape)
        g_pred = _sum_to(gp, S, pred.shape)
        if pk == "logits":
            g_pred = _log_softmax_backward(g_pred, lq, ca - (nd - pred.ndim))
        # KL-SHAPE-3: a target sent in another shape gets its gradient entry for entry, held
        # here (as the adapters return it) in the shape of the target as held
        grads = {"target": g_target, "pred": g_pred}
    return Result(value, grads)


def _project(multi, S, keep, N) -> np.ndarray:
    if not keep:
        return np.zeros(N, dtype=np.intp)
    return np.ravel_multi_index(tuple(multi[k] for k in keep), tuple(S[k] for k in keep))


def _weight_sum(W, S, ca, count):
    """KL-WEIGHT-SUMDIV: Σ W over S (element level) or S without ca (distribution level)."""
    if W is None:
        return L(count)
    if ca is not None:
        W = np.take(W, 0, axis=ca) if S[ca] else np.zeros(tuple(n for k, n in enumerate(S) if k != ca))
    s = ZERO_L
    for x in W.ravel().tolist():
        s += L(x)
    return s


def _normalise(side: Side, rows) -> tuple[Side, dict]:
    """KL-NORM-1/2 on S: p / Σ p (IEEE), or log p − log Σ exp(log p) (the log_softmax and its
    specials).  Returns the normalised side and, per row, the sum (for the backward)."""
    if side.log_encoded:
        lv = side.lv.copy()
        for row in rows:
            lv[row] = _log_softmax_rows(side.lv[row], 0)
        return from_log(lv), {}
    v = side.v.copy()
    sums = {}
    for r, row in enumerate(rows):
        s = ZERO_L
        for x in side.v[row]:
            s += x
        sums[r] = s
        v[row] = side.v[row] / s
    return from_prob(v), sums


def _normalise_backward(g: np.ndarray, rows, hat: Side, sums) -> np.ndarray:
    """KL-GRAD-NORM: (g_j − Σ_i g_i·p̂_i) / Σ_c p_c (p̂_i = 0 contributes 0), or, w.r.t. logs,
    h_j − p̂_j·Σ_i h_i."""
    out = g.copy()
    for r, row in enumerate(rows):
        s = ZERO_L
        if hat.log_encoded:
            for x in g[row]:
                s += x
            out[row] = g[row] - hat.v[row] * s
        else:
            for x, c, v in zip(g[row], hat.cls[row], hat.v[row]):
                if c != ZERO:
                    s += x * v
            out[row] = (g[row] - s) / sums[r]
    return out


def _log_softmax_backward(g: np.ndarray, lq: np.ndarray, axis: int) -> np.ndarray:
    """KL-GRAD-PRED-LOGITS: ∂/∂z_j = g_j − q_j·Σ_k g_k along the class axis."""
    gm = np.moveaxis(g, axis, -1)
    qm = np.exp(np.moveaxis(lq, axis, -1))
    out = np.empty(gm.shape, dtype=L)
    for idx in np.ndindex(gm.shape[:-1]):
        s = ZERO_L
        for x in gm[idx]:
            s += x
        out[idx] = gm[idx] - qm[idx] * s
    return np.moveaxis(out, -1, axis)


# ------------------------------------------------------------------------------ dtypes
#: (significand bits, exponent of the smallest normal, largest finite) per dtype
_FORMATS = {
    "float16": (11, -14, 65504.0),
    "bfloat16": (8, -126, float.fromhex("0x1.fep127")),
    "float32": (24, -126, float.fromhex("0x1.fffffep127")),
    "float64": (53, -1022, float.fromhex("0x1.fffffffffffffp1023")),
}


def in_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` (longdouble) rounded once to nearest-even in ``dtype``, as float64; a magnitude
    that rounds beyond the largest finite value (at least max + ½ ulp) is ±∞ (KL-DTYPE-3)."""
    bits, emin, big = _FORMATS[dtype]
    x = np.asarray(x, dtype=L)
    with np.errstate(all="ignore"):
        finite = np.isfinite(x) & (x != 0)
        _, e = np.frexp(np.where(finite, x, ONE_L))          # x = m·2^e, 0.5 ≤ |m| < 1
        q = np.maximum(e.astype(np.int64) - 1, emin) - (bits - 1)   # exponent of one ulp
        r = np.ldexp(np.rint(np.ldexp(np.where(finite, x, ONE_L), -q)), q)   # rint: nearest-even
        r = np.where(np.abs(r) > L(big), np.copysign(INF_L, x), r)
        out = np.where(finite, r, x)
    return out.astype(np.float64)

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
NAN, NEG, ZERO, POS, INF = "nan", "neg", "zero", "pos", "inf"


class Undefined(ValueError):
    """SPEC defines no value here; ``clause`` says which clause."""

    def __init__(self, clause: str, why: str):
        super().__init__(f"{clause}: {why}")
        self.clause = clause


@dataclasses.dataclass
class Result:
    value: np.ndarray                    # longdouble, shape per KL-SHAPE-2
    grads: dict[str, np.ndarray]         # "target"/"pred": longdouble, the inputs' held shapes


# ------------------------------------------------------------------------------ entries
@dataclasses.dataclass
class Entry:
    """One decoded probability: its class, value ``v``, log ``lv`` and whether the input
    held it as a log (KL-ZERO-3 and KL-ARG-ORDER look at the encoding)."""

    cls: str
    v: object
    lv: object
    log_encoded: bool


def from_prob(x) -> Entry:
    """KL-TARGET-PROB / KL-INPUT-PROB; KL-INVALID-1 (−0.0 is zero, −∞ is negative)."""
    x = L(x)
    if np.isnan(x):
        return Entry(NAN, NAN_L, NAN_L, False)
    if x == 0:
        return Entry(ZERO, ZERO_L, -INF_L, False)
    if x < 0:
        return Entry(NEG, x, NAN_L, False)
    if np.isinf(x):
        return Entry(INF, INF_L, INF_L, False)
    return Entry(POS, x, np.log(x), False)


def from_log(lx) -> Entry:
    """KL-TARGET-LOGPROB / KL-INPUT-LOGPROB: p = exp(log p); never negative (KL-INVALID-1)."""
    lx = L(lx)
    if np.isnan(lx):
        return Entry(NAN, NAN_L, NAN_L, True)
    if lx == -INF_L:
        return Entry(ZERO, ZERO_L, -INF_L, True)
    if lx == INF_L:
        return Entry(INF, INF_L, INF_L, True)
    return Entry(POS, np.exp(lx), lx, True)


# ------------------------------------------------------------------------------ the term
@dataclasses.dataclass
class Term:
    """T(a, b) with a the first side (P; Q under swap) and its partials: ``da`` = ∂T/∂a,
    ``db`` = ∂T/∂b, ``dla`` = ∂T/∂(log a), ``dlb`` = ∂T/∂(log b)."""

    t: object
    da: object
    db: object
    dla: object
    dlb: object


def _nan_term(t=NAN_L) -> Term:
    return Term(t, NAN_L, NAN_L, NAN_L, NAN_L)


def _clipped(e: Entry, eps):
    """KL-EPS-CLIP: (a', log a', 1[eps ≤ a ≤ 1])."""
    if e.cls == NAN:
        return NAN_L, NAN_L, False
    if e.cls in (NEG, ZERO) or (e.cls == POS and e.v < eps):
        return eps, np.log(eps), False
    if e.cls == INF or e.v > 1:
        return ONE_L, ZERO_L, False
    return e.v, e.lv, True


def term(a: Entry, b: Entry, point) -> Term:
    """The elementwise term of SPEC §2 / §6 / §11 and its partials (§8, KL-GRAD-EPS/GEN)."""
    gen = point.generalised
    if point.epsilon == "clip_both":
        # KL-EPS-CLIP: clipping comes before every convention; negatives become eps, NaN stays
        eps = L(point.eps)
        a1, la1, ia = _clipped(a, eps)
        b1, lb1, ib = _clipped(b, eps)
        if np.isnan(a1) or np.isnan(b1):
            return _nan_term()
        d = la1 - lb1
        t = a1 * d + ((b1 - a1) if gen else ZERO_L)
        da = (d if gen else d + 1) if ia else ZERO_L
        db = -((a1 / b1 - 1) if gen else a1 / b1) if ib else ZERO_L
        # log encodings: chain rule through p = exp(t) (KL-GRAD-EPS); outside [eps, 1] the
        # derivative of clip is 0, so the partial w.r.t. the log is 0 too (at +∞ as well)
        return Term(t, da, db, a.v * da if ia else ZERO_L, b.v * db if ib else ZERO_L)

    # KL-INVALID-1 / KL-NEG-INF / KL-NEG-ZERO
    if a.cls == NAN or b.cls == NAN:
        return _nan_term()
    if a.cls == NEG or b.cls == NEG:
        neg = point.negative
        if neg == "inf":
            return _nan_term(INF_L)
        if neg == "zero":
            return _negative_zero(a, b)
        return _nan_term()

    tleps = point.epsilon == "target_log_eps"
    eps = L(point.eps)
    # partials by the formula, in IEEE arithmetic (KL-GRAD-INF; KL-GRAD-EPS, KL-GRAD-GEN)
    la = a.lv
    lb = b.lv
    lae = np.log(a.v + eps) if tleps else la
    if a.cls == ZERO:
        # KL-GRAD-ZERO / KL-GRAD-GEN at p = 0 (valid q)
        if tleps:
            da = lae - lb + ZERO_L             # own formula: log(0 + eps) − log q + 0
            dla = ZERO_L if b.cls != ZERO else NAN_L   # KL-GRAD-ZERO: t = −∞, q > 0: 0
        else:
            da = -INF_L if b.cls != ZERO else NAN_L
            dla = ZERO_L if b.cls != ZERO else NAN_L
        db = ONE_L if gen else ZERO_L
        dlb = b.v if gen else ZERO_L
    else:
        d = lae - lb
        if tleps:
            da = d + a.v / (a.v + eps) - (1 if gen else 0)
        else:
            da = d if gen else d + 1
        db = (1 - a.v / b.v) if gen else -a.v / b.v
        dla = a.v * da
        dlb = (b.v - a.v) if gen else -a.v

    # value: the conventions of §2 in order (KL-GEN-2 for the generalised term)
    if a.cls == ZERO:
        if point.zero_inf == "nan" and (b.cls == ZERO or a.log_encoded):
            t = NAN_L                          # KL-ZERO-3 (gradients stay canonical)
        else:
            t = b.v if gen else ZERO_L         # KL-ZERO-1 / KL-GEN-2
    elif b.cls == ZERO:
        t = INF_L                              # KL-ZERO-2
    elif a.cls == INF and b.cls == INF:
        t = NAN_L                              # KL-INF-1 / KL-GEN-2; the partials are their
                                               # formulas on their own (KL-GRAD-INF)
    elif a.cls == INF:
        t = INF_L                              # KL-INF-1 / KL-GEN-2
    elif b.cls == INF:
        t = INF_L if gen else -INF_L           # KL-INF-1 / KL-GEN-2
    else:
        dd = lae - lb
        t = ZERO_L if dd == 0 else a.v * dd    # exactly 0 when P == Q (KL-DEF-2)
        if gen:
            t = t - a.v + b.v
    return Term(t, da, db, dla, dlb)


def _negative_zero(a: Entry, b: Entry) -> Term:
    """KL-NEG-ZERO: a negative first-side entry gives T = 0 and zero partials; a negative
    second side still follows KL-INVALID-1 (NaN term, NaN partials)."""
    if a.cls == NEG and b.cls != NEG:
        return Term(ZERO_L, ZERO_L, ZERO_L, ZERO_L, ZERO_L)
    return _nan_term()


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
        if any(np.isnan(x) or x == INF_L for x in row) or all(x == -INF_L for x in row):
            out[idx] = NAN_L
            continue
        m = max(x for x in row if x != -INF_L)
        s = ZERO_L
        for x in row:
            s += np.exp(x - m)
        ls = np.log(s)
        for j, x in enumerate(row):
            out[idx + (j,)] = (x - m) - ls
    return np.moveaxis(out, -1, axis)


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient on S back onto an input's own shape (KL-GRAD-1), in a loop."""
    out = np.zeros(shape, dtype=L)
    nd = len(g.shape)
    lead = nd - len(shape)
    for idx in np.ndindex(g.shape):
        tgt = tuple(0 if shape[k] == 1 else idx[lead + k] for k in range(len(shape)))
        out[tgt] += g[idx]
    return out


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
    if pk == "logits":
        if nd == 0 or ca < nd - pred.ndim:
            raise Undefined("KL-INPUT-LOGITS", "the prediction has no class axis")

    # ---- weights (§5): W on S
    W = None
    if case.sample_weight is not None:
        W = np.broadcast_to(np.asarray(case.sample_weight, dtype=np.float64), S)
        if point.weight_level == "distribution" and nd:
            rows = np.moveaxis(W, ca, -1).reshape(-1, S[ca]) if S[ca] else np.zeros((0, 0))
            for row in rows:
                first = row[0]
                for x in row:
                    if not (x == first or (math.isnan(x) and math.isnan(first))):
                        raise Undefined("KL-WEIGHT-DIST", "a sample_weight varying along the class axis")
    w = L(case.weight) if case.weight is not None else ONE_L

    # ---- decode (§3), logits in the prediction's own shape, then broadcast (KL-SHAPE-1)
    t_dec = [from_log(x) if tk == "logprob" else from_prob(x) for x in np.broadcast_to(target, S).ravel().tolist()]
    if pk == "logits":
        pred_ax = ca - (nd - pred.ndim)
        lq = _log_softmax_rows(pred, pred_ax)
        lq_S = np.broadcast_to(lq, S).ravel()
        p_dec = [from_log(x) for x in lq_S]
    elif pk == "logprob":
        p_dec = [from_log(x) for x in np.broadcast_to(pred, S).ravel().tolist()]
    else:
        p_dec = [from_prob(x) for x in np.broadcast_to(pred, S).ravel().tolist()]
    pred_log_encoded = pk in ("logprob", "logits")
    target_log_encoded = tk == "logprob"

    N = int(np.prod(S, dtype=np.int64))
    flat_idx = np.arange(N)
    multi = np.unravel_index(flat_idx, S) if nd else ()

    # rows along the class axis on S (flat indices), for normalisation and logits backward
    def rows_on_S():
        if nd == 0:
            return [[0]] if N else []
        others = [k for k in range(nd) if k != ca]
        key = np.ravel_multi_index(tuple(multi[k] for k in others), tuple(S[k] for k in others)) \
            if others else np.zeros(N, dtype=np.int64)
        groups: dict[int, list[int]] = {}
        for i in range(N):
            groups.setdefault(int(key[i]), []).append(i)
        return list(groups.values())

    # ---- normalisation (KL-NORM-1/2), on S, before misreading/swap/epsilon
    norm_t = norm_p = None
    if point.normalise:
        rows = rows_on_S()
        t_dec, norm_t = _normalise(t_dec, rows, target_log_encoded)
        if pk != "logits":              # logits are already normalised
            p_dec, norm_p = _normalise(p_dec, rows, pred_log_encoded)

    # ---- the terms (§2, §6, §11); swap exchanges the sides (KL-ARG-ORDER)
    terms = []
    for i in range(N):
        if point.swap:
            a, b = p_dec[i], t_dec[i]
            if a.log_encoded and a.cls == POS:
                # KL-ARG-ORDER: the swapped first side is exp(log q) as a float64 value: 0
                # below the smallest subnormal, +∞ beyond the largest finite value
                a64 = float(a.v)
                if a64 == 0.0:
                    a = Entry(ZERO, ZERO_L, a.lv, True)
                elif a64 == math.inf:
                    a = Entry(INF, INF_L, INF_L, True)
        else:
            a, b = t_dec[i], p_dec[i]
        terms.append(term(a, b, point))

    # ---- reduction (§4) with weights; D the divisor
    Wf = [L(x) for x in W.ravel().tolist()] if W is not None else [ONE_L] * N
    X = [w * Wf[i] * terms[i].t for i in range(N)]
    if red == "none":
        out_shape, key, D = S, flat_idx, ONE_L
    elif red == "distribution":
        out_shape = tuple(S[k] for k in range(nd) if k != ca)
        key = _project(multi, S, [k for k in range(nd) if k != ca])
        D = ONE_L
    elif red in ("sum", "mean", "batchmean", "distribution_mean"):
        out_shape, key = (), np.zeros(N, dtype=np.int64)
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
        key = np.asarray(multi[ba], dtype=np.int64)
        D = ONE_L if red == "sample_sum" else L(int(np.prod([S[k] for k in range(nd) if k != ba], dtype=np.int64)))
    n_out = int(np.prod(out_shape, dtype=np.int64))
    acc = [ZERO_L] * n_out
    for i in range(N):
        acc[int(key[i])] += X[i]            # KL-SPECIAL-SUM-1: IEEE sums; KL-EMPTY-1: 0
    value = np.array([s / D for s in acc], dtype=L).reshape(out_shape)   # KL-EMPTY-2: 0/0

    grads: dict[str, np.ndarray] = {}
    if getattr(case, "grad", True):
        c = [w * Wf[i] / D for i in range(N)]       # KL-GRAD-RED
        # target (P): the first side's partials, or the second's under swap (KL-GRAD-EPS)
        if point.swap:
            gt_lin = [c[i] * terms[i].db for i in range(N)]
            gt_log = [c[i] * terms[i].dlb for i in range(N)]
            gp_lin = [c[i] * terms[i].da for i in range(N)]
            gp_log = [c[i] * terms[i].dla for i in range(N)]
        else:
            gt_lin = [c[i] * terms[i].da for i in range(N)]
            gt_log = [c[i] * terms[i].dla for i in range(N)]
            gp_lin = [c[i] * terms[i].db for i in range(N)]
            gp_log = [c[i] * terms[i].dlb for i in range(N)]
        gt = gt_log if target_log_encoded else gt_lin
        gp = gp_log if pred_log_encoded else gp_lin
        if point.normalise:
            rows = rows_on_S()
            gt = _normalise_backward(gt, rows, t_dec, norm_t, target_log_encoded)
            if pk != "logits":
                gp = _normalise_backward(gp, rows, p_dec, norm_p, pred_log_encoded)
        g_target = _sum_to(np.array(gt, dtype=L).reshape(S), target.shape)
        g_pred = _sum_to(np.array(gp, dtype=L).reshape(S), pred.shape)
        if pk == "logits":
            g_pred = _log_softmax_backward(g_pred, lq, ca - (nd - pred.ndim))
        # KL-SHAPE-3: a target sent in another shape gets its gradient entry for entry, held
        # here (as the adapters return it) in the shape of the target as held
        grads = {"target": g_target, "pred": g_pred}
    return Result(value, grads)


def _project(multi, S, keep) -> np.ndarray:
    if not keep:
        return np.zeros(len(multi[0]) if multi else 1, dtype=np.int64)
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


def _normalise(dec: list[Entry], rows, log_encoded: bool):
    """KL-NORM-1/2 on S: p / Σ p (IEEE), or log p − log Σ exp(log p) (log_softmax specials).
    Returns the normalised entries and, per row, the sum (probabilities) for the backward."""
    out = list(dec)
    sums = {}
    for r, row in enumerate(rows):
        if log_encoded:
            vals = np.array([dec[i].lv for i in row], dtype=L)
            ls = _log_softmax_rows(vals, 0)
            for i, x in zip(row, ls):
                out[i] = from_log(x)
        else:
            s = ZERO_L
            for i in row:
                s += dec[i].v
            sums[r] = s
            for i in row:
                out[i] = from_prob(dec[i].v / s)
    return out, sums


def _normalise_backward(g, rows, dec_hat: list[Entry], sums, log_encoded: bool):
    """KL-GRAD-NORM: (g_j − Σ_i g_i·p̂_i) / Σ_c p_c (p̂_i = 0 contributes 0), or, w.r.t. logs,
    h_j − p̂_j·Σ_i h_i."""
    out = list(g)
    for r, row in enumerate(rows):
        if log_encoded:
            s = ZERO_L
            for i in row:
                s += g[i]
            for i in row:
                out[i] = g[i] - dec_hat[i].v * s
        else:
            s = ZERO_L
            for i in row:
                if dec_hat[i].cls != ZERO:
                    s += g[i] * dec_hat[i].v
            for i in row:
                out[i] = (g[i] - s) / sums[r]
    return out


def _log_softmax_backward(g: np.ndarray, lq: np.ndarray, axis: int) -> np.ndarray:
    """KL-GRAD-PRED-LOGITS: ∂/∂z_j = g_j − q_j·Σ_k g_k along the class axis."""
    gm = np.moveaxis(g, axis, -1)
    qm = np.moveaxis(lq, axis, -1)
    out = np.empty(gm.shape, dtype=L)
    for idx in np.ndindex(gm.shape[:-1]):
        s = ZERO_L
        for x in gm[idx]:
            s += x
        for j in range(gm.shape[-1]):
            out[idx + (j,)] = gm[idx + (j,)] - np.exp(qm[idx + (j,)]) * s
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
    beyond the largest finite value is ±∞ (KL-DTYPE-3)."""
    bits, emin, big = _FORMATS[dtype]
    x = np.asarray(x, dtype=L)
    out = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        v = x[idx]
        if not np.isfinite(v) or v == 0:
            out[idx] = float(v)
            continue
        if abs(v) > L(big):
            out[idx] = math.copysign(math.inf, float(v))
            continue
        _, e = np.frexp(v)                   # v = m·2^e, 0.5 ≤ |m| < 1
        q = max(int(e) - 1, emin) - (bits - 1)   # exponent of one unit in the last place
        out[idx] = float(np.ldexp(np.rint(np.ldexp(v, -q)), q))
    return out

"""The family's semantics, elementwise: decoding encodings, the term formulas of every
epsilon policy, their partial derivatives, and the preparation of a (case, point) pair.

Everything here works in the case's working precision (:func:`working_dtype`): numpy
``longdouble`` (80-bit extended on x86-64: 2**-63 relative per operation), which keeps the
reference's error far below any dtype's bound (SPEC.md KL-BOUND-5), or float64 for large
cases of lower-precision dtypes (KL-BOUND-8).  Arrays carry it as their dtype and scalar
constants are made in it, so no operation silently widens or narrows.  Where longdouble is
only float64, :func:`extended_precision` is False and float64 cases that need this module
are refused (``reference.evaluate``).  Probability/probability canonical values do not come
from here but from the accurate core (``reference._accurate``), except in float64 working
precision; see :mod:`reference.evaluate`.

Sides: ``a`` is the first argument of T(a, b) = a log(a/b) and ``b`` the second; normally
a = P (target) and b = Q (prediction), exchanged under ``Point.swap`` (KL-ARG-ORDER).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._quiet import quiet
from .family import Point
from .summation import accumulation_units

LD = np.longdouble
# KL-BOUND-5 assumes at least the 64-bit significand of x87 extended precision (63 stored
# fraction bits); IEEE quad and double-double longdoubles have more.
EXTENDED_FRACTION_BITS = 63


def extended_precision() -> bool:
    """Whether numpy's longdouble is wide enough for KL-BOUND-5.  It is not where longdouble
    is plain float64 (Windows, macOS on Apple silicon)."""
    return np.finfo(LD).nmant >= EXTENDED_FRACTION_BITS


#: Broadcast element count above which a case is "large" (KL-BOUND-8; value bounds of
#: large float64 cases are summed in float64, ``reference.bounds.value_bound``).
BIG = 2**16
#: KL-BOUND-8's ranges: finite log-encoded entries within ±LOG_RANGE, finite probabilities
#: and weights within ±SCALE_RANGE (nonzero ones at least TINY when normalised) keep every
#: exp, product, sum and quotient of an evaluation of up to 2**40 elements inside float64's
#: normal range, so float64 neither overflows nor underflows to zero where longdouble would
#: not.  Every float16/bfloat16/float32 probability and weight is inside.
LOG_RANGE = 256.0
SCALE_RANGE = 2.0**128
TINY = 2.0**-256


def working_dtype(case, point: Point) -> type:
    """The precision ``case`` is computed in under ``point`` (KL-BOUND-8): float64 for a
    large case of a lower-precision dtype whose entries are within the ranges above, else
    longdouble.

    float64 errs by a few units of 2**-53 relative per operation (numpy's pairwise sums by
    about log2(n) units), while a float32/float16/bfloat16 bound allows at least 2**-24
    relative per operation: the reference's own error stays below 2**-26 of the bound, and
    x87 longdouble (no SIMD) costs 5-10 times as much on 10**6..10**7 elements.  Small cases
    keep longdouble, so no verdict of the frozen corpus can move."""
    shape = np.broadcast_shapes(np.shape(case.target), np.shape(case.pred))
    # an input sent in float64 (a "cast" case, KL-DTYPE-4) can hold float64 subnormals,
    # whose ratios overflow float64 where longdouble stays finite
    dtypes = (case.dtype, getattr(case, "target_dtype", None), getattr(case, "pred_dtype", None))
    if "float64" in dtypes or int(np.prod(shape, dtype=np.int64)) <= BIG:
        return LD
    weight = 0.0 if case.weight is None else float(case.weight)
    if not abs(weight) <= SCALE_RANGE:           # also NaN
        return LD
    if case.sample_weight is not None and not _within(case.sample_weight, SCALE_RANGE, finite=True):
        return LD
    for raw, kind in ((case.target, point.target_as or case.target_kind),
                      (case.pred, point.pred_as or case.pred_kind)):
        if kind != "prob":
            ok = _within(raw, LOG_RANGE)
        else:
            ok = _within(raw, SCALE_RANGE) and (not point.normalise or _above(raw, TINY))
        if not ok:
            return LD
    return np.float64


def _within(x, top: float, finite: bool = False) -> bool:
    """Every finite entry of ``x`` has |x| <= ``top`` (and, with ``finite``, every entry is
    finite).  NaN and ±inf are the same in every precision."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or -top <= np.min(x) and np.max(x) <= top:    # NaN fails both
        return True
    fin = np.isfinite(x)
    if finite and not fin.all():
        return False
    return bool(np.max(np.abs(x), where=fin, initial=0.0) <= top)


def _above(x, tiny: float) -> bool:
    """Every finite nonzero entry of ``x`` has |x| >= ``tiny``."""
    x = np.asarray(x, dtype=np.float64)
    return bool(np.min(np.abs(x), where=np.isfinite(x) & (x != 0), initial=np.inf) >= tiny)


class UndefinedCase(ValueError):
    """The spec defines no value for this (case, point); ``clause`` says which clause."""

    def __init__(self, message: str, clause: str):
        super().__init__(f"{message} ({clause})")
        self.clause = clause


class ExtendedPrecisionUnavailable(UndefinedCase):
    """This platform cannot compute the case within KL-BOUND-5: a float64 case needs
    extended precision and numpy's longdouble is float64 here."""

    def __init__(self, what: str):
        super().__init__(f"{what} of a float64 case needs a longdouble with at least "
                         f"{EXTENDED_FRACTION_BITS + 1} significant bits; numpy's longdouble "
                         f"has {np.finfo(LD).nmant + 1} on this platform", "KL-BOUND-5")


# ---------------------------------------------------------------------------- decoding
@dataclasses.dataclass
class Decoded:
    """One input decoded to probabilities ``v`` and logs ``lv`` (working precision, own shape)."""

    kind: str                 # the encoding it was read as
    raw: np.ndarray           # the array as passed (float64)
    v: np.ndarray             # probabilities
    lv: np.ndarray            # natural logs of v (exact copy of raw for logprob)
    axis: int | None = None   # softmax axis in raw's own shape (logits only)


def log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    """Accurate log_softmax along ``axis`` in ``z``'s (working) precision, with
    KL-INPUT-LOGITS specials: rows holding NaN or +inf, or only -inf, are NaN throughout."""
    f = z.dtype.type
    if z.shape[axis] == 0:
        return z.copy()
    with quiet:
        bad = (np.any(np.isnan(z) | (z == np.inf), axis=axis, keepdims=True)
               | np.all(z == -np.inf, axis=axis, keepdims=True))
        zz = np.where(bad, f(0), z)
        m = np.max(zz, axis=axis, keepdims=True)
        shifted = zz - m
        lse = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        out = shifted - lse
    return np.where(bad, f(np.nan), out)


def decode(raw: np.ndarray, kind: str, axis: int | None, work: type) -> Decoded:
    """Decode ``raw`` read as ``kind`` (KL-TARGET-*, KL-INPUT-*) in precision ``work``;
    ``axis`` for logits."""
    x = np.asarray(raw, dtype=work)
    with quiet:
        if kind == "prob":
            return Decoded(kind, raw, x, np.log(x))
        if kind == "logprob":
            return Decoded(kind, raw, np.exp(x), x)
        if kind == "logits":
            if axis is None:
                raise UndefinedCase("logits need a class axis, but the prediction is 0-D",
                                    "KL-INPUT-LOGITS")
            lv = log_softmax(x, axis)
            return Decoded(kind, raw, np.exp(lv), lv, axis)
    raise ValueError(f"unknown encoding {kind!r}")


# ---------------------------------------------------------------------------- terms
def invalid_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KL-INVALID-1: NaN or negative entries on either side (both fail ``>= 0``)."""
    return ~((a >= 0) & (b >= 0))


def clipped(v: np.ndarray, lv: np.ndarray, eps: float):
    """clip(v, eps, 1) and its log, reusing the exact log where nothing was clipped."""
    f = v.dtype.type
    c = np.clip(v, f(eps), f(1))  # NaN stays NaN
    with quiet:
        lc = np.where(c == v, lv, np.log(c))
    return c, lc


def effective_logs(point: Point, a: np.ndarray, la: np.ndarray, b: np.ndarray, lb: np.ndarray):
    """The (a, log a, b, log b) that the point's formula actually uses (after eps/clip)."""
    if point.epsilon == "clip_both":
        a2, la2 = clipped(a, la, point.eps)
        b2, lb2 = clipped(b, lb, point.eps)
        return a2, la2, b2, lb2
    if point.epsilon == "target_log_eps":
        with quiet:
            return a, np.log(a + a.dtype.type(point.eps)), b, lb
    return a, la, b, lb


def log_ratio(a, la, b, lb, from_values: bool) -> np.ndarray:
    """log a − log b.  Where both logs were taken of the values (``from_values``: neither
    side was given in a log encoding) and a/b lies in [1/2, 2], the two logarithms cancel
    (each carries a relative error of the working precision times |log|, far beyond the
    tiny difference): there ``log1p((a − b)/b)``, whose ``a − b`` is exact (Sterbenz), keeps
    full relative accuracy (scipy's gh-20710 near-equal inputs).  Given logs subtract
    exactly as they are."""
    with quiet:
        d = la - lb
        if not from_values:
            return d
        near = (a <= 2 * b) & (b <= 2 * a) & (b > 0) & np.isfinite(a) & np.isfinite(b)
        if not near.any():
            return d
        return np.where(near, np.log1p((a - b) / np.where(near, b, 1)), d)


def terms(point: Point, a, la, b, lb, a_is_log: bool, b_is_log: bool = True) -> np.ndarray:
    """Elementwise T of ``point`` (in ``a``'s working precision) with the §2 conventions
    (§11 for the generalised term and the negative=inf convention); ``b_is_log``: the
    second side was passed in a log encoding (False: both logs come from values,
    :func:`log_ratio`)."""
    f = a.dtype.type
    a2, la2, b2, lb2 = effective_logs(point, a, la, b, lb)
    from_values = not a_is_log and not b_is_log and point.epsilon != "target_log_eps"
    with quiet:
        t = a2 * log_ratio(a2, la2, b2, lb2, from_values)
        if point.generalised:                                      # KL-GEN-1
            t = t - a2 + b2
            # KL-GEN-2: one infinite side (the other finite, >= 0) is +inf (the limit)
            inf_a, inf_b = a2 == np.inf, b2 == np.inf
            t = np.where((inf_a & (b2 >= 0) & ~inf_b) | (inf_b & (a2 >= 0) & ~inf_a), f(np.inf), t)
    if point.epsilon == "clip_both":
        return t  # no zeros, no negatives remain; NaN propagates (KL-EPS-CLIP)
    zero = a == 0
    if zero.any():      # no pass over S where no a is 0
        t = np.where(zero, b if point.generalised else f(0), t)   # KL-ZERO-1, KL-GEN-2
    if point.zero_inf == "nan":                                    # KL-ZERO-3
        lit = zero & (b == 0)
        if point.epsilon == "none" and a_is_log:
            lit = lit | zero
        t = np.where(lit, f(np.nan), t)
    return apply_invalid(point, a, b, t)


def apply_invalid(point: Point, a, b, t) -> np.ndarray:
    """KL-INVALID-1 (NaN or negative -> NaN), KL-NEG-INF (NaN -> NaN, negative -> +inf), or
    KL-NEG-ZERO (a negative first side -> 0, then KL-INVALID-1)."""
    f = t.dtype.type
    if point.negative == "inf":
        with quiet:
            t = np.where((a < 0) | (b < 0), f(np.inf), t)
        return np.where(np.isnan(a) | np.isnan(b), f(np.nan), t)
    if point.negative == "zero":
        bad = np.isnan(a) | ~(b >= 0)
        with quiet:
            return np.where(bad, f(np.nan), np.where(a < 0, f(0), t))
    bad = invalid_mask(a, b)
    return np.where(bad, f(np.nan), t) if bad.any() else t


def partials(point: Point, a, la, b, lb) -> dict[str, np.ndarray]:
    """∂T/∂a, ∂T/∂(log a), ∂T/∂b, ∂T/∂(log b) (SPEC.md §8, KL-GRAD-GEN), in ``a``'s
    working precision, IEEE elsewhere."""
    f = a.dtype.type
    nan = f(np.nan)
    zero = a == 0
    gen = f(1) if point.generalised else f(0)    # the generalised term's -a + b
    with quiet:
        if point.epsilon == "clip_both":
            eps = f(point.eps)
            a2, la2 = clipped(a, la, point.eps)
            b2, lb2 = clipped(b, lb, point.eps)
            ina = (a >= eps) & (a <= 1)
            inb = (b >= eps) & (b <= 1)
            # KL-GRAD-EPS: clip's derivative selects (1 on [eps, 1], else 0): an entry outside,
            # ±inf and NaN included (NaN fails both comparisons), has partial 0 whatever the
            # clipped partial is; one inside keeps it, NaN where the other side is NaN
            a_val = np.where(ina, la2 - lb2 + 1 - gen, f(0))
            b_val = np.where(inb, gen - a2 / b2, f(0))
            a_log = np.where(ina, a * a_val, f(0))
            b_log = np.where(inb, b * b_val, f(0))
            return {"a_val": a_val, "a_log": a_log, "b_val": b_val, "b_log": b_log}
        if point.epsilon == "target_log_eps":
            a_val = np.log(a + f(point.eps)) - lb + a / (a + f(point.eps)) - gen
        else:
            a_val = la - lb + 1 - gen    # at a = 0: -inf for b > 0, NaN for b = 0 (KL-GRAD-ZERO)
        a_log = np.where(zero, np.where(b == 0, nan, f(0)), a * a_val)
        b_val = np.where(zero, gen, gen - a / b)
        # ∂T/∂(log b) = −a, or b − a for the generalised term: never 0·b (NaN at b = +∞,
        # where KL-GRAD-INF evaluates −p, finite)
        b_log = (np.where(zero, b, b - a) if point.generalised
                 else np.where(zero, f(0), -a))
    parts = {"a_val": a_val, "a_log": a_log, "b_val": b_val, "b_log": b_log}
    if point.negative == "zero":     # KL-NEG-ZERO: T ≡ 0 where a < 0, so are its partials
        with quiet:
            neg = a < 0
            parts = {k: np.where(neg, f(0), v) for k, v in parts.items()}
        bad = np.isnan(a) | ~(b >= 0)
    else:
        bad = invalid_mask(a, b)
    return {k: np.where(bad, nan, v) for k, v in parts.items()}


# ---------------------------------------------------------------------------- preparation
def normalize_axis(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise UndefinedCase(f"{what} {axis} is out of range for a {ndim}-D loss", "KL-RED-0D")
    return axis % ndim


@dataclasses.dataclass
class Prepared:
    """Everything the value, gradient and bound computations share for one (case, point)."""

    case: object
    point: Point
    shape: tuple[int, ...]          # S
    ca: int | None                  # class axis on S (None for 0-D)
    ba: int | None                  # batch axis on S (None for 0-D)
    target: Decoded
    pred: Decoded
    a: np.ndarray                   # first side on S (P, or Q when swapped)
    la: np.ndarray
    b: np.ndarray
    lb: np.ndarray
    a_is_log: bool                  # first side was passed in a log encoding
    b_is_log: bool                  # second side was passed in a log encoding
    weight: float                   # scalar weight w (1 when absent)
    W: np.ndarray | None            # sample weights broadcast to S (None when absent)
    axes: tuple[int, ...] | None    # axes summed for each output (None: no sum)
    divisor: float                  # D
    terms_per_output: int           # k
    work: type                      # working precision, LD or float64 (working_dtype)
    # Point.normalise (KL-NORM-1): each side's class-axis sum on S (keepdims; None where the
    # side was normalised in log space or not at all) and its normalisation error factor ν
    # (relative error of the normalised value / absolute error of its log, in units of u).
    a_sum: np.ndarray | None = None
    b_sum: np.ndarray | None = None
    a_nu: np.ndarray | None = None
    b_nu: np.ndarray | None = None

    @property
    def coef(self) -> np.ndarray:
        """c'_i = w * W_i on S (working precision): the weight of each term before the divisor."""
        c = np.full(self.shape, self.work(self.weight))
        return c if self.W is None else c * self.W


def _pred_axis(case, ndim: int, ca: int | None) -> int | None:
    """The class axis in the prediction's own shape (logits are applied before broadcasting)."""
    if ca is None:
        return None
    pa = ca - (ndim - case.pred.ndim)
    if pa < 0:
        raise UndefinedCase("the prediction lacks the class axis that logits need",
                            "KL-INPUT-LOGITS")
    return pa


def _sample_weights(case, point: Point, shape, ca, work: type) -> np.ndarray | None:
    sw = case.sample_weight
    if sw is None:
        return None
    try:
        W = np.broadcast_to(np.asarray(sw, dtype=work), shape)
    except ValueError:
        raise UndefinedCase(f"sample_weight shape {np.shape(sw)} does not broadcast to the "
                            f"loss shape {shape}", "KL-WEIGHT-SHAPE") from None
    if point.weight_level == "distribution" and W.size and ca is not None:
        first = np.take(W, [0], axis=ca)
        same = (W == first) | (np.isnan(W) & np.isnan(first))
        if not np.all(same):
            raise UndefinedCase("sample_weight varies along the class axis; distribution-level "
                                "weighting cannot express it", "KL-WEIGHT-DIST")
    return W


def _reduction_layout(point: Point, shape, ca, ba, W):
    """(axes, divisor, terms per output) of the point's reduction on S (SPEC.md §4)."""
    red = point.reduction
    n = int(np.prod(shape, dtype=np.int64))
    ndim = len(shape)
    if ndim == 0 and red in ("distribution", "distribution_mean", "sample_sum", "sample_mean"):
        raise UndefinedCase(f"reduction {red!r} needs an axis, but the loss is 0-D", "KL-RED-0D")
    if point.weight_divisor == "weight_sum" and red not in ("mean", "distribution_mean"):
        raise UndefinedCase(f"weight_divisor 'weight_sum' is defined only for mean and "
                            f"distribution_mean, not {red!r}", "KL-WEIGHT-SUMDIV")
    if red == "none":
        return None, 1.0, 1
    if red == "distribution":
        return (ca,), 1.0, shape[ca]
    if red == "sum":
        return tuple(range(ndim)), 1.0, n
    if red == "mean":
        d = float(n)
        if point.weight_divisor == "weight_sum" and W is not None:
            d = float(np.sum(W))
        return tuple(range(ndim)), d, n
    if red == "batchmean":
        return tuple(range(ndim)), float(shape[ba]) if ndim else 1.0, n
    if red == "distribution_mean":
        d = float(n // shape[ca]) if shape[ca] else float(np.prod(
            [s for i, s in enumerate(shape) if i != ca]))
        if point.weight_divisor == "weight_sum" and W is not None:
            d = float(np.sum(np.take(W, 0, axis=ca))) if shape[ca] else 0.0
        return tuple(range(ndim)), d, n
    others = tuple(i for i in range(ndim) if i != ba)
    per = int(np.prod([shape[i] for i in others], dtype=np.int64))
    if red == "sample_sum":
        return others, 1.0, per
    if red == "sample_mean":
        return others, float(per), per
    raise ValueError(f"unknown reduction {red!r}")


def prepare(case, point: Point | None = None) -> Prepared:
    """Decode and lay out ``case`` under ``point`` (default: the canonical point)."""
    from .family import canonical
    point = point or canonical(case)
    shape = tuple(np.broadcast_shapes(case.target.shape, case.pred.shape))
    ndim = len(shape)
    ca = normalize_axis(case.class_axis, ndim, "class_axis") if ndim else None
    ba = normalize_axis(case.batch_axis, ndim, "batch_axis") if ndim else None
    work = working_dtype(case, point)
    tkind = point.target_as or case.target_kind
    ikind = point.pred_as or case.pred_kind
    target = decode(case.target, tkind, _pred_axis(case, ndim, ca) if tkind == "logits" else None, work)
    pred = decode(case.pred, ikind, _pred_axis(case, ndim, ca) if ikind == "logits" else None, work)
    p, lp = np.broadcast_to(target.v, shape), np.broadcast_to(target.lv, shape)
    q, lq = np.broadcast_to(pred.v, shape), np.broadcast_to(pred.lv, shape)
    p_sum = q_sum = p_nu = q_nu = None
    if point.normalise:
        if ca is None:
            raise UndefinedCase("normalising needs a class axis, but the loss is 0-D", "KL-NORM-1")
        from .dtypes import FINFO
        tiny = FINFO[case.dtype][1]
        p, lp, p_sum, p_nu = normalised(p, lp, tkind, ca, tiny, case.dtype)
        q, lq, q_sum, q_nu = normalised(q, lq, ikind, ca, tiny, case.dtype)
    if point.swap:
        a, la, b, lb, a_is_log, b_is_log = q, lq, p, lp, ikind != "prob", tkind != "prob"
        if a_is_log:
            # KL-ARG-ORDER: the swapped first side is exp(log q) rounded to a float64 value, as
            # every float computation of the call has it: exp(-1000) is 0 (its term 0 by
            # KL-ZERO-1), exp(800) is +inf with log +inf (KL-INF-1 and §8 see q = +inf)
            with quiet:
                a = np.asarray(a, dtype=np.float64).astype(work)
                over = (a == np.inf) & (la < np.inf)
                if over.any():
                    la = np.where(over, work(np.inf), la)
        sides = (q_sum, p_sum, q_nu, p_nu)
    else:
        a, la, b, lb, a_is_log, b_is_log = p, lp, q, lq, tkind != "prob", ikind != "prob"
        sides = (p_sum, q_sum, p_nu, q_nu)
    W = _sample_weights(case, point, shape, ca, work)
    axes, divisor, k = _reduction_layout(point, shape, ca, ba, W)
    weight = 1.0 if case.weight is None else float(case.weight)
    return Prepared(case, point, shape, ca, ba, target, pred, a, la, b, lb, a_is_log, b_is_log,
                    weight, W, axes, divisor, k, work, *sides)


def normalised(v: np.ndarray, lv: np.ndarray, kind: str, ca: int, tiny: float = 0.0, dtype: str = "float64"):
    """KL-NORM-1/2 on S: (v / Σ v, its log, Σ v keepdims, ν) for probabilities (IEEE
    division), (exp ls, ls, None, ν) with ls = log_softmax(log v) for log encodings.
    ν includes ``tiny / |v̂|`` (KL-BOUND-6): a normalised value that is subnormal in the
    case's dtype (smallest normal ``tiny``) carries an absolute error η = tiny·u.  The sum
    along the class axis errs per KL-BOUND-7 (``accumulation_units``)."""
    n_c = v.shape[ca]
    f = v.dtype.type
    n_acc = f(accumulation_units(n_c, dtype) + 1)
    with quiet:
        if kind == "prob":
            s = np.sum(v, axis=ca, keepdims=True)
            vh = v / s
            lvh = np.log(vh)
            nu = (n_acc + 1) * np.sum(np.abs(v), axis=ca, keepdims=True) / np.abs(s)
        else:
            lvh = log_softmax(lv, ca)
            vh = np.exp(lvh)
            s = None
            fin = np.where(np.isfinite(lv), lv, f(-np.inf))
            m = np.max(fin, axis=ca, keepdims=True) if n_c else np.zeros_like(lv)
            nu = np.abs(lv - m) + n_acc + np.log(f(max(n_c, 1))) + np.abs(lvh)
    with quiet:
        nu = nu + np.where((vh != 0) & (np.abs(vh) < f(tiny)), f(tiny) / np.abs(vh), f(0))
    nu = np.where(np.isfinite(nu), nu, f(0))
    return vh, lvh, s, np.broadcast_to(nu, v.shape)


def reduce_sum(x: np.ndarray, prep: Prepared) -> np.ndarray:
    """Σ of ``x`` (on S) over the reduction's axes (no division)."""
    if prep.axes is None:
        return x
    return np.sum(x, axis=prep.axes)


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient on the broadcast shape back to an input's own ``shape``."""
    lead = g.ndim - len(shape)
    if lead:
        g = np.sum(g, axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = np.sum(g, axis=axes, keepdims=True)
    return g.reshape(shape)

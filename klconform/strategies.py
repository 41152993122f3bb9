"""Hypothesis strategies for canonical KL cases, in the style of ``hypothesis.extra.numpy``.

Small strategies compose into :func:`cases` (any canonical case) and :func:`cases_for`
(only what one adapter's :class:`~adapters.base.Capabilities` can take).  Every value a
strategy returns is a float64 array whose entries are exactly representable in the
requested dtype (rounded with :func:`klconform.reference.dtypes.round_to`), so it can go straight
into a :class:`~klconform.case.Case`.

Value families (``FAMILIES``) name *what kind of question* a case asks; the family name is
the first component of the case's ``label`` (``"<family>/<detail>"``), which the known-
discrepancy matcher and the meta-tests read.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .case import PRED_KINDS, REDUCTIONS, TARGET_KINDS, Case
from .reference.dtypes import DTYPES, FINFO, UNIT_ROUNDOFF, round_to

# Families of (P, Q) value pairs. Each is a question frameworks are known to answer differently.
FAMILIES = (
    "plain",         # P, Q strictly positive, normalised along the class axis
    "zero_target",   # some p == 0 (KL-ZERO-*: 0*log(0/q) = 0)
    "zero_pred",     # some q == 0 where p > 0 (KL is +inf)
    "zero_both",     # zeros in both, at overlapping and disjoint positions
    "one_hot",       # P one-hot per distribution
    "tiny",          # near-zero entries: below the dtype's smallest normal, subnormals
    "near_equal",    # Q within a few ulp / 10**-k relative of P
    "equal",         # Q == P exactly (KL is exactly 0)
    "unnormalised",  # positive rows that do not sum to 1 (no implicit normalisation)
    "large_logits",  # Q given as logits of large magnitude (softmax overflow paths)
    "invalid",       # negative, NaN or +-inf entries (KL-SPECIAL-*)
)
MAX_SIDE = 4
MAX_SIZE = 96


# ----------------------------------------------------------------------------- scalars
def dtypes(allowed=DTYPES) -> st.SearchStrategy[str]:
    """One dtype name of ``allowed`` (subset of :data:`klconform.reference.dtypes.DTYPES`), float32 first
    so that it is what shrinking moves towards."""
    order = [d for d in ("float32", "float64", "float16", "bfloat16") if d in set(allowed)]
    if not order:
        raise ValueError(f"dtypes: no known dtype in {sorted(allowed)}")
    return st.sampled_from(order)


def tiny_values(dtype: str) -> st.SearchStrategy[float]:
    """Positive values of ``dtype`` at the bottom of its range: the smallest normal, a few
    subnormals (down to the smallest one) and, for float64, values near 1e-300.  Every
    value is exact in ``dtype`` and strictly positive."""
    tiny_normal = FINFO[dtype][1]
    p = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}[dtype]
    candidates = [tiny_normal, tiny_normal * 0.5, tiny_normal * 2.0 ** -(p - 1),  # smallest subnormal
                  tiny_normal * 3.0 * 2.0 ** -(p - 1), tiny_normal * 2.0 ** 4]
    if dtype == "float64":
        candidates += [1e-300, 1e-310]
    exact = sorted({float(round_to(c, dtype)) for c in candidates} - {0.0})
    return st.sampled_from(exact)


# ----------------------------------------------------------------------------- shapes
@st.composite
def shapes(draw, *, min_ndim: int = 0, max_ndim: int = 4, max_side: int = MAX_SIDE,
           allow_empty: bool = True, max_size: int = MAX_SIZE) -> tuple[int, ...]:
    """A shape with ``min_ndim..max_ndim`` dimensions of side ``1..max_side`` (and, when
    ``allow_empty``, occasionally 0), at most ``max_size`` elements."""
    ndim = draw(st.integers(min_ndim, max_ndim))
    shape = [draw(st.integers(1, max_side)) for _ in range(ndim)]
    if allow_empty and ndim and draw(st.integers(0, 11)) == 0:   # empty dims: rare but present
        shape[draw(st.integers(0, ndim - 1))] = 0
    shape = tuple(shape)
    while math.prod(shape) > max_size:
        shape = tuple(max(1, s // 2) if s > 1 else s for s in shape)
    return shape


@st.composite
def broadcast_partner(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts *to* ``shape`` and differs from it: some sides set to 1
    and/or leading dimensions dropped (never the last one, the usual class axis)."""
    if not shape or all(s == 1 for s in shape):
        return shape
    out = list(shape)
    drop = draw(st.integers(0, max(0, len(shape) - 1)))
    out = out[drop:]
    for i in range(len(out) - 1):   # keep the class axis whole
        if out[i] != 1 and draw(st.booleans()):
            out[i] = 1
    return tuple(out)


def axis_of(ndim: int) -> st.SearchStrategy[int]:
    """An axis index valid for ``ndim`` dimensions, mostly -1 (the last axis), sometimes
    another negative index; ``-1`` for 0-D (the reference defines the 0-D convention)."""
    if ndim <= 1:
        return st.just(-1)
    return st.one_of(st.just(-1), st.integers(-ndim, -1))


# ----------------------------------------------------------------------------- values
def _normalise(w: np.ndarray, axis: int) -> np.ndarray:
    if w.ndim == 0:
        return np.ones_like(w)
    s = w.sum(axis=axis, keepdims=True)
    uniform = np.full_like(w, 1.0 / max(1, w.shape[axis]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, w / np.where(s > 0, s, 1.0), uniform)


@st.composite
def probabilities(draw, shape, dtype: str, *, axis: int = -1, zeros: bool = False,
                  normalised: bool = True, min_positive: float = 2.0 ** -12) -> np.ndarray:
    """Non-negative values of ``shape`` exact in ``dtype``; when ``normalised`` each slice
    along ``axis`` sums to 1 before rounding to ``dtype`` (so to within its rounding after);
    when ``zeros`` some entries are exactly 0 (a slice may be all zeros before
    normalisation, then it is uniform); otherwise every entry is ``>= min_positive``
    before normalisation."""
    lo = 0.0 if zeros else min_positive
    elems = st.floats(lo, 1.0, allow_subnormal=False)
    if zeros:
        elems = st.one_of(st.just(0.0), elems)
    w = draw(hnp.arrays(np.float64, shape, elements=elems))
    if normalised:
        w = _normalise(w, axis)
    else:
        w = w * draw(st.sampled_from([1.0, 3.0, 0.25, 17.0]))
    return round_to(w, dtype)


@st.composite
def one_hot(draw, shape, dtype: str, *, axis: int = -1) -> np.ndarray:
    """Exactly one 1 per slice along ``axis``, zeros elsewhere (any dtype represents both)."""
    if len(shape) == 0:
        return np.ones(())
    moved = np.zeros(shape, dtype=np.float64)
    moved = np.moveaxis(moved, axis, -1)
    k = moved.shape[-1]
    if k == 0 or moved.size == 0:
        return np.moveaxis(moved, -1, axis)
    flat = moved.reshape(-1, k)
    for row in flat:
        row[draw(st.integers(0, k - 1))] = 1.0
    return np.moveaxis(flat.reshape(moved.shape), -1, axis)


@st.composite
def with_tiny_entries(draw, values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` with at least one entry (if any) replaced by a :func:`tiny_values` value."""
    out = values.copy()
    if out.size == 0:
        return out
    flat = out.reshape(-1)
    n = draw(st.integers(1, max(1, flat.size // 2)))
    for _ in range(n):
        flat[draw(st.integers(0, flat.size - 1))] = draw(tiny_values(dtype))
    return out


@st.composite
def near(draw, values: np.ndarray, dtype: str) -> np.ndarray:
    """A copy of ``values`` moved by a relative 10**-k (k in 3..15, not below the dtype's
    precision) or by 1..3 ulp of ``dtype``, entry by entry; zeros stay zero.  Rounded to
    ``dtype``; entries may round back to themselves (then they are equal)."""
    out = values.copy()
    if out.size == 0:
        return out
    u = UNIT_ROUNDOFF[dtype]
    k_max = max(3, min(15, int(-math.log10(u))))
    flat = out.reshape(-1)
    for i in range(flat.size):
        if flat[i] == 0:
            continue
        if draw(st.booleans()):
            rel = 10.0 ** -draw(st.integers(3, k_max)) * draw(st.sampled_from([1.0, -1.0]))
            flat[i] = flat[i] * (1.0 + rel)
        else:
            flat[i] = flat[i] * (1.0 + draw(st.integers(-3, 3)) * 2 * u)
    return round_to(out, dtype)


@st.composite
def with_invalid_entries(draw, values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` with at least one entry (if any) replaced by NaN, +inf, -inf or a negative
    number exact in ``dtype``."""
    out = values.copy()
    if out.size == 0:
        return out
    flat = out.reshape(-1)
    bad = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.25, -1.0, -2.0 ** -10])
    for _ in range(draw(st.integers(1, min(3, flat.size)))):
        flat[draw(st.integers(0, flat.size - 1))] = draw(bad)
    return out


def encode(p: np.ndarray, kind: str, dtype: str, *, shift: float = 0.0) -> np.ndarray:
    """Probabilities ``p`` in encoding ``kind``, rounded to ``dtype``: ``prob`` as is,
    ``logprob`` as log p (log 0 = -inf), ``logits`` as log p + ``shift`` (softmax of it is
    p / sum p along the class axis).  Negative / NaN entries give NaN in the log encodings."""
    if kind == "prob":
        return round_to(p, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(p)
    if kind == "logprob":
        return round_to(lp, dtype)
    if kind == "logits":
        return round_to(lp + shift, dtype)
    raise ValueError(f"encode: unknown kind {kind!r}")


@st.composite
def large_logits(draw, shape, dtype: str) -> np.ndarray:
    """Logits of ``shape`` with magnitudes up to the dtype's overflow region of exp
    (|x| in [10, 1e4], capped by the dtype's max), exact in ``dtype``."""
    top = min(1e4, FINFO[dtype][0] / 4)
    mag = st.floats(10.0, top)
    sign = st.sampled_from([1.0, -1.0])
    elems = st.builds(lambda m, s: m * s, mag, sign)
    return round_to(draw(hnp.arrays(np.float64, shape, elements=elems)), dtype)


# ----------------------------------------------------------------------------- pairs
@st.composite
def distribution_pair(draw, target_shape, pred_shape, dtype: str, *, class_axis: int = -1,
                      family: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """``(family, P, Q)``: probabilities P (target) and Q (prediction), exact in ``dtype``,
    of the given shapes, drawn from ``family`` (one of :data:`FAMILIES`; drawn if None).
    For ``large_logits`` Q is returned as *logits* (the caller must encode it as such)."""
    fam = family or draw(st.sampled_from(FAMILIES))
    if fam not in FAMILIES:
        raise ValueError(f"distribution_pair: unknown family {fam!r}")
    t_ax = class_axis if len(target_shape) else -1
    p_ax = class_axis if len(pred_shape) else -1
    P = draw(probabilities(target_shape, dtype, axis=t_ax, zeros=fam in ("zero_target", "zero_both")))
    Q = draw(probabilities(pred_shape, dtype, axis=p_ax, zeros=fam in ("zero_pred", "zero_both")))
    if fam == "one_hot":
        P = draw(one_hot(target_shape, dtype, axis=t_ax))
    elif fam == "tiny":
        if draw(st.booleans()):
            P = draw(with_tiny_entries(P, dtype))
        else:
            Q = draw(with_tiny_entries(Q, dtype))
    elif fam in ("near_equal", "equal") and target_shape == pred_shape:
        Q = P.copy() if fam == "equal" else draw(near(P, dtype))
    elif fam == "unnormalised":
        P = draw(probabilities(target_shape, dtype, axis=t_ax, normalised=draw(st.booleans())))
        Q = draw(probabilities(pred_shape, dtype, axis=p_ax, normalised=False))
    elif fam == "large_logits":
        Q = draw(large_logits(pred_shape, dtype))
    elif fam == "invalid":
        if draw(st.booleans()):
            P = draw(with_invalid_entries(P, dtype))
        else:
            Q = draw(with_invalid_entries(Q, dtype))
    return fam, P, Q


# ----------------------------------------------------------------------------- weights
def sample_weight_shape(shape: tuple[int, ...], class_axis: int, per_element: bool = False) -> tuple[int, ...]:
    """Canonical sample-weight shape for a loss on broadcast shape ``shape`` (SPEC.md
    KL-WEIGHT-SHAPE): per distribution, ``shape`` with the class axis kept as size 1; per
    element (``per_element``, KL-WEIGHT-ELEMENT: may vary along the class axis), ``shape``."""
    if per_element or not shape:
        return tuple(shape)
    out = list(shape)
    out[class_axis] = 1
    return tuple(out)


def sample_weights(shape, class_axis: int, dtype: str, *, per_element: bool = False) -> st.SearchStrategy[np.ndarray]:
    """Non-negative sample weights of :func:`sample_weight_shape` (0, 1, fractions, up to 4),
    exact in ``dtype``."""
    elems = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 2.0]), st.floats(0.0, 4.0))
    return hnp.arrays(np.float64, sample_weight_shape(shape, class_axis, per_element), elements=elems).map(
        lambda a: round_to(a, dtype))


def scalar_weights(dtype: str) -> st.SearchStrategy[float]:
    """A scalar loss weight exact in ``dtype``: 1, 0, 0.5, 2, or an arbitrary value in (0, 10]."""
    return st.one_of(st.sampled_from([1.0, 0.0, 0.5, 2.0]), st.floats(1e-3, 10.0)).map(
        lambda w: float(round_to(w, dtype)))


# ----------------------------------------------------------------------------- cases
_BATCH_REDUCTIONS = ("batchmean", "sample_sum", "sample_mean")


@st.composite
def cases(draw, *, dtypes_=DTYPES, reductions=REDUCTIONS, pred_kinds=PRED_KINDS,
          target_kinds=TARGET_KINDS, families=FAMILIES, weights=("scalar", "sample"),
          min_ndim: int = 0, max_ndim: int = 4, broadcasting: bool = True,
          batch_axis: bool = True, class_axis: bool = True, grad: bool | None = None) -> Case:
    """A canonical :class:`Case` built from the sets given (each a subset of the canonical
    vocabulary).  ``label`` is ``"<family>/<details>"``.  Reductions that use the batch
    axis (batchmean, sample_*) and sample weights are only drawn for ndim >= 1; the
    class axis is only moved off -1 when ``class_axis``, the batch axis only off 0 when
    ``batch_axis``; target/pred shapes differ (but broadcast) only when ``broadcasting``.
    ``grad`` None draws it (mostly True)."""
    dtype = draw(dtypes(dtypes_))
    reduction = draw(st.sampled_from(sorted(reductions, key=REDUCTIONS.index)))
    lo = max(min_ndim, 1 if reduction in _BATCH_REDUCTIONS or reduction == "distribution" else 0)
    if lo > max_ndim:
        lo = max_ndim
    shape = draw(shapes(min_ndim=lo, max_ndim=max_ndim))
    ndim = len(shape)
    c_ax = draw(axis_of(ndim)) if class_axis else -1
    b_ax = 0
    if batch_axis and ndim >= 2:
        choices = [a for a in range(ndim) if a != c_ax % ndim]
        b_ax = draw(st.sampled_from(choices))
    t_shape = p_shape = shape
    if broadcasting and ndim >= 2 and draw(st.integers(0, 5)) == 0:
        partner = draw(broadcast_partner(shape))
        if draw(st.booleans()):
            t_shape = partner
        else:
            p_shape = partner
        if c_ax != -1 or b_ax != 0:   # keep axes meaningful for a reduced-rank partner
            c_ax, b_ax = -1, 0
    ikinds = sorted(pred_kinds, key=PRED_KINDS.index)
    # large_logits is a question about logits: without that input it is not drawn (its
    # +-1e4 values would otherwise be sent as probabilities or log-probabilities)
    fams = [f for f in families if f in FAMILIES and (f != "large_logits" or "logits" in ikinds)] or ["plain"]
    fam, P, Q = draw(distribution_pair(t_shape, p_shape, dtype, class_axis=c_ax,
                                       family=draw(st.sampled_from(fams))))
    if fam == "large_logits":
        ikinds = ["logits"]
    pred_kind = draw(st.sampled_from(ikinds))
    target_kind = draw(st.sampled_from(sorted(target_kinds, key=TARGET_KINDS.index)))
    if fam != "large_logits":
        shift = draw(st.sampled_from([0.0, 1.0, -3.0])) if pred_kind == "logits" else 0.0
        Q = encode(Q, pred_kind, dtype, shift=shift)
    P = encode(P, target_kind, dtype)
    w = sw = None
    wopts = sorted(set(weights) & {"scalar", "sample"})
    if ndim == 0:
        wopts = [x for x in wopts if x != "sample"]
    choice = draw(st.sampled_from(["none"] * 3 + wopts))
    if choice == "scalar":
        w = draw(scalar_weights(dtype))
    elif choice == "sample":
        sw = draw(sample_weights(np.broadcast_shapes(t_shape, p_shape), c_ax, dtype,
                                 per_element=draw(st.integers(0, 3)) == 0))
    g = draw(st.sampled_from([True, True, True, False])) if grad is None else grad
    detail = f"{ndim}d"
    if t_shape != p_shape:
        detail += ",broadcast"
    if 0 in shape:
        detail += ",empty"
    return Case(target=P, pred=Q, dtype=dtype, target_kind=target_kind, pred_kind=pred_kind,
                reduction=reduction, class_axis=c_ax, batch_axis=b_ax, weight=w,
                sample_weight=sw, grad=g, label=f"{fam}/{detail}")


def _decoded(raw: np.ndarray, kind: str, axis: int) -> np.ndarray:
    """Probabilities an encoded input stands for (softmax of logits along ``axis``)."""
    with np.errstate(all="ignore"):
        if kind == "prob":
            return raw
        if kind == "logprob":
            return np.exp(raw)
        if raw.ndim == 0 or raw.size == 0:
            return np.exp(raw - raw) if raw.size else raw
        z = raw - np.max(raw, axis=axis, keepdims=True)
        e = np.exp(z)
        return e / np.sum(e, axis=axis, keepdims=True)


def family_problem(case: Case) -> str | None:
    """Why ``case`` does not satisfy the definition of its label's family (:data:`FAMILIES`),
    or None: the families mean what their names say (checked over generated and frozen
    corpora by the tests).  Checked: every family but ``invalid`` has no NaN and only
    valid encodings (log-probabilities <= 0 within rounding, 1e-3 for ``near_equal``,
    any for ``unnormalised``);
    ``plain`` is strictly positive and normalised; ``large_logits`` is logits of
    magnitude >= 10; ``invalid`` holds a negative, NaN or +inf entry."""
    fam = case.label.split("/", 1)[0]
    if fam not in FAMILIES:
        return None   # curated cases and others: not a generated family
    t = np.asarray(case.target, dtype=np.float64)
    q = np.asarray(case.pred, dtype=np.float64)
    tol = 8 * UNIT_ROUNDOFF[case.dtype]
    if fam == "invalid":
        with np.errstate(invalid="ignore"):
            bad = [np.isnan(a) | (a == np.inf) | ((a < 0) if k == "prob" else False)
                   for a, k in ((t, case.target_kind), (q, case.pred_kind))]
        return None if any(np.any(b) for b in bad) or not (t.size and q.size) else "no invalid entry"
    for name, a, kind in (("target", t, case.target_kind), ("pred", q, case.pred_kind)):
        if np.any(np.isnan(a)):
            return f"{name} holds NaN"
        if kind == "logits" and np.any(a == np.inf):   # -inf logits encode q = 0
            return f"{name} logits hold +inf"
        # near_equal moves entries by up to 1e-3 relative without renormalising
        if kind == "logprob" and fam != "unnormalised" and np.any(a > tol + (1e-3 if fam == "near_equal" else 0)):
            return f"{name} log-probabilities above 0 (max {np.max(a):.3g})"
        if kind == "prob" and (np.any(a < 0) or np.any(np.isinf(a))):
            return f"{name} probabilities outside [0, inf)"
    if fam == "large_logits":
        if case.pred_kind != "logits":
            return f"pred is {case.pred_kind}, not logits"
        return None if np.all(np.abs(q) >= 10) else "logits of magnitude below 10"
    if fam == "plain":
        nd = np.broadcast_shapes(t.shape, q.shape)
        for name, a, kind in (("target", t, case.target_kind), ("pred", q, case.pred_kind)):
            axis = case.class_axis if a.ndim == len(nd) else -1
            v = _decoded(a, kind, axis)
            if np.any(v <= 0):
                return f"{name} has a zero probability"
            if v.ndim and v.size and kind != "logits" and np.any(np.abs(v.sum(axis=axis) - 1) > tol * (2 + v.shape[axis])):
                return f"{name} not normalised along the class axis"
    return None


def cases_for(capabilities, *, families=FAMILIES, grad: bool | None = None) -> st.SearchStrategy[Case]:
    """:func:`cases` restricted to what ``capabilities`` (an :class:`adapters.base.Capabilities`)
    declares: its dtypes, reductions, input/target kinds, weights, ndim range, broadcasting
    and axis choices.  Every drawn case can be sent to that adapter without translation."""
    c = capabilities
    return cases(dtypes_=c.dtypes, reductions=c.reductions, pred_kinds=c.pred_kinds,
                 target_kinds=c.target_kinds, families=families, weights=c.weights,
                 min_ndim=c.min_ndim, max_ndim=min(4, c.max_ndim), broadcasting=c.broadcasting,
                 batch_axis=c.batch_axis, class_axis=c.class_axis,
                 grad=False if not c.gradients else grad)

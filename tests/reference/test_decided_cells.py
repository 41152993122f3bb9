"""Special-value cells where the reference and the independent SPEC-literal implementation
(tests/spec_literal/) once read SPEC.md differently: clip_both at NaN and infinite entries,
the swapped first side beyond float64's range, target_log_eps at t = -inf, the partials of
NaN and infinite terms, overflow into a dtype, and bfloat16 rounding.  SPEC decided each one
and its text now says so; the expected values below are read off that text (a hand-written
table per clause, IEEE arithmetic done by hand or by ``math``), never computed by the
reference.

Each row: target (kind, value), prediction (kind, value), then the expected T, ∂/∂target and
∂/∂prediction w.r.t. the inputs as passed (reduction ``none``, one entry: c = 1).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from klconform.case import Case
from klconform.reference import Point, evaluate
from klconform.reference.dtypes import FINFO, round_to

INF, NAN = math.inf, math.nan
L03 = math.log(0.3)


def _check(row, point: Point, dtype: str = "float64"):
    (tk, t), (pk, q), want_t, want_gt, want_gp = row
    e = evaluate(Case(target=[t], pred=[q], target_kind=tk, pred_kind=pk, reduction="none",
                      dtype=dtype), point)
    got = (float(e.value_in_dtype[0]), float(e.grads["target"][0]), float(e.grads["pred"][0]))
    for name, g, w in zip(("T", "d/dtarget", "d/dpred"), got, (want_t, want_gt, want_gp)):
        ok = (math.isnan(g) and math.isnan(w)) or g == w or (
            math.isfinite(w) and abs(g - w) <= 1e-15 * max(1.0, abs(w)))
        assert ok, f"{point.name} {tk}={t} {pk}={q}: {name} {g!r}, SPEC says {w!r}"


# ---------------------------------------------------------------- KL-GRAD-EPS, clip_both
# The derivative of clip selects: an entry outside [eps, 1] -- NaN included, which fails both
# comparisons, and ±inf -- has partial 0, whatever the clipped partial is; an entry inside
# keeps ∂T/∂p' = log(p'/q') + 1 or ∂T/∂q' = -p'/q' (times the probability for a log
# encoding), NaN where the other side is NaN.  The value is NaN wherever an entry is NaN.
CLIP = Point("none", epsilon="clip_both", eps=1e-7)
CLIP_GEN = Point("none", epsilon="clip_both", eps=1e-7, generalised=True)
P, LP = "prob", "logprob"

CLIP_NAN_ROWS = [                       # the same partials for the generalised term
    ((P, 0.3), (P, NAN), NAN, NAN, 0.0),       # p inside: NaN clipped partial; q NaN: 0
    ((P, NAN), (P, 0.3), NAN, 0.0, NAN),
    ((P, 0.0), (P, NAN), NAN, 0.0, 0.0),       # p below eps: 0, not 0·NaN
    ((P, 2.5), (P, NAN), NAN, 0.0, 0.0),       # p above 1
    ((P, NAN), (P, NAN), NAN, 0.0, 0.0),
    ((P, -0.5), (LP, NAN), NAN, 0.0, 0.0),     # negative: clipped to eps, outside
    ((P, 0.3), (LP, NAN), NAN, NAN, 0.0),      # log encodings read the same way
    ((LP, -1.2), (P, NAN), NAN, NAN, 0.0),
    ((LP, NAN), (LP, -1.2), NAN, 0.0, NAN),
    ((LP, -INF), (LP, NAN), NAN, 0.0, 0.0),
    ((LP, NAN), (LP, NAN), NAN, 0.0, 0.0),
]


@pytest.mark.parametrize("point", [CLIP, CLIP_GEN], ids=lambda p: p.name)
@pytest.mark.parametrize("row", CLIP_NAN_ROWS, ids=lambda r: f"{r[0]}-{r[1]}")
def test_clip_both_nan_entry_has_zero_partial_and_nan_where_the_other_side_is_inside(row, point):
    _check(row, point)


# q = +inf (log q = +inf) is clipped to 1, outside: its partial is 0, never inf·0 = NaN.
CLIP_INF_ROWS = [
    ((P, 0.3), (LP, INF), 0.3 * L03, L03 + 1, 0.0),
    ((P, 0.3), (P, INF), 0.3 * L03, L03 + 1, 0.0),
    ((LP, INF), (P, 0.3), -L03, 0.0, -1 / 0.3),
    ((P, INF), (P, 0.3), -L03, 0.0, -1 / 0.3),
    ((LP, INF), (LP, INF), 0.0, 0.0, 0.0),
    ((LP, 800.0), (LP, -1.2), 1.2, 0.0, -1.0),   # p = e^800 -> 1; q inside: q·(-1/q) = -1
]
CLIP_INF_GEN_ROWS = [                           # T = p'log(p'/q') - p' + q'
    ((P, 0.3), (LP, INF), 0.3 * L03 - 0.3 + 1, L03, 0.0),
    ((LP, INF), (P, 0.3), -L03 - 1 + 0.3, 0.0, 1 - 1 / 0.3),
    ((LP, INF), (LP, INF), 0.0, 0.0, 0.0),
    ((LP, 800.0), (LP, -1.2), 1.2 - 1 + math.exp(-1.2), 0.0, math.exp(-1.2) * (1 - 1 / math.exp(-1.2))),
]


@pytest.mark.parametrize("row", CLIP_INF_ROWS, ids=lambda r: f"{r[0]}-{r[1]}")
def test_clip_both_infinite_entry_has_zero_partial_in_every_encoding(row):
    _check(row, CLIP)


@pytest.mark.parametrize("row", CLIP_INF_GEN_ROWS, ids=lambda r: f"{r[0]}-{r[1]}")
def test_clip_both_generalised_infinite_entry_has_zero_partial(row):
    _check(row, CLIP_GEN)


# ---------------------------------------------------------------- KL-ARG-ORDER, overflow
# The swapped first side is exp(log q) rounded to float64: exp(800) is +inf (log +inf), so
# KL-INF-1 / KL-GEN-2 decide T and the partials are §8's at q = +inf; the target is exact.
# Under swap the prediction gets the P-partials (a·(log a - log b + 1) w.r.t. log a), the
# target the Q-partials (-a/b, or -a w.r.t. a log-encoded target; generalised 1 - a/b, b - a).
SWAP_ROWS = {
    "swap": [
        ((LP, 800.0), (LP, 800.0), INF, -INF, INF),
        ((P, 0.3), (LP, 800.0), INF, -INF, INF),
        ((LP, -1.2), (LP, 800.0), INF, -INF, INF),
        ((P, INF), (LP, 800.0), NAN, NAN, NAN),      # p = q = +inf: NaN (KL-INF-1)
        ((P, 0.3), (LP, -1000.0), 0.0, 0.0, 0.0),    # exp(-1000) is 0: KL-ZERO-1
    ],
    "swap+generalised": [
        ((LP, 800.0), (LP, 800.0), INF, -INF, INF),  # b - a = e^800 - inf
        ((P, 0.3), (LP, 800.0), INF, -INF, INF),
        ((P, INF), (LP, 800.0), NAN, NAN, NAN),
        ((P, 0.3), (LP, -1000.0), 0.3, 1.0, 0.0),    # KL-GEN-2: T = b; ∂T/∂b = 1
    ],
    "swap+negative=zero": [
        ((LP, 800.0), (LP, 800.0), INF, -INF, INF),
        ((P, INF), (LP, 800.0), NAN, NAN, NAN),
    ],
}
SWAP_POINTS = {"swap": Point("none", swap=True),
               "swap+generalised": Point("none", swap=True, generalised=True),
               "swap+negative=zero": Point("none", swap=True, negative="zero")}


@pytest.mark.parametrize("name,row", [(n, r) for n, rows in SWAP_ROWS.items() for r in rows],
                         ids=lambda x: x if isinstance(x, str) else f"{x[0]}-{x[1]}")
def test_swapped_first_side_overflows_to_infinity_at_every_point(name, row):
    _check(row, SWAP_POINTS[name])


def test_swapped_first_side_rounds_at_the_float64_thresholds():
    """exp(log q) below float64's largest finite value stays finite, above it is +inf; near
    the smallest subnormal it is 2**-1074 or 0 (KL-ARG-ORDER)."""
    swap = Point("none", swap=True)
    p = 2.0**40
    for lq, want in ((709.78, -math.exp(709.78) / p), (709.79, -INF)):
        e = evaluate(Case(target=[p], pred=[lq], pred_kind=LP, reduction="none"), swap)
        g = float(e.grads["target"][0])                  # -q/p
        assert g == want or abs(g - want) <= 1e-15 * abs(want), (lq, g, want)
    # e^-745.1 rounds to 2**-1074 (T = a·(log a - log 0.3) < 0), e^-745.2 to 0 (T = 0)
    below = evaluate(Case(target=[0.3], pred=[-745.1], pred_kind=LP, reduction="none"), swap)
    zero = evaluate(Case(target=[0.3], pred=[-745.2], pred_kind=LP, reduction="none"), swap)
    assert below.value[0] < 0 and float(below.grads["target"][0]) < 0
    assert zero.value[0] == 0 and float(zero.grads["target"][0]) == 0


# ---------------------------------------------------------------- KL-GRAD-EPS, target_log_eps
# At a target t = -inf (p = 0) the log partial is KL-GRAD-ZERO's: 0 for q > 0, q = +inf
# included (not 0·(-inf)), NaN for q = 0.  ∂T/∂q = -p/q is 0 at p = 0; ∂T/∂(log q) = 0 at
# p = 0 (generalised: q); ∂T/∂p at p = 0 is the formula log(eps) - log q.
TLE = Point("none", epsilon="target_log_eps", eps=1e-12)
TLE_GEN = Point("none", epsilon="target_log_eps", eps=1e-12, generalised=True)
TLE_ROWS = [
    (TLE, ((LP, -INF), (LP, INF), 0.0, 0.0, 0.0)),
    (TLE, ((LP, -INF), (P, INF), 0.0, 0.0, 0.0)),
    (TLE, ((LP, -INF), (P, 0.3), 0.0, 0.0, 0.0)),
    (TLE, ((LP, -INF), (LP, -INF), 0.0, NAN, 0.0)),
    (TLE, ((P, 0.0), (P, INF), 0.0, -INF, 0.0)),
    (TLE_GEN, ((LP, -INF), (LP, INF), INF, 0.0, INF)),   # KL-GEN-2: T = q; ∂T/∂(log q) = q
    (TLE_GEN, ((LP, -INF), (P, 0.3), 0.3, 0.0, 1.0)),
]


@pytest.mark.parametrize("point,row", TLE_ROWS, ids=lambda x: x.name if isinstance(x, Point) else f"{x[0]}-{x[1]}")
def test_target_log_eps_partial_at_minus_infinite_target_is_the_limit(point, row):
    _check(row, point)


# ---------------------------------------------------------------- KL-GRAD-INF
# Each partial is its own formula in IEEE arithmetic whatever T is (the NaN of KL-INF-1 at
# p = q = +inf included); a NaN term of KL-INVALID-1 has NaN partials, every one.
CANON = Point("none")
INF_ROWS = [
    (CANON, ((P, INF), (LP, INF), NAN, NAN, -INF)),      # -p = -inf; log(inf/inf) + 1 NaN
    (CANON, ((LP, INF), (P, INF), NAN, NAN, NAN)),       # e^t(t - log q + 1), -p/q: NaN
    (CANON, ((P, 0.5), (LP, INF), -INF, -INF, -0.5)),    # infinite T keeps -p
    (CANON, ((P, 0.5), (LP, NAN), NAN, NAN, NAN)),       # not -p = -0.5
    (CANON, ((P, -0.25), (LP, 0.4), NAN, NAN, NAN)),     # not -p = 0.25
    (CANON, ((LP, NAN), (P, 0.3), NAN, NAN, NAN)),
    (Point("none", generalised=True), ((P, INF), (LP, INF), NAN, NAN, NAN)),   # q - p
]


@pytest.mark.parametrize("point,row", INF_ROWS, ids=lambda x: x.name if isinstance(x, Point) else f"{x[0]}-{x[1]}")
def test_partials_are_formulas_on_their_own_except_at_invalid_terms(point, row):
    _check(row, point)


# ---------------------------------------------------------------- KL-DTYPE-3
def _weighted(w: float, dtype: str):
    """T = w·log(1/2**-24) = w·24·log 2 (p = 1, q = 2**-24, one entry, reduction sum)."""
    return evaluate(Case(target=[1.0], pred=[2.0**-24], pred_kind=P, reduction="sum", dtype=dtype,
                         weight=w, grad=False))


@pytest.mark.parametrize("dtype,top,threshold", [
    ("float16", 65504.0, 65520.0),
    ("bfloat16", 2.0**128 * (1 - 2.0**-8), 2.0**128 * (1 - 2.0**-9)),
    ("float32", 2.0**128 * (1 - 2.0**-24), 2.0**128 * (1 - 2.0**-25)),
])
def test_overflow_is_ieee_rounding_at_max_plus_half_ulp(dtype, top, threshold):
    """A result between the largest finite value and max + ½ ulp rounds to the largest finite
    value; at or beyond the threshold it is ±inf (KL-DTYPE-3)."""
    t1 = 24 * math.log(2)
    for exact, want in (((top + threshold) / 2, top), (threshold * (1 + 2.0**-40), INF)):
        e = _weighted(exact / t1, dtype)
        assert abs(float(e.value) - exact) <= 1e-12 * exact           # the exact value, in float64
        assert float(e.value_in_dtype) == want, (dtype, float(e.value), float(e.value_in_dtype), want)
        assert ("KL-DTYPE-3" in e.clauses) == (want == INF)
    assert FINFO[dtype][0] == top


# ---------------------------------------------------------------- round_to (KL-DTYPE-2)
# bfloat16 has 8 significant bits: between 1 + 2**-7 (odd last bit) and 1 + 2**-6 the tie
# is 1 + 3·2**-8.  A value just below a tie rounds down, once; through float32 it would first
# land on the tie and then go to the even neighbour.
@pytest.mark.parametrize("x,want", [
    (1 + 3 * 2.0**-8 - 2.0**-40, 1 + 2.0**-7),
    (1 + 3 * 2.0**-8, 1 + 2.0**-6),                      # the tie: to even
    (1 + 3 * 2.0**-8 + 2.0**-40, 1 + 2.0**-6),
    (5.5 * 2.0**-133 - 2.0**-160, 5 * 2.0**-133),         # subnormal grid 2**-133
    (5.5 * 2.0**-133, 6 * 2.0**-133),
    (-(1 + 3 * 2.0**-8 - 2.0**-40), -(1 + 2.0**-7)),
    (2.0**128 * (1 - 2.0**-9) * (1 - 2.0**-52), 2.0**128 * (1 - 2.0**-8)),
    (2.0**128 * (1 - 2.0**-9), INF),
    (2.0**-134, 0.0),                                    # half the smallest: to even, 0
    (-0.0, -0.0), (INF, INF),
])
def test_round_to_bfloat16_rounds_once(x, want):
    got = float(round_to(np.array([x]), "bfloat16")[0])
    assert got == want and math.copysign(1, got) == math.copysign(1, want), (x, got, want)
    assert math.isnan(float(round_to(np.array([NAN]), "bfloat16")[0]))

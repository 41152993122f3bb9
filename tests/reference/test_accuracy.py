"""Accuracy of the float64 core (reference.kl_divergence / kl_terms) against the mpmath oracle.

SPEC.md KL-DEF-2: every value within 2 ulp of the exact KL of the given float64 inputs, 0
exactly when P == Q.  Expected values come from reference/oracle.py (mpmath on the exact
binary inputs), never from the code under test; special values come from the clause text.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from klconform.reference import _accurate, kl_divergence, kl_terms
from klconform.reference._accurate import _fast_rows, _special_rows
from klconform.reference.oracle import kl_exact, kl_exact_mpf, ulp_error

MAX_ULP = 2.0

try:
    from klconform.reference import _kernel
except ImportError:                    # numba not installed: only the numpy path exists
    _kernel = None

BACKENDS = ["numpy"] + (["numba"] if _kernel is not None else [])


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request, monkeypatch):
    """Every test of this module runs on each fast path: numpy and, where numba imports,
    the compiled kernel (reference/_kernel.py)."""
    monkeypatch.setattr(_accurate, "_BACKEND", request.param)
    assert _accurate.backend() == request.param
    return request.param


def assert_within_ulp(got, p, q, limit=MAX_ULP, **kw):
    """Every output of ``got`` within ``limit`` ulp of the oracle's exact value."""
    exact = kl_exact_mpf(p, q, **kw)
    got = np.asarray(got)
    assert got.shape == exact.shape
    errs = [ulp_error(g, e) for g, e in zip(got.ravel(), exact.ravel())]
    worst = max(errs, default=0.0)
    assert worst <= limit, f"{worst} ulp (limit {limit}); got {got.ravel()[np.argmax(errs)]!r}"


def normalised(x):
    return x / np.sum(x, axis=-1, keepdims=True)


def near_pair(rng, shape, delta, normalise_q):
    """p normalised; q = p*(1 + delta*N(0,1)) re-rounded, optionally renormalised."""
    p = normalised(rng.random(shape) + 0.01)
    q = p * (1.0 + delta * rng.standard_normal(shape))
    return p, (normalised(q) if normalise_q else q)


# ------------------------------------------------------------------- curated regimes
@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9, 1e-12, 1e-15])
@pytest.mark.parametrize("normalise_q", [True, False])
def test_near_equal_rows_within_2ulp(delta, normalise_q):
    """KL-DEF-2: p ≈ q to 1e-3…1e-15 relative, the regime where naive float64 fails."""
    rng = np.random.default_rng(int(-math.log10(delta)) * 2 + normalise_q)
    p, q = near_pair(rng, (6, 7), delta, normalise_q)
    assert_within_ulp(kl_divergence(p, q), p, q)


@pytest.mark.parametrize("delta", [1e-2, 1e-5, 1e-8])
def test_near_equal_design_margin_one_ulp(delta):
    """Design margin (stricter than KL-DEF-2): rows the vectorised path accepts are within
    1.5 ulp by its error bound, and in the normal range the measured error stays <= 1 ulp;
    losing the low part of any term shows up here first."""
    rng = np.random.default_rng(29)
    p, q = near_pair(rng, (40, 12), delta, True)
    assert_within_ulp(kl_divergence(p, q), p, q, limit=1.0)


def test_near_equal_row_of_1000_categories():
    """KL-DEF-2: rows of 10^3 categories, near-equal and unrelated."""
    rng = np.random.default_rng(7)
    p, q = near_pair(rng, (1, 1000), 1e-13, True)
    q2 = normalised(rng.random((1, 1000)))
    P, Q = np.concatenate([p, p]), np.concatenate([q, q2])
    assert_within_ulp(kl_divergence(P, Q), P, Q)


def test_cancelling_differences_sum_to_zero():
    """Σ(p - q) = 0 exactly, so the value is the tiny Σ t ≈ Σ d²/2q (≈ 4e-30) alone."""
    e = 2.0 ** -50
    p = np.array([0.5, 0.5, 0.25, 0.25])
    q = np.array([0.5 + e, 0.5 - e, 0.25 - e, 0.25 + e])
    v = kl_divergence(p, q)
    assert 0 < v < 1e-28
    assert_within_ulp(v, p, q)


@pytest.mark.parametrize("scale", [1e-300, 2.0 ** -1040, 1e300, 2.0 ** -1074 * 7])
def test_tiny_huge_and_subnormal_rows(scale):
    """KL-DEF-2: entries near 1e-300, subnormal and near overflow (homogeneity is not used
    by the oracle: it evaluates the scaled values themselves)."""
    rng = np.random.default_rng(3)
    p = normalised(rng.random((4, 5))) * scale
    q = np.concatenate([p[:2] * (1 + 1e-9 * rng.standard_normal((2, 5))),
                        normalised(rng.random((2, 5))) * scale])
    assert_within_ulp(kl_divergence(p, q), p, q)


def test_rows_mixing_ordinary_and_subnormal_entries():
    """One row spans 1 down to subnormals: the tiny entries still count to the last ulp."""
    p = np.array([[1.0, 1e-310, 3e-320], [0.5, 1e-300, 0.5], [1.0, 2e-310, 0.0]])
    q = np.array([[1.0, 1e-311, 5e-321], [0.5, 3e-300, 0.5 + 2.0 ** -53], [1.0, 2e-310, 1e-300]])
    assert_within_ulp(kl_divergence(p, q), p, q)


def test_zeros_in_p_and_one_hot_p():
    """KL-ZERO-1 inside ordinary rows: zero entries of p contribute exactly nothing."""
    rng = np.random.default_rng(11)
    q = normalised(rng.random((3, 50)))
    one_hot = np.zeros((3, 50))
    one_hot[np.arange(3), [0, 17, 49]] = 1.0
    sparse = normalised(rng.random((3, 50)) * (rng.random((3, 50)) < 0.3))
    for p in (one_hot, sparse):
        assert_within_ulp(kl_divergence(p, q), p, q)


def test_exactly_zero_when_p_equals_q():
    """KL-DEF-2: P == Q gives exactly 0.0 (not a rounding residue)."""
    rng = np.random.default_rng(5)
    p = rng.random((5, 300)) * 10.0 ** rng.integers(-300, 300, (5, 1))
    assert np.array_equal(kl_divergence(p, p), np.zeros(5))
    assert np.array_equal(kl_terms(p, p), np.zeros_like(p))


def test_unnormalised_rows_with_exact_zero_value():
    """KL-DEF-1: no normalisation.  2 log 2 + 1*log(1/4) is exactly 0; 3 log(3/2) - ... ."""
    p = np.array([[2.0, 1.0], [3.0, 1.0], [1e5, 7.0]])
    q = np.array([[1.0, 4.0], [2.0, 9.0], [1.0, 3e9]])
    v = kl_divergence(p, q)
    assert v[0] == 0.0
    assert_within_ulp(v, p, q)


def test_weights_tuple_axes_axis_none_and_broadcasting():
    """Weights multiply terms; axis may be a tuple or None; p, q, weights broadcast."""
    rng = np.random.default_rng(13)
    p = normalised(rng.random((3, 4, 5)))
    q = p * (1 + 1e-10 * rng.standard_normal((3, 4, 5)))
    w = rng.random((3, 1, 5)) * 3 - 1           # negative weights too
    for kw in ({"axis": -1}, {"axis": (0, 2)}, {"axis": None}, {"axis": 1}):
        assert_within_ulp(kl_divergence(p, q, **kw), p, q, **kw)
        assert_within_ulp(kl_divergence(p, q, weights=w, **kw), p, q, weights=w, **kw)
    qb = normalised(rng.random((1, 5)))         # q broadcast against every row of p
    assert kl_divergence(p, qb).shape == (3, 4)
    assert_within_ulp(kl_divergence(p, qb), p, qb)
    assert_within_ulp(kl_divergence([0.2, 0.8], [[0.3, 0.7], [0.2, 0.8]], weights=2.0),
                      [0.2, 0.8], [[0.3, 0.7], [0.2, 0.8]], weights=2.0)


def test_issue_example_value():
    """The issue's worked example: ≈ 0.0997934720914666."""
    v = kl_divergence([[.2, .5, .2, .1]], [[.3, .4, .1, .2]])
    assert v.shape == (1,)
    assert ulp_error(v[0], kl_exact_mpf([[.2, .5, .2, .1]], [[.3, .4, .1, .2]])[0]) <= 2
    assert abs(v[0] - 0.0997934720914666) < 1e-15


def test_kl_terms_within_1ulp_elementwise():
    """kl_terms: each element p*log(p/q) within 1 ulp, broadcast, all regimes."""
    rng = np.random.default_rng(17)
    p = np.concatenate([rng.random(40), rng.random(10) * 1e-305, [1e-320, 0.0, 1.0, 1e300]])
    q = np.concatenate([p[:20] * (1 + 1e-12 * rng.standard_normal(20)), rng.random(30),
                        [3e-321, 0.5, 1.0, 1e-300]])
    got = kl_terms(p, q)
    assert got.shape == p.shape
    for g, a, b in zip(got, p, q):
        assert ulp_error(g, kl_exact_mpf([a], [b])[()]) <= 1.0, (a, b, g)
    assert kl_terms([[0.5], [0.25]], [0.25, 0.5]).shape == (2, 2)


# ------------------------------------------------------------------- special values
@pytest.mark.parametrize("p, q, expected", [
    ([0.0, 1.0], [0.5, 1.0], 0.0),
    ([0.0, 1.0], [0.0, 1.0], 0.0),
    ([0.0, 1.0], [np.inf, 1.0], 0.0),
])
def test_KL_ZERO_1_zero_p_contributes_nothing(p, q, expected):
    """KL-ZERO-1: p = 0 with q >= 0 (q = 0 and q = +inf included) gives 0."""
    assert kl_divergence(p, q) == expected
    assert kl_terms(0.0, q[0]) == 0.0


def test_KL_ZERO_2_positive_p_zero_q_is_inf():
    """KL-ZERO-2: p > 0, q = 0 gives +inf (also for p = +inf)."""
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert kl_terms(1e-310, 0.0) == np.inf
    assert kl_terms(np.inf, 0.0) == np.inf


@pytest.mark.parametrize("p, q", [([-0.1, 1.1], [0.5, 0.5]), ([0.5, 0.5], [0.5, -0.0 - 1e-300]),
                                  ([np.nan, 1.0], [0.5, 0.5]), ([0.5, 0.5], [np.nan, 0.5]),
                                  ([0.0, 1.0], [-1.0, 1.0]), ([np.inf, 1.0], [np.nan, 1.0])])
def test_KL_INVALID_1_negative_or_nan_gives_nan(p, q):
    """KL-INVALID-1: any NaN or negative entry of p or q makes the row NaN."""
    assert np.isnan(kl_divergence(p, q))
    assert np.isnan(kl_exact(p, q))             # the oracle agrees


def test_KL_INVALID_1_negative_zero_is_zero():
    """KL-INVALID-1: -0.0 is zero, not negative."""
    assert kl_divergence([-0.0, 1.0], [0.5, 1.0]) == 0.0
    assert kl_divergence([0.5, 0.5], [-0.0, 0.5]) == np.inf


def test_KL_INF_1_infinite_entries():
    """KL-INF-1: p = +inf -> +inf (q finite), NaN (q = +inf); finite p > 0, q = +inf -> -inf."""
    assert kl_terms(np.inf, 2.0) == np.inf
    assert np.isnan(kl_terms(np.inf, np.inf))
    assert kl_terms(0.5, np.inf) == -np.inf
    assert kl_divergence([np.inf, 1.0], [1.0, 1.0]) == np.inf
    assert kl_divergence([0.5, 0.5], [np.inf, 0.5]) == -np.inf


def test_KL_SPECIAL_SUM_1_ieee_sums_of_special_terms():
    """KL-SPECIAL-SUM-1: +inf and -inf terms together give NaN; NaN wins; inf keeps its sign."""
    assert np.isnan(kl_divergence([0.5, 0.5], [0.0, np.inf]))
    assert np.isnan(kl_divergence([0.5, np.nan, 0.5], [0.0, 0.5, 0.5]))
    assert kl_divergence([0.5, 1e300, 0.5], [0.0, 1e-300, 0.5]) == np.inf
    # weights follow IEEE products: 0 * inf and inf * 0 are NaN
    assert np.isnan(kl_divergence([0.5, 0.5], [0.0, 0.5], weights=[0.0, 1.0]))
    assert np.isnan(kl_divergence([0.5, 0.5], [0.5, 0.5], weights=[np.inf, 1.0]))
    assert kl_divergence([0.5, 0.5], [0.25, 0.5], weights=[np.inf, 1.0]) == np.inf
    assert kl_divergence([0.5, 0.5], [0.25, 0.5], weights=[-np.inf, 1.0]) == -np.inf


def test_KL_EMPTY_1_empty_axis_sums_to_zero():
    """KL-EMPTY-1: a sum over no terms is 0; empty batch gives an empty result."""
    assert np.array_equal(kl_divergence(np.zeros((3, 0)), np.zeros((3, 0))), np.zeros(3))
    assert kl_divergence([], [], axis=None) == 0.0
    assert kl_divergence(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)


def test_finite_sum_beyond_float64_range_is_inf():
    """A finite exact value above the float64 range rounds to +inf (and the oracle agrees)."""
    p, q = [1.7e308, 1.7e308], [1e-300, 1e-300]
    assert kl_divergence(p, q) == np.inf == kl_exact(p, q)


def test_bad_inputs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="out of bounds"):
        kl_divergence([0.5, 0.5], [0.5, 0.5], axis=1)
    with pytest.raises(ValueError, match="broadcast"):
        kl_divergence([0.5, 0.5], [0.3, 0.3, 0.4])
    with pytest.raises(TypeError, match="complex"):
        kl_divergence([0.5j], [0.5])
    with pytest.raises(ValueError, match="repeats"):
        kl_divergence([[0.5]], [[0.5]], axis=(1, -1))


# ------------------------------------------------------------------- why the reference exists
def test_naive_formula_is_not_within_2ulp_on_near_equal_rows():
    """Demonstration (not a spec clause): sum(p*log(p/q)) in float64 misses by far more
    than 2 ulp where p ≈ q, while the reference does not."""
    e = 2.0 ** -45
    p = np.array([0.5, 0.5, 0.25, 0.25])
    q = np.array([0.5 + e, 0.5 - e, 0.25 - e, 0.25 + e])
    exact = kl_exact_mpf(p, q)[()]
    naive = float(np.sum(p * np.log(p / q)))
    assert ulp_error(naive, exact) > 1e6
    assert ulp_error(kl_divergence(p, q), exact) <= MAX_ULP


# ------------------------------------------------------------------- fast path and fallback
def test_fast_path_alone_is_accurate_and_rarely_falls_back():
    """Normalised rows (near-equal and unrelated) are proved accurate by the vectorised path
    alone: no row needs the mpmath fallback, and each is within 2 ulp."""
    rng = np.random.default_rng(23)
    rows_p, rows_q = [], []
    for delta in (1e-2, 1e-4, 1e-8, 1e-12, 1e-15):
        p, q = near_pair(rng, (4, 40), delta, True)
        rows_p.append(p)
        rows_q.append(q)
    rows_p.append(normalised(rng.random((4, 40))))
    rows_q.append(normalised(rng.random((4, 40))))
    P, Q = np.concatenate(rows_p), np.concatenate(rows_q)
    with np.errstate(all="ignore"):
        _, act = _special_rows(P, Q, None)
        v, ok = _fast_rows(P, Q, None, act)
    assert ok.all()
    assert_within_ulp(v, P, Q)


def test_fast_path_alone_is_accurate_on_the_benchmark_regimes(backend):
    """Both fast paths, without the mpmath fallback, certify every row of a small set
    mixing near-equal, unrelated, sparse, tiny, subnormal and unnormalised rows, and
    each certified value is within 2 ulp of the oracle."""
    rng = np.random.default_rng(31)
    p = normalised(rng.random((6, 30)) + 1e-3)
    q_near = normalised(p * (1 + 1e-11 * rng.standard_normal(p.shape)))
    q_far = normalised(rng.random((6, 30)) + 1e-3)
    sparse = normalised(p * (rng.random(p.shape) < 0.5) + 0.1 * (np.arange(30) == 0))
    P = np.concatenate([p, p, sparse, p * 1e-300, p * 2.0 ** -1030, p * 7.0])
    Q = np.concatenate([q_near, q_far, q_far, q_near * 1e-300, q_far * 2.0 ** -1030, q_far * 3])
    with np.errstate(all="ignore"):
        if backend == "numba":
            v, ok = _kernel.kl_rows(P, Q, None)
        else:
            _, act = _special_rows(P, Q, None)
            v, ok = _fast_rows(P, Q, None, act)
    assert ok.all()
    assert_within_ulp(v, P, Q)


# ------------------------------------------------------------------- the compiled kernel
needs_numba = pytest.mark.skipif(_kernel is None, reason="numba is not installed")


@needs_numba
def test_kernel_two_prod_and_two_sum_are_exact_on_hard_inputs(backend):
    """The kernel's TwoProd/TwoSum are error-free: no FMA contraction, no reassociation
    (either would make p + e differ from the exact product or sum)."""
    from fractions import Fraction
    rng = np.random.default_rng(37)
    a = np.concatenate([1 + rng.integers(1, 2**52, 200) * 2.0 ** -52,
                        [1 + 2.0 ** -52, 2.0 ** 27 + 1, 1 - 2.0 ** -53, 3.0 ** 33, 0.1]])
    b = np.concatenate([(1 + rng.integers(1, 2**52, 200) * 2.0 ** -52) * 2.0 ** rng.integers(-60, 60, 200),
                        [1 - 2.0 ** -52, 2.0 ** 27 - 1, 1 + 2.0 ** -52, 3.0 ** -20, 0.7]])
    for x, y in zip(a.tolist(), b.tolist()):
        p, e = _kernel.two_prod(x, y)
        assert p == x * y and Fraction(p) + Fraction(e) == Fraction(x) * Fraction(y), (x, y)
        s, e = _kernel.two_sum(x, -y)
        assert s == x - y and Fraction(s) + Fraction(e) == Fraction(x) - Fraction(y), (x, y)


@needs_numba
def test_kernel_frexp_and_pow2_match_the_library(backend):
    """The bit-level frexp/pow2 of the kernel agree with math.frexp/ldexp, subnormals too."""
    for x in [1.0, 0.75, 3e-310, 5e-324, 2.0 ** -1022, 1.7e308, 0.1, 2.0 ** -1023 * 3]:
        assert _kernel._frexp(x) == math.frexp(x), x
    for k in [-1074, -1060, -1023, -1022, 0, 1023, -1075, -2000]:
        assert _kernel._pow2(k) == math.ldexp(1.0, k), k
    assert _kernel._pow2(1024) == math.inf


# ------------------------------------------------------------------- Hypothesis
@st.composite
def regime_rows(draw):
    """(p, q) rows drawn across the regimes: near-equal at any relative distance, unrelated,
    zeros in p, tiny/subnormal/huge scales, normalised or not."""
    n = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = rng.random(n) + draw(st.sampled_from([0.0, 0.01]))
    if draw(st.booleans()):
        p = p * (rng.random(n) < 0.6)                   # zeros in p (KL-ZERO-1)
    log_delta = draw(st.floats(-16.5, 0.5))
    kind = draw(st.sampled_from(["near", "near", "far", "mixed"]))
    q = p * (1 + 10.0 ** log_delta * rng.standard_normal(n))
    if kind == "far":
        q = rng.random(n) + 1e-3
    elif kind == "mixed":
        q = np.where(rng.random(n) < 0.5, q, rng.random(n) + 1e-3)
    q = np.abs(q) + (q == 0) * 1e-3
    if draw(st.booleans()):
        p, q = normalised(p) if p.sum() > 0 else p, normalised(q)
    scale = draw(st.sampled_from([1.0, 1.0, 1e-300, 2.0 ** -1060, 1e200, 2.0 ** 900]))
    return p * scale, q * scale


@given(regime_rows())
def test_hypothesis_regime_rows_within_2ulp(pq):
    """KL-DEF-2 on generated rows in every regime."""
    p, q = pq
    assert_within_ulp(kl_divergence(p, q), p, q)


finite_entry = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e308,
                                                 allow_subnormal=True, exclude_min=True))


@given(st.lists(st.tuples(finite_entry, finite_entry), min_size=1, max_size=8),
       st.one_of(st.none(), st.floats(-4, 4)))
def test_hypothesis_arbitrary_nonnegative_floats_within_2ulp(pairs, weight):
    """KL-DEF-2 on arbitrary non-negative float64 pairs (any magnitudes, zeros, subnormals)."""
    p = np.array([a for a, _ in pairs])
    q = np.array([b for _, b in pairs])
    w = None if weight is None else np.linspace(weight, 1.0, p.size)
    assert_within_ulp(kl_divergence(p, q, weights=w), p, q, weights=w)


@given(st.lists(st.floats(1e-300, 1.0), min_size=1, max_size=16), st.integers(0, 2**32 - 1))
def test_hypothesis_zero_iff_equal_and_permutation_invariant(row, seed):
    """0 exactly when P == Q; the value does not depend on the order of categories."""
    p = np.array(row)
    assert kl_divergence(p, p) == 0.0
    rng = np.random.default_rng(seed)
    q = p * (1 + 1e-9 * rng.standard_normal(p.size))
    perm = rng.permutation(p.size)
    a, b = kl_divergence(p, q), kl_divergence(p[perm], q[perm])
    assert ulp_error(a, kl_exact_mpf(p, q)[()]) <= MAX_ULP
    assert ulp_error(b, kl_exact_mpf(p, q)[()]) <= MAX_ULP

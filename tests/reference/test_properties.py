"""Mathematical properties of the reference family (Hypothesis), SPEC.md §1, §4, §5."""
import math

import numpy as np
from hypothesis import assume, example, given, strategies as st

from klconform.case import REDUCTIONS, Case
from klconform.reference import Point, canonical, evaluate

import _mpfamily as mpf

U64 = 2.0**-53


@st.composite
def rows(draw, n=None, zeros=True):
    """A probability row (normalised in float64 as well as it goes), zeros optional."""
    n = n or draw(st.integers(1, 12))
    w = np.array(draw(st.lists(st.floats(1e-6, 1.0) if not zeros else
                               st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),
                               min_size=n, max_size=n)))
    assume(w.sum() > 0)
    return w / w.sum()


@st.composite
def pairs(draw, zeros_in_p=True):
    n = draw(st.integers(1, 12))
    p = draw(rows(n, zeros=zeros_in_p))
    q = draw(rows(n, zeros=False))
    if draw(st.booleans()):  # near-equal pairs, where cancellation matters
        q = p * (1 + np.array(draw(st.lists(st.floats(-1e-9, 1e-9), min_size=n, max_size=n))))
        assume(np.all(q > 0) or np.all((q > 0) | (p == 0)))
        q = np.where(q > 0, q, 1e-3)
    return p, q


def kl(p, q, **kw):
    kw.setdefault("reduction", "distribution")
    return evaluate(Case(target=np.atleast_2d(p), pred=np.atleast_2d(q), pred_kind="prob",
                         grad=False, **kw))


@given(pairs())
def test_gibbs_inequality(pq):
    """KL-DEF-1: KL ≥ Σp·log(Σp/Σq) (log-sum inequality; ≥ 0 when both sum to 1)."""
    p, q = pq
    e = kl(p, q)
    floor = p.sum() * math.log(p.sum() / q.sum())
    assert e.value[0] >= floor - e.bound[0]
    if p.sum() == 1.0 and q.sum() == 1.0:
        assert e.value[0] >= -e.bound[0]


@given(rows())
def test_zero_iff_equal(p):
    """KL-DEF-2: exactly 0 when P == Q, in every encoding; > 0 for a normalised different Q."""
    assert kl(p, p).value[0] == 0.0
    pos = p[p > 0]
    c = Case(target=np.log(pos), pred=np.log(pos), target_kind="logprob", reduction="sum", grad=False)
    assert evaluate(c).value == 0.0
    if p.size > 1 and np.count_nonzero(p) > 1:
        q = np.roll(np.where(p > 0, p, 0.0) + 0.5 / p.size, 1)
        q = q / q.sum()
        if not np.allclose(q, p, rtol=1e-6):
            assert kl(p, q).value[0] > 0


@given(pairs(), st.randoms(use_true_random=False))
def test_permutation_invariance(pq, rnd):
    """KL-DEF-1: permuting categories (both rows alike) leaves KL unchanged."""
    p, q = pq
    perm = list(range(p.size))
    rnd.shuffle(perm)
    a, b = kl(p, q), kl(p[perm], q[perm])
    assert abs(a.value[0] - b.value[0]) <= 4 * U64 * abs(a.value[0])


@given(pairs(zeros_in_p=False), pairs(zeros_in_p=False))
def test_additivity_over_product_distributions(pq1, pq2):
    """KL-DEF-1: KL(P⊗P'‖Q⊗Q') = Σp'·KL(P‖Q) + Σp·KL(P'‖Q') (= the sum when normalised)."""
    (p1, q1), (p2, q2) = pq1, pq2
    P, Q = np.outer(p1, p2).ravel(), np.outer(q1, q2).ravel()
    joint = kl(P, Q, reduction="sum").value
    parts = p2.sum() * kl(p1, q1).value[0] + p1.sum() * kl(p2, q2).value[0]
    # the outer products round (≤ u relative per entry): each term moves by ≤ u·p(|log p/q|+1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slack = 6 * U64 * np.sum(P * (np.abs(np.log(P / Q)) + 1))
    assert abs(joint - parts) <= slack + 4 * U64 * abs(parts)


@st.composite
def batches(draw, zeros=True):
    b = draw(st.integers(1, 4))
    c = draw(st.integers(1, 5))
    p = np.stack([draw(rows(c, zeros=zeros)) for _ in range(b)])
    q = np.stack([draw(rows(c, zeros=False)) for _ in range(b)])
    return p, q


@given(batches())
def test_reduction_relations(pq):
    """KL-RED-SUM KL-RED-MEAN KL-RED-BATCHMEAN KL-RED-SOBS KL-RED-SAMPLE-SUM KL-RED-SAMPLE-MEAN
    KL-RED-DIST KL-RED-NONE: all reductions are the same sum with their divisors."""
    p, q = pq
    b, c = p.shape
    v = {r: evaluate(Case(target=p, pred=q, pred_kind="prob", reduction=r, grad=False)).value
         for r in REDUCTIONS}
    total = v["sum"]
    tol = 8 * U64 * (np.sum(np.abs(v["none"])) + abs(total)) + 1e-300
    assert abs(v["batchmean"] * b - total) <= tol
    assert abs(v["mean"] * (b * c) - total) <= tol
    assert abs(v["distribution_mean"] * b - total) <= tol
    assert abs(v["sample_sum"].sum() - total) <= tol
    np.testing.assert_allclose(v["sample_mean"] * c, v["sample_sum"], rtol=4 * U64, atol=1e-300)
    np.testing.assert_allclose(v["distribution"], v["sample_sum"], rtol=4 * U64, atol=1e-300)
    assert abs(np.sum(v["none"]) - total) <= tol


@given(batches(), st.floats(0.1, 10), st.floats(0.1, 10))
def test_weights_are_linear(pq, alpha, beta):
    """KL-WEIGHT-SCALAR KL-WEIGHT-ELEMENT: the loss is linear in sample weights."""
    p, q = pq
    b = p.shape[0]
    w1 = np.linspace(0.5, 2.0, b)[:, None]
    w2 = np.linspace(3.0, 1.0, b)[:, None]
    base = Case(target=p, pred=q, pred_kind="prob", reduction="distribution_mean", grad=False)
    v = lambda w: evaluate(base.replace(sample_weight=w)).value  # noqa: E731
    mix = v(alpha * w1 + beta * w2)
    lin = alpha * v(w1) + beta * v(w2)
    scale = alpha * abs(v(w1)) + beta * abs(v(w2)) + np.sum(np.abs(
        evaluate(base.replace(reduction="none")).value)) * (alpha * 2 + beta * 3)
    assert abs(mix - lin) <= 16 * U64 * scale
    assert evaluate(base.replace(weight=alpha)).value == \
        pytest_approx(alpha * evaluate(base).value)


def pytest_approx(x):
    import pytest
    return pytest.approx(x, rel=4 * U64, abs=1e-300)


@st.composite
def any_case(draw):
    """Positive small cases over every encoding and reduction, for the oracle check."""
    p, q = draw(batches(zeros=False))
    tk = draw(st.sampled_from(["prob", "logprob"]))
    ik = draw(st.sampled_from(["prob", "logprob", "logits"]))
    red = draw(st.sampled_from(REDUCTIONS))
    pred = q if ik == "prob" else np.log(q) + (draw(st.floats(-50, 50)) if ik == "logits" else 0.0)
    return Case(target=np.log(p) if tk == "logprob" else p, pred=pred, target_kind=tk,
                pred_kind=ik, reduction=red, grad=False)


_SWAPPED_LOG = Case(target=np.array([[0.5, 0.5], [0.5, 0.5]]), pred_kind="logprob", reduction="none",
                    pred=np.log(np.array([[0.5, 0.5], [0.5714285714285714, 0.4285714285714286]])), grad=False)


@given(any_case(), st.sampled_from([None, ("target_log_eps", 1e-12), ("clip_both", 1e-7)]),
       st.booleans())
# KL-ARG-ORDER: the swapped first side is the float64 value of exp(log q) (exp(log 0.5) is
# 0.5(1 + 2.3e-17) exactly, 0.5 as a float64 value), its log the given log q
@example(_SWAPPED_LOG, ("target_log_eps", 1e-12), True)
@example(_SWAPPED_LOG, ("clip_both", 1e-7), True)
def test_family_values_agree_with_oracle(case, eps, swap):
    """KL-FAM-1 KL-BOUND-5: every point's value is within max(2 ulp, B/16) of the 50-digit
    oracle (B: its float64 bound)."""
    point = Point(case.reduction, swap=swap,
                  **({} if eps is None else {"epsilon": eps[0], "eps": eps[1]}))
    e = evaluate(case, point)
    want = mpf.value(case, point)
    two_ulp = 2 * np.spacing(np.abs(np.asarray(want, dtype=np.float64)))
    assert np.all(np.abs(e.value - want) <= np.maximum(e.bound / 16, two_ulp))
    assert canonical(case).reduction == case.reduction

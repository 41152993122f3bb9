"""Analytic gradients (SPEC.md §8) against 50-digit central differences of the exact loss.

The oracle (_mpfamily) is written from the spec's formulas, independently of reference/.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from klconform.case import REDUCTIONS, Case
from klconform.reference import Point, evaluate, gradients
from klconform.reference.variants import UndefinedCase

import _mpfamily as mpf

# clip kinks at eps and 1 stay outside: 0.05 is the clip_both eps of the variant test
_POSITIVE = st.floats(0.02, 0.95).filter(lambda x: x != 0.05)


def _close(ref, fd, scale_rtol=1e-12):
    scale = max(1.0, float(np.max(np.abs(fd)))) if fd.size else 1.0
    assert np.all(np.abs(ref - fd) <= scale_rtol * scale), (ref, fd)


@st.composite
def grad_cases(draw, kinds=("prob", "logprob", "logits"), targets=("prob", "logprob")):
    """Small positive cases: every input kind, target kind and reduction, weights optional."""
    shape = draw(st.sampled_from([(3,), (2, 3), (2, 1, 3)]))
    p = np.array(draw(st.lists(_POSITIVE, min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape))))).reshape(shape)
    q = np.array(draw(st.lists(_POSITIVE, min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape))))).reshape(shape)
    ik = draw(st.sampled_from(kinds))
    tk = draw(st.sampled_from(targets))
    target = np.log(p) if tk == "logprob" else p
    pred = q if ik == "prob" else np.log(q) * (3.0 if ik == "logits" else 1.0)
    red = draw(st.sampled_from([r for r in REDUCTIONS
                                if not (len(shape) == 1 and r.startswith("sample"))]))
    sw = None
    if draw(st.booleans()) and len(shape) > 1:
        sw = np.array(draw(st.lists(st.floats(0.25, 4.0), min_size=shape[0],
                                    max_size=shape[0]))).reshape((shape[0],) + (1,) * (len(shape) - 1))
    weight = draw(st.sampled_from([None, 0.5, 3.0]))
    return Case(target=target, pred=pred, target_kind=tk, pred_kind=ik, reduction=red,
                sample_weight=sw, weight=weight)


@given(grad_cases())
def test_canonical_gradients_match_finite_differences(case):
    """KL-GRAD-1 KL-GRAD-RED KL-GRAD-PRED-PROB KL-GRAD-PRED-LOGPROB KL-GRAD-PRED-LOGITS
    KL-GRAD-TARGET-PROB KL-GRAD-TARGET-LOGPROB: every input kind and reduction."""
    point = Point(reduction=case.reduction)
    g = gradients(case, point)
    for which in ("pred", "target"):
        assert g[which].shape == getattr(case, which).shape
        _close(g[which], mpf.fd_gradient(case, point, which))


@given(grad_cases(), st.sampled_from([("target_log_eps", 1e-3), ("clip_both", 0.05)]),
       st.booleans())
def test_variant_gradients_match_finite_differences(case, eps, swap):
    """KL-GRAD-EPS KL-ARG-ORDER: epsilon variants and the swapped member differentiate their
    own formula. (Clip boundaries are avoided: entries are ≥ 0.02, eps ∉ data.)"""
    point = Point(reduction=case.reduction, epsilon=eps[0], eps=eps[1], swap=swap)
    g = gradients(case, point)
    for which in ("pred", "target"):
        _close(g[which], mpf.fd_gradient(case, point, which))


def test_broadcast_gradient_sums_over_broadcast_dims():
    """KL-GRAD-1: a (3,) prediction broadcast against (2, 3) gets the sum of both rows."""
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    q = np.array([0.25, 0.25, 0.5])
    case = Case(target=p, pred=np.log(q), reduction="sum")
    g = evaluate(case).grads["pred"]
    np.testing.assert_allclose(g, -p.sum(axis=0), rtol=0, atol=1e-16)


def test_gradient_bounds_cover_float32_model_algorithm():
    """KL-BOUND-3: the model algorithm run in float32 lands within the gradient bound."""
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(50), size=4).astype(np.float32).astype(np.float64)
    q = rng.dirichlet(np.ones(50), size=4).astype(np.float32).astype(np.float64)
    case = Case(target=p, pred=q, dtype="float32", pred_kind="prob", reduction="batchmean")
    e = evaluate(case)
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    d = np.float32(1 / 4)
    g_pred = -(p32 / q32) * d
    g_target = (np.log(p32) - np.log(q32) + np.float32(1)) * d
    assert np.all(np.abs(g_pred - e.grads["pred"]) <= e.grad_bounds["pred"])
    assert np.all(np.abs(g_target - e.grads["target"]) <= e.grad_bounds["target"])
    assert np.all(e.grad_bounds["pred"] < 1e-4 * np.abs(e.grads["pred"]) + 1e-9)


def test_gradient_conventions_at_zero_and_minus_inf():
    """KL-GRAD-ZERO KL-GRAD-INF: p = 0 gives zero prediction gradients (also at q = 0); the
    target's right derivative is −∞ (q > 0) or NaN (q = 0); p > 0, q = 0 gives −∞ / −p."""
    p = np.array([0.0, 0.0, 0.5, 0.5])
    q = np.array([0.5, 0.0, 0.0, 0.5])
    prob = evaluate(Case(target=p, pred=q, pred_kind="prob", reduction="sum"))
    assert prob.grads["pred"].tolist() == [0.0, 0.0, -np.inf, -1.0]
    gt = prob.grads["target"]
    assert gt[0] == -np.inf and np.isnan(gt[1]) and gt[2] == np.inf
    with np.errstate(divide="ignore"):
        logq = np.log(q)
        logp = np.log(p)
    lg = evaluate(Case(target=logp, pred=logq, target_kind="logprob", reduction="sum"))
    assert lg.grads["pred"].tolist() == [0.0, 0.0, -0.5, -0.5]
    assert lg.grads["target"][0] == 0.0 and np.isnan(lg.grads["target"][1])
    assert np.all(lg.grad_bounds["pred"] >= 0)
    logits = evaluate(Case(target=p, pred=np.array([0.0, -np.inf, -np.inf, 0.0]),
                           pred_kind="logits", reduction="sum"))
    # q = softmax = [.5, 0, 0, .5]; G = q·Σp − p
    np.testing.assert_allclose(logits.grads["pred"], [0.5, 0.0, -0.5, 0.0], atol=1e-16)


def test_clip_gradient_is_zero_outside_interval():
    """KL-GRAD-EPS: clip_both passes gradients on [eps, 1] only (tf.clip_by_value)."""
    p = np.array([0.0, 0.5, 0.5])
    q = np.array([0.5, 1e-9, 0.5])
    case = Case(target=p, pred=q, pred_kind="prob", reduction="sum")
    g = gradients(case, Point("sum", epsilon="clip_both", eps=1e-7))
    assert g["target"][0] == 0.0 and g["pred"][1] == 0.0
    assert g["pred"][2] == pytest.approx(-1.0) and g["pred"][0] == pytest.approx(-1e-7 / 0.5)


def test_no_gradients_when_case_says_so():
    """KL-GRAD-1: grads only when the case asks for them."""
    case = Case(target=np.array([0.5, 0.5]), pred=np.log([0.5, 0.5]), reduction="sum", grad=False)
    assert evaluate(case).grads == {}


def test_undefined_reduction_raises_for_gradients_too():
    """KL-RED-0D applies to gradients as well as values."""
    with pytest.raises(UndefinedCase):
        gradients(Case(target=np.array(0.5), pred=np.array(-1.0), reduction="sample_sum"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_logits_model_algorithm_within_value_and_gradient_bounds(dtype):
    """KL-BOUND-2 KL-BOUND-3 KL-INPUT-LOGITS: max-shifted log_softmax, KL and the analytic
    backward run in the dtype itself land within the bounds (batchmean)."""
    from klconform.reference.dtypes import round_to
    f = getattr(np, dtype)
    rng = np.random.default_rng(5)
    for _ in range(25):
        n, b = int(rng.integers(2, 120)), int(rng.integers(1, 4))
        p = round_to(rng.dirichlet(np.ones(n) * rng.uniform(0.1, 2), size=b), dtype)
        z = round_to(rng.normal(0, rng.uniform(0.1, 20), (b, n)), dtype)
        e = evaluate(Case(target=p, pred=z, dtype=dtype, pred_kind="logits", reduction="batchmean"))
        zz, pp = z.astype(f), p.astype(f)
        m = zz.max(-1, keepdims=True)
        lq = (zz - m) - np.log(np.sum(np.exp(zz - m), -1, keepdims=True, dtype=f))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(pp == 0, f(0), pp * (np.log(pp) - lq))
            g_target = (np.log(pp) - lq + f(1)) / f(b)
        value = np.cumsum(t.ravel(), dtype=f)[-1] / f(b)
        g_pred = (np.exp(lq) * pp.sum(-1, keepdims=True) - pp) / f(b)
        assert abs(float(value) - e.value) <= e.bound
        assert np.all(np.abs(g_pred - e.grads["pred"]) <= e.grad_bounds["pred"])
        pos = pp > 0  # at p = 0 both sides are -inf (KL-GRAD-ZERO), checked elsewhere
        assert np.all(np.abs(g_target[pos] - e.grads["target"][pos]) <= e.grad_bounds["target"][pos])

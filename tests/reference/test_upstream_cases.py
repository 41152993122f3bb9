"""The covered frameworks' own upstream tests, reproduced by the reference at the point the
adapter is documented or recorded at, and the SPEC cells those tests showed the reference
had wrong.  Expected values come from the upstream tests themselves (their numbers, or
their numpy oracles re-typed here), never from reference/.
"""
import numpy as np
import pytest

from klconform.case import Case
from klconform.reference import Point, evaluate

INF, NAN = np.inf, np.nan


def test_scipy_rel_entr_gh_20710_near_equal_inputs():
    """KL-NEG-INF KL-BOUND-5: scipy/special/tests/test_basic.py
    ``test_rel_entr_gh_20710_near_zero`` (inputs that nearly cancel, expected values from
    ``x * mpmath.log(x / y)`` at 30 digits, rtol 1e-13), at scipy.rel_entr's point
    ``Point(none, negative="inf")`` as at the canonical one: log p − log q must not cancel
    away the tiny log-ratio (it did at every non-canonical point: 2e-7 relative)."""
    x = np.array([0.9456657713430001, 0.48066098564791515, 0.786048657854401])
    y = np.array([0.9456657713430094, 0.48066098564794774, 0.7860486578542367])
    want = np.array([-9.325873406851269e-15, -3.258504577274724e-14, 1.6431300764454033e-13])
    case = Case(target=x, pred=y, pred_kind="prob", reduction="none")
    for point in (None, Point(reduction="none", negative="inf"), Point(reduction="none", zero_inf="nan"),
                  Point(reduction="none", negative="inf", epsilon="clip_both", eps=1e-7)):
        got = evaluate(case, point).value
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, err_msg=getattr(point, "name", "canonical"))
    # the same cancellation through a logprob target (both logs then given): exact subtraction
    lcase = Case(target=np.log(x), pred=np.log(y), target_kind="logprob", reduction="none")
    got = evaluate(lcase, Point(reduction="none", negative="inf")).value
    exact = np.exp(np.log(x)) * (np.log(x) - np.log(y))
    np.testing.assert_allclose(got, exact, rtol=1e-12)


def _paddle_kldiv_loss(x, target, reduction):
    """Paddle's own numpy oracle, test/legacy_test/test_kldiv_loss_op.py ``kldiv_loss``
    (re-typed): the term where target >= 0, else 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        output = target * (np.log(target) - x)
    loss = np.where(target >= 0, output, np.zeros_like(x))
    if reduction == "batchmean":
        return loss.sum() / x.shape[0] if len(x.shape) > 0 else loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


@pytest.mark.parametrize("shape", [(5, 20), (3, 4, 5, 6)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_paddle_kldiv_loss_op_cases_at_negative_zero(shape, reduction):
    """KL-NEG-ZERO KL-RED-BATCHMEAN: Paddle's test_kldiv_loss_op.py draws x and target from
    U(-10, 10) (about half the targets negative) and expects its oracle's values; the
    reference reproduces them at ``Point(reduction, negative="zero")`` (the canonical point
    gives NaN at every negative target, KL-INVALID-1).  Gradients: d/dx = −target/D where
    target > 0, 0 where target < 0 (Paddle's grad kernel, KLDivLossBackward)."""
    rng = np.random.default_rng(20710 + len(shape))
    x = rng.uniform(-10, 10, shape)
    target = rng.uniform(-10, 10, shape)
    assert (target < 0).any() and (target > 0).any()
    case = Case(target=target, pred=x, reduction=reduction)
    e = evaluate(case, Point(reduction=reduction, negative="zero"))
    want = _paddle_kldiv_loss(x, target, reduction)
    np.testing.assert_allclose(e.value, want, rtol=1e-12, atol=1e-12)
    assert "KL-NEG-ZERO" in e.clauses
    divisor = {"none": 1, "sum": 1, "mean": target.size, "batchmean": shape[0]}[reduction]
    np.testing.assert_allclose(e.grads["pred"], np.where(target > 0, -target, 0.0) / divisor, rtol=1e-14)
    assert np.isnan(evaluate(case).value).any()        # canonical: NaN where target < 0


def test_negative_zero_keeps_nan_and_negative_q_invalid():
    """KL-NEG-ZERO KL-INVALID-1: a negative p (−inf included) gives 0 and zero partials; a NaN
    p, a NaN or negative q keep the NaN term and partials."""
    case = Case(target=np.array([-0.5, -INF, NAN, 0.5, 0.5]), pred=np.array([0.2, 0.2, 0.2, -0.1, 0.5]),
                pred_kind="prob", reduction="none")
    e = evaluate(case, Point(reduction="none", negative="zero"))
    assert e.value[:2].tolist() == [0.0, 0.0]
    assert np.isnan(e.value[2:4]).all()
    assert e.value[4] == 0.0
    assert e.grads["pred"][:2].tolist() == [0.0, 0.0] and e.grads["target"][:2].tolist() == [0.0, 0.0]
    assert np.isnan(e.grads["pred"][2:4]).all() and np.isnan(e.grads["target"][2:4]).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean"])
def test_logprob_prediction_of_plus_inf_has_gradient_minus_p(dtype, reduction):
    """KL-GRAD-INF KL-GRAD-PRED-LOGPROB KL-INF-1: log q = +inf (q = +inf) with a finite
    p > 0: the value is −inf, ∂T/∂(log q) = −p (finite; SPEC-literal implementations give
    it), ∂T/∂p = log(p/q) + 1 = −inf; p = 0 there gives T = 0 and zero partials."""
    p = np.array([[0.25, 0.75], [0.0, 1.0]])
    log_q = np.array([[INF, -0.5], [INF, -0.25]])
    case = Case(target=p, pred=log_q, dtype=dtype, reduction=reduction)
    e = evaluate(case)
    d = {"none": 1, "sum": 1, "batchmean": 2}[reduction]
    np.testing.assert_array_equal(e.grads["pred"], -p / d)
    assert e.grads["target"][0, 0] == -INF
    if reduction == "none":
        assert e.value[0, 0] == -INF and e.value[1, 0] == 0.0
    else:
        assert e.value == -INF
    # the generalised term's ∂T/∂(log q) = q − p is +inf there, and still finite elsewhere
    g = evaluate(case, Point(reduction=reduction, generalised=True)).grads["pred"]
    assert g[0, 0] == INF and np.isfinite(g[0, 1])

"""SPEC.md §11: the generalised KL, normalised inputs and the scipy.special convention for
negative entries, against the 50-digit oracle (_mpfamily, written from the spec text) and
against the clauses' own special-value tables."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, strategies as st

from klconform.case import Case
from klconform.reference import Point, evaluate, gradients
from klconform.reference.variants import UndefinedCase

import _mpfamily as mpf
from test_gradients import _close, grad_cases

INF, NAN = np.inf, np.nan
NEW_POINTS = st.sampled_from([
    {"generalised": True}, {"normalise": True}, {"generalised": True, "normalise": True},
    {"generalised": True, "swap": True}, {"normalise": True, "epsilon": "target_log_eps", "eps": 1e-3},
    {"generalised": True, "epsilon": "clip_both", "eps": 0.015}, {"normalise": True, "swap": True},
])


def _point(case, fields):
    return Point(reduction=case.reduction, **fields)


@given(grad_cases(), NEW_POINTS)
def test_values_match_the_oracle_within_the_reference_accuracy(case, fields):
    """KL-GEN-1 KL-NORM-1 KL-FAM-2 KL-BOUND-5 KL-BOUND-6: every encoding, reduction and
    weight, within max(2 ulp, B_float64 / 16) of the 50-digit value."""
    point = _point(case, fields)
    e = evaluate(case, point)
    want = mpf.value(case, point)
    tol = np.maximum(2 * np.spacing(np.abs(want)), e.bound / 16)
    assert np.all(np.abs(e.value - want) <= tol), (point.name, e.value, want, e.bound)
    assert "KL-FAM-2" in e.clauses


@given(grad_cases(), NEW_POINTS)
def test_gradients_match_finite_differences(case, fields):
    """KL-GRAD-GEN KL-GRAD-NORM: through the generalised term and the normalisation, every
    encoding (logits included), broadcast and weighted."""
    point = _point(case, fields)
    g = gradients(case, point)
    for which in ("pred", "target"):
        assert g[which].shape == getattr(case, which).shape
        _close(g[which], mpf.fd_gradient(case, point, which), scale_rtol=1e-11)


def _gen(p, q, **kw):
    c = Case(np.array(p, dtype=float), np.array(q, dtype=float), pred_kind="prob", reduction="none")
    return evaluate(c, Point(reduction="none", generalised=True, **kw))


def test_KL_GEN_2_zeros_and_infinities():
    """KL-GEN-2 (scipy.special.kl_div's table): p = 0 -> q; p > 0, q = 0 -> +inf; one side
    +inf -> +inf; both +inf -> NaN; P == Q -> exactly 0."""
    e = _gen([0.0, 0.0, 0.0, 0.5, INF, 0.5, INF, 0.3], [0.25, 0.0, INF, 0.0, 0.5, INF, INF, 0.3])
    np.testing.assert_array_equal(e.value, [0.25, 0.0, INF, INF, INF, INF, NAN, 0.0])
    assert {"KL-GEN-1", "KL-GEN-2", "KL-ZERO-1"} <= set(e.clauses)


def test_KL_GEN_1_equals_canonical_plus_q_minus_p_and_is_nonnegative():
    """KL-GEN-1: T_gen = T + q - p; >= 0; on normalised rows the distribution sums agree."""
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(5), 4), rng.dirichlet(np.ones(5), 4)
    c = Case(p, q, pred_kind="prob", reduction="none")
    gen = evaluate(c, Point("none", generalised=True)).value
    can = evaluate(c).value
    np.testing.assert_allclose(gen, can + q - p, rtol=0, atol=1e-15)
    assert np.all(gen >= 0)
    cd = Case(p, q, pred_kind="prob", reduction="distribution")
    np.testing.assert_allclose(evaluate(cd, Point("distribution", generalised=True)).value,
                               evaluate(cd).value, rtol=0, atol=1e-15)


@pytest.mark.parametrize("generalised", [False, True])
def test_KL_NEG_INF_negative_entries_are_inf_nan_stays_nan(generalised):
    """KL-NEG-INF: negative p or q -> +inf (not NaN, KL-INVALID-1); NaN -> NaN; gradients NaN."""
    p, q = [-0.5, 0.5, 0.0, NAN, -1.0], [0.5, -0.5, -0.5, -0.5, NAN]
    c = Case(np.array(p), np.array(q), pred_kind="prob", reduction="none")
    e = evaluate(c, Point("none", generalised=generalised, negative="inf"))
    np.testing.assert_array_equal(e.value, [INF, INF, INF, NAN, NAN])
    assert "KL-NEG-INF" in e.clauses and "KL-INVALID-1" not in e.clauses
    assert np.all(np.isnan(e.grads["pred"])) and np.all(np.isnan(e.grads["target"]))
    canonical = evaluate(c, Point("none", generalised=generalised))
    assert np.all(np.isnan(canonical.value)) and "KL-INVALID-1" in canonical.clauses


def test_KL_NORM_1_divides_by_class_sums_on_the_broadcast_shape():
    """KL-NORM-1: unnormalised rows give the KL of the normalised rows; a scale of P or Q
    changes nothing; a (3,) Q broadcast against (2, 3) is normalised per row of S."""
    p = np.array([[2.0, 1.0, 1.0], [0.1, 0.1, 0.2]])
    q = np.array([1.0, 2.0, 1.0])
    c = Case(p, q, pred_kind="prob", reduction="distribution")
    e = evaluate(c, Point("distribution", normalise=True))
    ph = p / p.sum(axis=1, keepdims=True)
    qh = q / q.sum()
    np.testing.assert_allclose(e.value, np.sum(ph * np.log(ph / qh), axis=1), rtol=1e-15)
    c2 = Case(7 * p, 0.5 * q, pred_kind="prob", reduction="distribution")
    np.testing.assert_allclose(evaluate(c2, Point("distribution", normalise=True)).value, e.value, rtol=1e-15)
    assert "KL-NORM-1" in e.clauses


def test_KL_NORM_1_log_encodings_normalise_in_log_space():
    """KL-NORM-1: a logprob target and prediction are normalised like softmax of the logs."""
    t = np.log(np.array([[2.0, 1.0, 1.0]]))
    lq = np.log(np.array([[1.0, 3.0, 4.0]]))
    c = Case(t, lq, target_kind="logprob", pred_kind="logprob", reduction="distribution")
    got = evaluate(c, Point("distribution", normalise=True)).value
    cp = Case(np.exp(t), np.exp(lq), pred_kind="prob", reduction="distribution")
    np.testing.assert_allclose(got, evaluate(cp, Point("distribution", normalise=True)).value, rtol=1e-15)


def test_KL_NORM_2_ieee_normalisation_specials():
    """KL-NORM-2: a zero row is NaN (0/0); a +inf entry is NaN, its row-mates 0; the zero
    conventions then apply to the normalised values."""
    c = Case(np.array([[0.0, 0.0], [INF, 1.0], [0.0, 2.0]]), np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 1.0]]),
             pred_kind="prob", reduction="none")
    e = evaluate(c, Point("none", normalise=True))
    assert np.all(np.isnan(e.value[0])) and np.isnan(e.value[1, 0]) and e.value[1, 1] == 0.0
    np.testing.assert_allclose(e.value[2], [0.0, np.log(2.0)], rtol=1e-15)
    assert "KL-NORM-2" in e.clauses


def test_KL_NORM_1_undefined_on_0d():
    """KL-NORM-1: no class axis on a 0-D case."""
    with pytest.raises(UndefinedCase) as err:
        evaluate(Case(np.array(0.5), np.array(0.25), pred_kind="prob", reduction="none"), Point("none", normalise=True))
    assert err.value.clause == "KL-NORM-1"


def test_KL_FAM_2_defaults_names_and_json():
    """KL-FAM-2: defaults are canonical; names label the new fields; JSON round-trips and
    older JSON (without the fields) still loads."""
    pt = Point("distribution", generalised=True, normalise=True, negative="inf")
    assert pt.name == "distribution+generalised+normalised+negative=inf"
    assert Point.from_json(pt.to_json()) == pt
    old = {k: v for k, v in Point("sum").to_json().items() if k not in ("generalised", "normalise", "negative")}
    assert Point.from_json(old) == Point("sum")
    with pytest.raises(ValueError):
        Point("sum", negative="clip")
    assert dataclasses.replace(pt, generalised=False, normalise=False, negative="nan") == Point("distribution")


def test_KL_BOUND_6_float32_model_algorithm_within_bounds():
    """KL-BOUND-6: the straightforward float32 computation of the §11 points (normalise,
    generalised term, sum) lands within the value bound and the gradient bound."""
    rng = np.random.default_rng(11)
    p = (rng.random((4, 30)) * 3).astype(np.float32).astype(np.float64)
    q = (rng.random((4, 30)) * 3 + 1e-3).astype(np.float32).astype(np.float64)
    c = Case(p, q, dtype="float32", pred_kind="prob", reduction="sum")
    pt = Point("sum", generalised=True, normalise=True)
    e = evaluate(c, pt)
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    ph, qh = p32 / p32.sum(axis=1, keepdims=True), q32 / q32.sum(axis=1, keepdims=True)
    model = np.sum(ph * np.log(ph / qh) - ph + qh, dtype=np.float32)
    assert abs(float(model) - float(e.value)) <= float(e.bound), (model, e.value, e.bound)
    # gradient w.r.t. q in float32: (g - sum(g qh)) / sum(q), g = 1 - ph/qh
    g = 1 - ph / qh
    gq = (g - np.sum(g * qh, axis=1, keepdims=True)) / q32.sum(axis=1, keepdims=True)
    assert np.all(np.abs(gq.astype(np.float64) - e.grads["pred"]) <= e.grad_bounds["pred"])


def test_KL_BOUND_6_subnormal_normalised_value_is_within_bound():
    """KL-BOUND-6: a normalised value that lands in the subnormal range (q = 5e-324 divided
    by a sum just below 1) carries an absolute error η; the float64 model algorithm (divide,
    then p (log p - log q)) stays within the bound."""
    p = np.array([0.499695, 0.499695, 0.00061])
    q = np.array([0.999166219, 4.16890367e-4, 5e-324])
    c = Case(p, q, pred_kind="prob", reduction="distribution")
    e = evaluate(c, Point("distribution", normalise=True))
    ph, qh = p / p.sum(), q / q.sum()
    model = np.sum(ph * (np.log(ph) - np.log(qh)))
    assert abs(model - float(e.value)) <= float(e.bound)

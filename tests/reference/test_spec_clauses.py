"""One or more tests per SPEC.md clause; each test names the clause ids it checks.

Expected values come from the spec text (hand-computed) or from the 50-digit oracle
written from the spec (_mpfamily), never from reference/ itself.
"""
import math

import numpy as np
import pytest

from klconform.case import REDUCTIONS, Case
from klconform.reference.dtypes import round_to
from klconform.reference import Point, canonical, evaluate
from klconform.reference.spec import SPEC_PATH, clause_text
from klconform.reference.variants import UndefinedCase

import _mpfamily as mpf

INF, NAN = np.inf, np.nan
P = np.array([[0.2, 0.5, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
Q = np.array([[0.3, 0.4, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4]])


def none_terms(p, q, **kw):
    kw.setdefault("pred_kind", "prob")
    with np.errstate(all="ignore"):
        return evaluate(Case(target=np.array(p, float), pred=np.array(q, float),
                             reduction="none", grad=False, **kw)).value


def _oracle_close(case, point=None, rtol=4e-16):
    point = point or canonical(case)
    got = evaluate(case, point).value
    want = mpf.value(case, point)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    return got


# ----------------------------------------------------------------------------- §1
def test_definition_on_given_values_without_normalisation():
    """KL-DEF-1 KL-DEF-2: Σ p log(p/q) on the values as given; unnormalised rows allowed
    (and may be negative); exactly 0 when P == Q."""
    v = _oracle_close(Case(target=P, pred=Q, pred_kind="prob", reduction="distribution"))
    assert v[0] == pytest.approx(0.0997934720914666, rel=1e-15)
    unnorm = evaluate(Case(target=np.array([0.5, 0.5]), pred=np.array([1.0, 1.0]),
                           pred_kind="prob", reduction="sum")).value
    assert unnorm == pytest.approx(math.log(0.5), rel=1e-15) and unnorm < 0
    assert evaluate(Case(target=P, pred=P, pred_kind="prob", reduction="sum")).value == 0.0


def test_argument_order_and_swap_member():
    """KL-ARG-1 KL-ARG-ORDER: P is the target; swap evaluates KL(Q‖P) of the same inputs."""
    case = Case(target=P, pred=Q, pred_kind="prob", reduction="distribution")
    swapped = evaluate(case, Point("distribution", swap=True)).value
    exchanged = evaluate(Case(target=Q, pred=P, pred_kind="prob", reduction="distribution")).value
    np.testing.assert_array_equal(swapped, exchanged)
    assert not np.allclose(swapped, evaluate(case).value)
    _oracle_close(case, Point("distribution", swap=True))


def test_framework_table_names_p_and_q_for_each_api():
    """KL-ARG-2: the table states P and Q for torch, MXNet and Keras APIs."""
    text = clause_text("KL-ARG-2")
    for api, p_arg in [("torch.nn.functional.kl_div", "`target`"),
                       ("mxnet.gluon.loss.KLDivLoss", "`label`"),
                       ("keras.losses.KLDivergence", "`y_true`"),
                       ("tf.keras.losses.KLDivergence", "`y_true`")]:
        row = next(line for line in text.split(" | |") if api in line) if " | |" in text else text
        assert api in text and p_arg in row


# ----------------------------------------------------------------------------- §2
def test_zero_target_contributes_zero():
    """KL-ZERO-1: 0·log(0/q) = 0 for q > 0, q = 0 and q = +inf."""
    assert none_terms([0.0, 0.0, 0.0], [0.5, 0.0, INF]).tolist() == [0.0, 0.0, 0.0]
    lg = evaluate(Case(target=np.array([-INF]), pred=np.array([-INF]), target_kind="logprob",
                       reduction="sum"))
    assert lg.value == 0.0 and "KL-ZERO-1" in lg.clauses


def test_positive_target_zero_prediction_is_infinite():
    """KL-ZERO-2: p > 0, q = 0 → +inf, in prob and log encodings."""
    assert none_terms([0.5], [0.0]).tolist() == [INF]
    e = evaluate(Case(target=np.array([0.5, 0.5]), pred=np.array([-INF, 0.0]), reduction="sum"))
    assert e.value == INF and e.bound == 0.0 and "KL-ZERO-2" in e.clauses


def test_zero_inf_nan_member_is_literal_ieee():
    """KL-ZERO-3: under zero_inf="nan", p = 0 with log q = −inf, or a −inf target
    log-probability, is NaN; other zeros stay 0."""
    nanpt = Point("none", zero_inf="nan")
    c1 = Case(target=np.array([0.0, 0.0]), pred=np.array([-INF, -1.0]), reduction="none")
    v = evaluate(c1, nanpt).value
    assert np.isnan(v[0]) and v[1] == 0.0
    c2 = Case(target=np.array([-INF]), pred=np.array([-1.0]), target_kind="logprob", reduction="none")
    assert np.isnan(evaluate(c2, nanpt).value[0]) and evaluate(c2).value[0] == 0.0
    assert "KL-ZERO-3" in evaluate(c1, nanpt).clauses


def test_invalid_entries_are_nan():
    """KL-INVALID-1: NaN or negative p or q → NaN; −0.0 is zero."""
    v = none_terms([-0.1, 0.5, NAN, 0.5, -0.0], [0.5, -0.5, 0.5, NAN, 0.5])
    assert np.all(np.isnan(v[:4])) and v[4] == 0.0
    assert np.isnan(evaluate(Case(target=np.array([0.5]), pred=np.array([NAN]),
                                  reduction="sum")).value)


def test_infinities_follow_limits():
    """KL-INF-1: p=+inf → +inf; q=+inf → −inf; both → NaN."""
    v = none_terms([INF, INF, 0.5, INF], [0.5, 0.0, INF, INF])
    assert v[0] == INF and v[1] == INF and v[2] == -INF and np.isnan(v[3])


def test_special_sums_follow_ieee():
    """KL-SPECIAL-SUM-1: +inf and −inf in one output → NaN; NaN poisons its output only."""
    c = Case(target=np.array([[INF, 0.5], [0.5, 0.5]]), pred=np.array([[0.5, INF], [0.5, 0.25]]),
             pred_kind="prob", reduction="distribution")
    v = evaluate(c).value
    assert np.isnan(v[0]) and v[1] == pytest.approx(0.5 * math.log(2))
    assert "KL-SPECIAL-SUM-1" in evaluate(c).clauses


def test_empty_sums_are_zero_and_empty_means_nan():
    """KL-EMPTY-1 KL-EMPTY-2."""
    empty = np.zeros((2, 0))
    d = evaluate(Case(target=empty, pred=empty, reduction="distribution"))
    assert d.value.tolist() == [0.0, 0.0] and "KL-EMPTY-1" in d.clauses
    assert evaluate(Case(target=empty, pred=empty, reduction="sum")).value == 0.0
    m = evaluate(Case(target=np.zeros((0, 3)), pred=np.zeros((0, 3)), reduction="mean"))
    assert np.isnan(m.value) and "KL-EMPTY-2" in m.clauses


# ----------------------------------------------------------------------------- §3
def test_encodings_agree_on_the_same_distributions():
    """KL-TARGET-PROB KL-TARGET-LOGPROB KL-INPUT-PROB KL-INPUT-LOGPROB KL-INPUT-LOGITS:
    P and Q given in every encoding give the oracle's value of that encoding."""
    for tk, target in [("prob", P), ("logprob", np.log(P))]:
        for ik, pred in [("prob", Q), ("logprob", np.log(Q)), ("logits", np.log(Q) + 7.0)]:
            case = Case(target=target, pred=pred, target_kind=tk, pred_kind=ik,
                        reduction="distribution")
            got = _oracle_close(case, rtol=2e-15)
            np.testing.assert_allclose(got, [0.0997934720914666, 0.25 * math.log(0.25**4 / (0.1 * 0.2 * 0.3 * 0.4))], rtol=1e-13)


def test_logits_special_rows():
    """KL-INPUT-LOGITS: NaN/+inf rows and all-(−inf) rows are NaN; a −inf logit is q = 0."""
    p = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    z = np.array([[NAN, 0.0], [INF, 0.0], [-INF, -INF], [0.0, -INF]])
    v = evaluate(Case(target=p, pred=z, pred_kind="logits", reduction="distribution")).value
    assert np.all(np.isnan(v[:3])) and v[3] == 0.0
    with pytest.raises(UndefinedCase, match="KL-INPUT-LOGITS"):
        evaluate(Case(target=np.ones((2, 3)) / 3, pred=np.zeros((3, 1))[:, 0],
                      pred_kind="logits", class_axis=0, reduction="sum"))


def test_broadcasting_equals_explicit_broadcast():
    """KL-SHAPE-1: results do not depend on which input was broadcast."""
    q = np.array([0.3, 0.4, 0.1, 0.2])
    a = evaluate(Case(target=P, pred=q, pred_kind="prob", reduction="distribution"))
    b = evaluate(Case(target=P, pred=np.broadcast_to(q, P.shape), pred_kind="prob",
                      reduction="distribution"))
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.grads["target"], b.grads["target"])


@pytest.mark.parametrize("reduction,shape", [
    ("none", (2, 3, 4)), ("distribution", (2, 3)), ("sum", ()), ("mean", ()), ("batchmean", ()),
    ("distribution_mean", ()), ("sample_sum", (3,)), ("sample_mean", (3,))])
def test_result_shapes(reduction, shape):
    """KL-SHAPE-2 (batch axis 1, class axis −1)."""
    x = np.full((2, 3, 4), 0.25)
    e = evaluate(Case(target=x, pred=x, pred_kind="prob", reduction=reduction, batch_axis=1))
    assert e.value.shape == shape and e.bound.shape == shape


def test_misread_encodings_use_the_bytes_as_the_other_kind():
    """KL-MISREAD-1: log-probs read as probs equal a prob case with the same bytes."""
    logq = np.log(Q)
    mis = evaluate(Case(target=P, pred=np.exp(logq), reduction="distribution"),
                   Point("distribution", pred_as="prob"))
    direct = evaluate(Case(target=P, pred=np.exp(logq), pred_kind="prob", reduction="distribution"))
    np.testing.assert_array_equal(mis.value, direct.value)
    np.testing.assert_array_equal(mis.grads["pred"], direct.grads["pred"])
    t = evaluate(Case(target=P, pred=logq, reduction="sum"), Point("sum", target_as="logprob"))
    _oracle_close(Case(target=P, pred=logq, reduction="sum"), Point("sum", target_as="logprob"))
    assert "KL-MISREAD-1" in t.clauses


# ----------------------------------------------------------------------------- §4
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reductions_match_oracle_formulas(reduction):
    """KL-RED-NONE KL-RED-DIST KL-RED-SUM KL-RED-MEAN KL-RED-BATCHMEAN KL-RED-SOBS
    KL-RED-SAMPLE-SUM KL-RED-SAMPLE-MEAN on a 3-D case with batch axis 1."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=(2, 3))
    q = rng.dirichlet(np.ones(4), size=(2, 3))
    _oracle_close(Case(target=p, pred=np.log(q), reduction=reduction, batch_axis=1), rtol=2e-15)


def test_batchmean_on_0d_and_1d():
    """KL-RED-BATCHMEAN: 0-D divides by 1 (= sum); 1-D divides by the class count (= mean)."""
    one = Case(target=np.array([0.2, 0.8]), pred=np.array([0.5, 0.5]), pred_kind="prob",
               reduction="batchmean")
    assert evaluate(one).value == pytest.approx(evaluate(one.replace(reduction="mean")).value, rel=1e-15)
    zero_d = Case(target=np.array(0.2), pred=np.array(0.5), pred_kind="prob", reduction="batchmean")
    assert evaluate(zero_d).value == pytest.approx(0.2 * math.log(0.4), rel=1e-15)


@pytest.mark.parametrize("reduction", ["distribution", "distribution_mean", "sample_sum", "sample_mean"])
def test_axis_reductions_undefined_on_0d(reduction):
    """KL-RED-0D KL-VERDICT-ERROR: no value is defined; the reference raises with the clause."""
    with pytest.raises(UndefinedCase, match="KL-RED-0D"):
        evaluate(Case(target=np.array(0.2), pred=np.array(0.5), pred_kind="prob", reduction=reduction))


# ----------------------------------------------------------------------------- §5
def test_scalar_weight_scales_every_output():
    """KL-WEIGHT-SCALAR."""
    base = Case(target=P, pred=Q, pred_kind="prob", reduction="distribution")
    np.testing.assert_allclose(evaluate(base.replace(weight=3.0)).value,
                               3.0 * evaluate(base).value, rtol=1e-15)
    assert "KL-WEIGHT-SCALAR" in evaluate(base.replace(weight=3.0)).clauses


def test_sample_weight_broadcasts_from_the_right():
    """KL-WEIGHT-SHAPE KL-WEIGHT-ELEMENT: (N,1) weights one distribution each; (C,) weights
    classes; non-broadcastable shapes are undefined."""
    base = Case(target=P, pred=Q, pred_kind="prob", reduction="distribution")
    per_row = evaluate(base.replace(sample_weight=np.array([[2.0], [0.5]]))).value
    np.testing.assert_allclose(per_row, evaluate(base).value * [2.0, 0.5], rtol=1e-15)
    per_class = base.replace(sample_weight=np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(evaluate(per_class).value, none_terms(P, Q)[:, 0], rtol=1e-15)
    _oracle_close(per_class)
    with pytest.raises(UndefinedCase, match="KL-WEIGHT-SHAPE"):
        evaluate(base.replace(sample_weight=np.ones(3)))


def test_distribution_level_weights():
    """KL-WEIGHT-DIST: equal to element level when constant along the class axis;
    undefined when they vary along it."""
    base = Case(target=P, pred=Q, pred_kind="prob", reduction="distribution_mean",
                sample_weight=np.array([[2.0], [0.5]]))
    dist = Point("distribution_mean", weight_level="distribution")
    np.testing.assert_array_equal(evaluate(base, dist).value, evaluate(base).value)
    with pytest.raises(UndefinedCase, match="KL-WEIGHT-DIST"):
        evaluate(base.replace(sample_weight=np.array([1.0, 2.0, 3.0, 4.0])), dist)


def test_weights_do_not_change_divisors_unless_weight_sum_member():
    """KL-WEIGHT-DIVISOR KL-WEIGHT-SUMDIV: Keras sum_over_batch_size divides by the number
    of per-sample losses; mean_with_sample_weight divides by Σ weights."""
    sw = np.array([[3.0], [1.0]])
    base = Case(target=P, pred=Q, pred_kind="prob", reduction="distribution_mean", sample_weight=sw)
    per = evaluate(base.replace(reduction="distribution", sample_weight=None)).value
    e = evaluate(base)
    assert e.value == pytest.approx((3 * per[0] + per[1]) / 2, rel=1e-15)
    assert "KL-WEIGHT-DIVISOR" in e.clauses
    ws = evaluate(base, Point("distribution_mean", weight_divisor="weight_sum"))
    assert ws.value == pytest.approx((3 * per[0] + per[1]) / 4, rel=1e-15)
    assert "KL-WEIGHT-SUMDIV" in ws.clauses
    with pytest.raises(UndefinedCase, match="KL-WEIGHT-SUMDIV"):
        evaluate(base, Point("sum", weight_divisor="weight_sum"))


# ----------------------------------------------------------------------------- §6
def test_no_epsilon_is_canonical():
    """KL-EPS-NONE: the canonical point has no epsilon; p tiny stays exact."""
    c = Case(target=np.array([1e-300, 1.0]), pred=np.array([1e-300, 0.5]), pred_kind="prob",
             reduction="sum")
    assert canonical(c).epsilon == "none"
    assert evaluate(c).value == pytest.approx(math.log(2), rel=1e-15)


def test_target_log_eps_variant():
    """KL-EPS-TARGET-LOG: p (log(p+eps) − log q), MXNet eps = 1e-12; zeros stay 0."""
    c = Case(target=P, pred=np.log(Q), reduction="sample_mean")
    pt = Point("sample_mean", epsilon="target_log_eps", eps=1e-12)
    got = _oracle_close(c, pt, rtol=2e-15)
    assert np.all(np.abs(got - evaluate(c).value) > 0)
    z = evaluate(Case(target=np.array([0.0, 1.0]), pred=np.log([0.5, 0.5]), reduction="none"),
                 Point("none", epsilon="target_log_eps", eps=1e-12))
    assert z.value[0] == 0.0 and "KL-EPS-TARGET-LOG" in z.clauses


def test_clip_both_variant():
    """KL-EPS-CLIP: p, q clipped into [eps, 1] (Keras eps = 1e-7); zeros contribute
    eps·log(eps/q'); negatives become eps; values above 1 become 1."""
    pt = Point("none", epsilon="clip_both", eps=1e-7)
    v = evaluate(Case(target=np.array([0.0, -1.0, 2.0, 0.5]), pred=np.array([0.5, 0.5, 0.5, 0.0]),
                      pred_kind="prob", reduction="none"), pt).value
    np.testing.assert_allclose(v, [1e-7 * math.log(2e-7), 1e-7 * math.log(2e-7), math.log(2),
                                   0.5 * math.log(0.5 / 1e-7)], rtol=1e-14)
    _oracle_close(Case(target=P, pred=Q, pred_kind="prob", reduction="distribution_mean"),
                  Point("distribution_mean", epsilon="clip_both", eps=1e-7), rtol=2e-15)


# ----------------------------------------------------------------------------- §7
def test_family_points_roundtrip_and_name():
    """KL-FAM-1: a point round-trips through JSON; its name shows every non-default field."""
    pt = Point("sample_mean", epsilon="target_log_eps", eps=1e-12, swap=True, zero_inf="nan",
               weight_divisor="count", pred_as="prob")
    assert Point.from_json(pt.to_json()) == pt
    assert pt.name == "sample_mean+target_log_eps(1e-12)+0*inf=nan+swapped+pred_as_prob"
    assert canonical(Case(target=P, pred=Q, reduction="sum")) == Point("sum")
    with pytest.raises(ValueError, match="eps must be > 0"):
        Point("sum", epsilon="clip_both")


# ----------------------------------------------------------------------------- §9
def test_results_are_float64_and_in_dtype_values_representable():
    """KL-DTYPE-1: the reference reports float64; value_in_dtype is a dtype value."""
    p32 = round_to(P, "float16")
    e = evaluate(Case(target=p32, pred=round_to(Q, "float16"), pred_kind="prob", dtype="float16",
                      reduction="distribution"))
    assert e.value.dtype == np.float64 and e.bound.dtype == np.float64
    np.testing.assert_array_equal(round_to(e.value_in_dtype, "float16"), e.value_in_dtype)


def test_internal_float32_of_float16_case_meets_the_bound():
    """KL-DTYPE-2: computing a float16 case in float32 and rounding passes the float16 bound;
    bounds grow as precision shrinks."""
    p, q = round_to(P, "float16"), round_to(Q, "float16")
    bounds = {}
    for dt in ("float64", "float32", "bfloat16", "float16"):
        bounds[dt] = evaluate(Case(target=round_to(p, dt), pred=round_to(q, dt), pred_kind="prob",
                                   dtype=dt, reduction="distribution")).bound
    assert np.all(bounds["float64"] < bounds["float32"]) and np.all(bounds["float32"] < bounds["float16"])
    assert np.all(bounds["float16"] < bounds["bfloat16"])
    e = evaluate(Case(target=p, pred=q, pred_kind="prob", dtype="float16", reduction="distribution"))
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    internal = np.sum(p32 * (np.log(p32) - np.log(q32)), axis=-1).astype(np.float16).astype(np.float64)
    assert np.all(np.abs(internal - e.value) <= e.bound)


def test_overflowing_results_are_expected_infinite_in_dtype():
    """KL-DTYPE-3 KL-BOUND-4: a float16 result above 65504 is expected as +inf, bound 0."""
    p = np.full(4000, 1.0)
    q = np.full(4000, 2.0**-24)  # smallest float16 subnormal: each term ≈ 16.6
    e = evaluate(Case(target=p, pred=q, pred_kind="prob", dtype="float16", reduction="sum", grad=False))
    assert np.isfinite(e.value) and e.value > 65504
    assert e.value_in_dtype == INF and e.bound == 0.0 and "KL-DTYPE-3" in e.clauses


def _model_algorithm(p, q, dt, axis=-1):
    """KL-BOUND-1's straightforward algorithm in numpy dtype ``dt`` (log, sub, mul, sum)."""
    p, q = p.astype(dt), q.astype(dt)
    with np.errstate(all="ignore"):
        t = np.where(p == 0, dt(0), p * (np.log(p) - np.log(q)))
    return np.cumsum(t, axis=axis, dtype=dt).take(-1, axis=axis).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_model_algorithm_within_bound_and_bound_is_informative(dtype):
    """KL-BOUND-1 KL-BOUND-2 KL-VERDICT-MATCH KL-VERDICT-PRECISION: the model algorithm in
    the dtype matches within B (recursive summation, worst order); an error of 4·B is out."""
    rng = np.random.default_rng(11)
    rows = [rng.dirichlet(np.ones(n) * a) for n, a in [(10, 1.0), (300, 0.3), (1000, 1.0)]]
    dt = getattr(np, dtype)
    for p in rows:
        p = round_to(p, dtype)
        q = round_to(np.clip(p * (1 + rng.normal(0, 1e-2, p.size)), 2.0**-14, 1), dtype)
        e = evaluate(Case(target=p[None], pred=q[None], pred_kind="prob", dtype=dtype,
                          reduction="distribution", grad=False))
        got = _model_algorithm(p[None], q[None], dt)
        assert np.all(np.abs(got - e.value) <= e.bound)
        assert not np.all(np.abs((e.value + 4 * e.bound) - e.value) <= e.bound)
        if dtype != "float16":  # float16 logs (u·|log p| ≈ 4e-3) cannot resolve p ≈ q to 1e-2
            assert np.all(e.bound < 0.05 * np.sum(np.abs(none_terms(p, q))))


def test_reference_error_far_below_float64_bound():
    """KL-BOUND-5: reference vs 50-digit oracle stays ≤ 1/64 of the float64 bound, on
    near-equal pairs in every encoding."""
    p = np.array([[0.3, 0.3, 0.4]])
    q = p * (1 + np.array([[1e-12, -2e-12, 0.75e-12]]))
    for ik, pred in [("prob", q), ("logprob", np.log(q)), ("logits", np.log(q) - 3)]:
        case = Case(target=p, pred=pred, pred_kind=ik, reduction="sum", grad=False)
        e = evaluate(case)
        assert abs(e.value - mpf.value(case, canonical(case))) <= e.bound / 64


def test_specials_have_zero_bound():
    """KL-BOUND-4 KL-VERDICT-SPECIAL: non-finite expectations compare exactly (bound 0)."""
    e = evaluate(Case(target=np.array([[0.5, 0.5], [0.5, 0.5]]), pred=np.array([[0.0, 1.0], [NAN, 1.0]]),
                      pred_kind="prob", reduction="distribution"))
    assert e.value[0] == INF and np.isnan(e.value[1]) and e.bound.tolist() == [0.0, 0.0]


def test_semantic_points_are_distinguishable_within_bounds():
    """KL-VERDICT-SEMANTIC: in float64, MXNet's documented point (target_log_eps 1e-12) lies
    beyond the canonical bound, so a semantic verdict can name it; in float32 it does not."""
    for dtype, separable in [("float64", True), ("float32", False)]:
        c = Case(target=round_to(P, dtype), pred=round_to(np.log(Q), dtype), dtype=dtype,
                 reduction="sample_mean", grad=False)
        canon = evaluate(c)
        mx = evaluate(c, Point("sample_mean", epsilon="target_log_eps", eps=1e-12))
        assert np.all(np.abs(mx.value - canon.value) > canon.bound) == separable


def test_clause_ids_for_outcome_classes_exist_in_spec_text():
    """KL-VERDICT-SHAPE KL-VERDICT-DTYPE KL-VERDICT-GRADIENT KL-VERDICT-CRASH
    KL-VERDICT-TIMEOUT: each class's clause states its trigger."""
    for cid, word in [("KL-VERDICT-SHAPE", "shape"), ("KL-VERDICT-DTYPE", "dtype"),
                      ("KL-VERDICT-GRADIENT", "gradient"), ("KL-VERDICT-CRASH", "signal"),
                      ("KL-VERDICT-TIMEOUT", "timeout"), ("KL-VERDICT-ERROR", "raised")]:
        assert word in clause_text(cid)
    assert SPEC_PATH.exists()


# ---------------------------------------------------------------- KL-BOUND-5 platform guard
def _no_extended_precision(monkeypatch):
    from klconform.reference import variants
    monkeypatch.setattr(variants, "extended_precision", lambda: False)


def test_this_platform_detection_matches_longdouble_width():
    # KL-BOUND-5: x87 extended has 64 significant bits; float64 has 53.
    from klconform.reference import variants
    assert variants.extended_precision() == (np.finfo(np.longdouble).nmant + 1 >= 64)


@pytest.mark.parametrize("case_kw, point", [
    (dict(pred_kind="logprob"), None),                                 # log encoding
    (dict(pred_kind="logits"), None),                                  # logits
    (dict(pred_kind="prob"), Point(reduction="sum", epsilon="clip_both", eps=1e-7)),
])
def test_without_extended_precision_float64_variants_are_refused(monkeypatch, case_kw, point):
    # KL-BOUND-5: longdouble = float64 cannot hold non-core float64 values within B/16.
    _no_extended_precision(monkeypatch)
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    q = np.array([[0.5, 0.5], [0.125, 0.875]])
    pred = {"prob": q, "logprob": np.log(q), "logits": np.log(q) + 3.0}[case_kw["pred_kind"]]
    case = Case(target=p, pred=pred, reduction="sum", grad=False, **case_kw)
    with pytest.raises(UndefinedCase) as info:
        evaluate(case, point)
    assert info.value.clause == "KL-BOUND-5"
    assert "longdouble" in str(info.value)


def test_without_extended_precision_float64_gradients_are_refused(monkeypatch):
    # KL-BOUND-5: gradients are computed in extended precision.
    from klconform.reference import gradients
    _no_extended_precision(monkeypatch)
    p = np.array([[0.25, 0.75]])
    case = Case(target=p, pred=np.array([[0.5, 0.5]]), pred_kind="prob", reduction="sum")
    for fn in (evaluate, gradients):
        with pytest.raises(UndefinedCase) as info:
            fn(case)
        assert info.value.clause == "KL-BOUND-5"


def test_without_extended_precision_core_values_and_lower_dtypes_still_evaluate(monkeypatch):
    # KL-BOUND-5: float64 prob/prob values come from the accurate core; float32 bounds are
    # 2**29 times wider than float64 rounding.  Expected values: the 50-digit oracle.
    _no_extended_precision(monkeypatch)
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    q = np.array([[0.5, 0.5], [0.125, 0.875]])
    core = Case(target=p, pred=q, pred_kind="prob", reduction="sum", grad=False)
    _oracle_close(core)
    low = Case(target=p, pred=round_to(np.log(q), "float32"), dtype="float32", reduction="sum")
    got = evaluate(low)
    assert "KL-BOUND-5" in got.clauses
    np.testing.assert_allclose(got.value, mpf.value(low, canonical(low)), rtol=2.0 ** -40)


# ----------------------------------------------------------------------------- inputs in other dtypes, sent shapes
def test_promotion_table_is_the_wider_dtype_and_float32_for_the_two_halves():
    """KL-DTYPE-4: the promotion rule, written out by hand (torch.promote_types)."""
    from klconform.reference.dtypes import PROMOTION, promote
    assert promote("float32", "float64") == promote("float64", "float32") == "float64"
    assert promote("float16", "bfloat16") == promote("bfloat16", "float16") == "float32"
    assert promote("float16", "float32") == "float32" and promote("bfloat16", "float64") == "float64"
    assert all(PROMOTION[d, d] == d for d in ("float16", "bfloat16", "float32", "float64"))
    assert len(PROMOTION) == 16


def test_promoted_and_cast_cases_are_the_values_as_sent_in_the_result_dtype():
    """KL-DTYPE-4: a promoted case and a cast case evaluate the input values exactly as sent,
    with the bound of ``dtype``; a promoted case has the same expectation as the case of the
    same values all in ``dtype``."""
    p32, q64 = round_to(P, "float32"), np.log(Q)
    mixed = Case(target=p32, pred=q64, dtype="float64", target_dtype="float32", reduction="sum", grad=False)
    plain = Case(target=p32, pred=q64, dtype="float64", reduction="sum", grad=False)
    assert mixed.dtype_form == "promoted" and mixed.digest != plain.digest
    a, b = evaluate(mixed), evaluate(plain)
    assert a.value == b.value and a.bound == b.bound
    np.testing.assert_allclose(a.value, mpf.value(plain, canonical(plain)), rtol=4e-16)
    cast = Case(target=p32, pred=round_to(Q, "float32"), pred_kind="prob", dtype="float16",
                target_dtype="float32", pred_dtype="float32", reduction="distribution", grad=False)
    assert cast.dtype_form == "cast" and not cast.promoted
    e = evaluate(cast)
    f16 = evaluate(Case(target=round_to(P, "float16"), pred=round_to(Q, "float16"), pred_kind="prob",
                        dtype="float16", reduction="distribution", grad=False))
    assert np.all(e.bound > 0) and np.all(np.abs(e.bound / f16.bound - 1) < 0.01)   # float16's bound


@pytest.mark.parametrize("src, dst", [("float32", "float16"), ("float32", "bfloat16"), ("float64", "float32")])
def test_coarser_cast_rounding_the_inputs_first_meets_the_bound(src, dst):
    """KL-DTYPE-4 KL-BOUND-2: inputs exact in ``src``, result asked in coarser ``dst``: the
    model algorithm that rounds both inputs into ``dst`` and computes there stays within B."""
    rng = np.random.default_rng(5)
    np_dt = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
    for n, a in [(4, 1.0), (50, 0.5), (300, 1.0)]:
        p = round_to(np.clip(rng.dirichlet(np.ones(n) * a), 2.0**-12, 1), src)
        q = round_to(np.clip(p * (1 + rng.normal(0, 0.2, n)), 2.0**-12, 1), src)
        e = evaluate(Case(target=p[None], pred=q[None], pred_kind="prob", dtype=dst, target_dtype=src,
                          pred_dtype=src, reduction="distribution", grad=False))
        if dst == "bfloat16":
            pr, qr = round_to(p, "bfloat16").astype(np.float32), round_to(q, "bfloat16").astype(np.float32)
            got = round_to(np.sum(pr * (np.log(pr) - np.log(qr)), dtype=np.float32), "bfloat16")
        else:
            got = _model_algorithm(p[None], q[None], np_dt[dst])
        assert np.all(np.abs(got - e.value) <= e.bound), (n, got, e.value, e.bound)


def test_reshaped_target_is_the_question_on_the_held_arrays():
    """KL-SHAPE-3: a target sent as (8,) for a (2, 4) prediction is the case on the held (2, 4)
    target: the same value, result shape and gradients as the case without the sent shape."""
    lq = np.log(Q)
    sent = Case(target=P, pred=lq, reduction="sample_sum", target_sent_shape=(8,))
    held = Case(target=P, pred=lq, reduction="sample_sum")
    assert sent.sent_target.shape == (8,) and np.array_equal(sent.sent_target, P.reshape(-1))
    a, b = evaluate(sent), evaluate(held)
    np.testing.assert_array_equal(a.value, b.value)
    assert a.value.shape == (2,)
    for k in ("pred", "target"):
        np.testing.assert_array_equal(a.grads[k], b.grads[k])
    np.testing.assert_allclose(a.value, mpf.value(held, canonical(held)), rtol=4e-16)

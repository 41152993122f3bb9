"""KL-BOUND-8: large cases of lower-precision dtypes are computed in float64, every other case
in extended precision; the float64 result stays within a negligible fraction of the bound of
the extended-precision one (computed here by raising the size threshold) and of a
``math.fsum`` evaluation written independently below."""
import dataclasses
import math

import numpy as np
import pytest

from klconform import large
from klconform.case import Case
from klconform.reference import variants
from klconform.reference.evaluate import evaluate
from klconform.reference.family import Point
from klconform.reference.gradients import gradients_and_bounds
from klconform.reference.variants import BIG, LD, prepare


@pytest.fixture
def extended(monkeypatch):
    """Evaluate with the size threshold out of reach: the extended-precision path, every
    sum included (``bounds.value_bound`` reads the same threshold)."""
    def run(fn, *args):
        with monkeypatch.context() as m:
            m.setattr(variants, "BIG", 10**12)
            return fn(*args)
    return run


def _recipe(**kw):
    base = dict(seed=21, batch=4, classes=20000, dtype="float32", target_kind="prob",
                pred_kind="logprob", reduction="batchmean", profile="peaked")
    return large.Recipe(**{**base, **kw})


# ------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("recipe, work", [
    (_recipe(), np.float64),                                  # 80000 float32 elements
    (_recipe(dtype="float16", pred_kind="prob"), np.float64),
    (_recipe(dtype="bfloat16", pred_kind="logits"), np.float64),
    (_recipe(batch=1, classes=BIG + 1), np.float64),          # one element above the threshold
    (_recipe(batch=64, classes=BIG // 64), LD),               # exactly BIG elements
    (_recipe(batch=2), LD),                                   # 40000 elements
    (_recipe(dtype="float64"), LD),                           # float64 keeps extended precision
])
def test_working_precision_rule(recipe, work):
    """KL-BOUND-8: float64 only for a lower-precision case of more than BIG elements; the
    result cites the clause exactly then."""
    case = large.generate(recipe)
    prep = prepare(case)
    assert prep.work is work
    assert {x.dtype for x in (prep.a, prep.la, prep.b, prep.lb, prep.coef)} == {np.dtype(work)}
    assert ("KL-BOUND-8" in evaluate(case).clauses) == (work is np.float64)


def test_an_input_sent_in_float64_keeps_extended_precision():
    """A "cast" case (float64 inputs, a lower compute dtype, KL-DTYPE-4) can hold float64
    subnormals, whose ratios overflow float64: extended precision, whatever the size."""
    case = large.generate(_recipe())
    assert prepare(case).work is np.float64
    for side in ("target_dtype", "pred_dtype"):
        assert prepare(_with(case, **{side: "float64"})).work is LD


def _with(case, **changes) -> Case:
    return dataclasses.replace(case, **changes)


def test_out_of_range_entries_keep_extended_precision(extended, monkeypatch):
    """KL-BOUND-8's ranges: an entry that float64 would overflow or flush to zero (and
    extended precision would not) sends the case back to extended precision: the value of
    the extended path exactly (the bound is summed in float64 above BIG elements).  Without
    the range check the value differs: exp(-800) is 0 in float64, so KL-ZERO-3 turns its
    term into NaN."""
    case = large.generate(_recipe(target_kind="logprob"))
    assert prepare(case).work is np.float64
    target = case.target.copy()
    target[0, 0] = -800.0                      # a float32 log-probability; e**-800 < 2**-1074
    far = _with(case, target=target)
    point = Point(reduction="batchmean", zero_inf="nan")
    assert prepare(far, point).work is LD
    got, want = evaluate(far, point), extended(evaluate, far, point)
    assert np.isfinite(want.value)
    assert np.array_equal(got.value, want.value)
    np.testing.assert_allclose(got.bound, want.bound, rtol=1e-12, atol=0)
    with monkeypatch.context() as m:
        m.setattr(variants, "LOG_RANGE", np.inf)
        assert prepare(far, point).work is np.float64
        assert np.isnan(evaluate(far, point).value)
    # each range on its own, for the encoding the point reads
    pred = case.pred.copy()
    pred[1, 2] = 300.0
    assert prepare(_with(case, pred=pred)).work is LD                          # log-encoded > 256
    assert prepare(_with(case, pred=pred), Point(reduction="batchmean", pred_as="prob")).work is np.float64
    assert prepare(_with(case, weight=2.0**200)).work is LD                    # scalar weight
    assert prepare(_with(case, weight=-3.0)).work is np.float64
    sw = np.ones(case.shape[:1] + (1,))
    assert prepare(_with(case, sample_weight=sw)).work is np.float64
    sw[2, 0] = np.inf
    assert prepare(_with(case, sample_weight=sw)).work is LD                   # non-finite weight
    # infinities and NaN are the same in every precision: they do not count
    pred[1, 2] = -np.inf
    pred[3, 4] = np.nan
    assert prepare(_with(case, pred=pred)).work is np.float64


# ------------------------------------------------------------------------------- accuracy
ACCURACY = [
    _recipe(seed=31, batch=8, classes=100000, profile="peaked"),                          # 8·10⁵
    _recipe(seed=32, batch=16, classes=50000, dtype="float16", target_kind="logprob",
            pred_kind="prob", reduction="sum", profile="flat"),
    _recipe(seed=33, batch=4, classes=131072, pred_kind="prob", reduction="mean",
            profile="sparse"),
    _recipe(seed=34, batch=6, classes=50257, dtype="float16", pred_kind="logits",
            reduction="distribution", profile="peaked"),
    _recipe(seed=35, batch=10, classes=32000, dtype="bfloat16", target_kind="logprob",
            pred_kind="logprob", reduction="batchmean", profile="sparse"),
]


def _fsum_value(case) -> np.ndarray:
    """The canonical value from float64 terms p·(log p − log q) summed exactly per output
    with math.fsum: an evaluation that shares no code with the reference."""
    x, z = case.target, case.pred
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p, lp = (x, np.log(x)) if case.target_kind == "prob" else (np.exp(x), x)
        if case.pred_kind == "prob":
            lq = np.log(z)
        elif case.pred_kind == "logprob":
            lq = z
        else:
            m = z.max(axis=-1, keepdims=True)
            lq = z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
        t = np.where(p == 0, 0.0, p * (lp - lq))
    if case.reduction == "distribution":
        return np.array([math.fsum(row) for row in t.tolist()])
    total = math.fsum(t.ravel().tolist())
    return np.float64(total / {"sum": 1, "mean": t.size, "batchmean": t.shape[0]}[case.reduction])


@pytest.fixture(scope="module", params=ACCURACY, ids=lambda r: r.label)
def accuracy_case(request):
    return large.generate(request.param)


def test_float64_value_and_bound_match_extended_precision(accuracy_case, extended):
    """KL-BOUND-8: the float64 value is within 10⁻⁶ of the bound of the extended one (the
    claim is 2⁻²⁶), the bounds agree to 10⁻⁹ relative, and both values are as close to an
    exactly summed float64 evaluation."""
    case = accuracy_case
    assert prepare(case).work is np.float64 and extended(prepare, case).work is LD
    fast, slow = evaluate(case), extended(evaluate, case)
    assert np.all(slow.bound > 0) and np.all(np.isfinite(slow.value))
    assert np.all(np.abs(fast.value - slow.value) <= 1e-6 * slow.bound)
    np.testing.assert_allclose(fast.bound, slow.bound, rtol=1e-9, atol=0)
    assert np.array_equal(fast.value_in_dtype, slow.value_in_dtype)
    exact = _fsum_value(case)
    assert np.all(np.abs(fast.value - exact) <= 1e-6 * slow.bound)
    assert np.all(np.abs(slow.value - exact) <= 1e-6 * slow.bound)
    assert set(fast.clauses) - set(slow.clauses) == {"KL-BOUND-8"}
    assert set(slow.clauses) <= set(fast.clauses)


@pytest.mark.parametrize("point", [
    Point(reduction="batchmean"),
    Point(reduction="batchmean", normalise=True),
    Point(reduction="batchmean", epsilon="target_log_eps", eps=1e-12, swap=True),
], ids=lambda p: p.name)
def test_float64_gradients_match_extended_precision(point, extended):
    """KL-BOUND-8 with gradients (large cases are value-only, but the float64 path must stay
    right if one asked): gradients within 10⁻⁶ of their extended bounds, the bounds to
    10⁻⁹ relative (logits exercise the softmax backward, normalise its own backward)."""
    case = _with(large.generate(_recipe(seed=41, batch=3, classes=30000, pred_kind="logits")),
                 grad=True)
    prep_fast, prep_slow = prepare(case, point), extended(prepare, case, point)
    assert prep_fast.work is np.float64 and prep_slow.work is LD
    fast, slow = gradients_and_bounds(prep_fast), extended(gradients_and_bounds, prep_slow)
    for side in ("pred", "target"):
        g, gb = fast[0][side], fast[1][side]
        g_ld, gb_ld = slow[0][side], slow[1][side]
        assert np.all(np.isfinite(g_ld)) and np.all(gb_ld > 0)
        assert np.all(np.abs(g - g_ld) <= 1e-6 * gb_ld)
        np.testing.assert_allclose(gb, gb_ld, rtol=1e-9, atol=0)


@pytest.mark.parametrize("recipe", [_recipe(pred_kind="prob"), _recipe(batch=2, pred_kind="prob")],
                         ids=["float64", "extended"])
@pytest.mark.parametrize("point", [None, Point(reduction="batchmean", generalised=True),
                                   Point(reduction="batchmean", swap=True)], ids=str)
def test_evaluate_bound_is_the_bound_computed_alone(recipe, point):
    """``evaluate`` hands the value's terms to ``value_bound`` (no second evaluation): the
    bound is bit for bit the one ``value_bound`` computes on its own, on both paths and
    where the accurate core gives the value (small probability/probability case)."""
    from klconform.reference.bounds import value_bound
    case = large.generate(recipe)
    exp = evaluate(case, point)
    alone = value_bound(prepare(case, point), exp.value)
    assert np.array_equal(exp.bound, np.where(np.isfinite(exp.value_in_dtype), alone, 0.0))


@pytest.mark.parametrize("target, pred", [(0.0, 0.5), (0.25, 0.5)])
def test_zero_d_bound_follows_the_formula(target, pred):
    """KL-BOUND-2 on a 0-D float64 case (k = 1, D = 1), the bound's code path that works on
    scalars: B = 2u·(a·(|log a| + |log b| + 1) + 3|T| + 0) + u·|value| + 5η, a = 0 giving
    only u·|value| + 5η."""
    case = Case(target=np.array(target), pred=np.array(pred), pred_kind="prob", reduction="sum")
    exp = evaluate(case)
    u, eta = 2.0**-53, 2.0**-1022 * 2.0**-53
    t = 0.0 if target == 0 else target * math.log(target / pred)
    per = 0.0 if target == 0 else target * (abs(math.log(target)) + abs(math.log(pred)) + 1)
    want = 2 * u * (per + 3 * abs(t)) + u * abs(t) + 5 * eta
    assert float(exp.bound) == pytest.approx(want, rel=1e-12)

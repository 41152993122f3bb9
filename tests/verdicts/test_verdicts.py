"""Verdict classification: a test-double adapter that deviates slightly in one dimension
gets that dimension's verdict class (and the conforming double gets only matches)."""
import numpy as np
import pytest

import kl_doubles as D
from klconform import engine, explore
from klconform.case import Case
from klconform.compare import compare_arrays
from klconform.evaluator import make_evaluator
from klconform.verdicts import classify
from klconform.reference.family import Point

SMALL_CORPUS_SIZE = 120


@pytest.fixture(scope="module")
def corpus():
    from klconform.curated import curated_cases
    some_curated = curated_cases(dtypes=("float64",), reductions=("batchmean", "sum", "none"))
    return some_curated + explore.build_corpus(7, SMALL_CORPUS_SIZE, [D.ReferenceAdapter().capabilities()],
                                              curated=False)


@pytest.fixture(scope="module")
def evaluator():
    return make_evaluator()


def run_double(adapter, corpus, evaluator):
    t = engine.Target(run_id=adapter.name, adapter=adapter, runner=engine.InProcessRunner(adapter),
                      env={"version": "0"})
    run, _ = engine.run_adapter(t, corpus, records=[], evaluator=evaluator, shrink_rounds=2)
    return run


def classes(run, against="canonical"):
    return {v.cls for v in run.verdicts if v.against == against}


def test_conforming_double_only_matches(corpus, evaluator):
    run = run_double(D.ReferenceAdapter(), corpus, evaluator)
    bad = [v for v in run.verdicts if v.cls != "match"]
    assert not bad, bad[:3]
    assert len(run.outcomes) >= SMALL_CORPUS_SIZE


@pytest.mark.parametrize("double, cls, explained", [
    (D.WrongReduction, "semantic", "sum"),
    (D.TargetEpsilon, "semantic", "*target_log_eps(1e-12)*"),
    (D.ZeroTimesInfNaN, "semantic", "*0*inf=nan*"),
    (D.ZeroPredFinite, "special_value", None),
    (D.DownCast, "dtype", None),
    (D.GradientOff, "gradient", None),
    (D.KeepDims, "shape", None),
    (D.Raises, "error", None),
    (D.Imprecise, "precision", None),
    (D.Crashes, "crash", None),
    (D.Hangs, "timeout", None),
])
def test_each_deviation_gets_its_class(double, cls, explained, corpus, evaluator):
    import fnmatch
    run = run_double(double(), corpus, evaluator)
    got = [v for v in run.verdicts if v.cls == cls and v.against == "canonical"]
    assert got, f"{double.name}: no {cls} verdict; classes {classes(run)}"
    if explained:
        assert any(fnmatch.fnmatchcase(v.explained_by or "", explained) for v in got), \
            {v.explained_by for v in got}
    assert cls in run.counterexamples
    assert all(v.clauses and v.clauses[-1].startswith("KL-VERDICT-") for v in run.verdicts)


def test_semantic_counterexample_is_shrunk_and_small(corpus, evaluator):
    run = run_double(D.WrongReduction(), corpus, evaluator)
    # the semantic one by name: the double also has a gradient counterexample (a broadcast
    # case whose value is NaN either way, its gradient 3x), which sorts first
    ce = run.counterexamples["semantic"]
    case = engine.case_from_blob(ce["blob"])
    assert ce["verdict"]["cls"] == "semantic" and ce["verdict"]["explained_by"] == "sum"
    assert case.digest == ce["case"] and case.target.size <= 8


def _case():
    return Case(target=np.array([[0.25, 0.75]]), pred=np.log([[0.5, 0.5]]), reduction="batchmean")


def test_compare_arrays_special_and_bound():
    assert compare_arrays(np.array([np.nan, np.inf]), 0.0, np.array([np.nan, np.inf])).ok
    assert compare_arrays(np.array([1.0]), 0.0, np.array([np.inf])).cls == "special_value"
    assert compare_arrays(np.array([1.0]), 1e-3, np.array([1.002])).cls == "precision"
    assert compare_arrays(np.array([1.0]), 1e-3, np.array([1.0005])).ok
    assert compare_arrays(np.array(1.0), 1e-3, np.array([1.0])).cls == "shape"


def test_documented_point_is_compared_separately():
    c = _case()
    out = D.WrongReduction().evaluate(c)          # sums: batchmean of 1 row == sum, so use 2 rows
    c2 = c.replace(target=np.array([[0.25, 0.75]] * 2), pred=np.log([[0.5, 0.5]] * 2))
    out = D.WrongReduction().evaluate(c2)
    can = classify(c2, out, adapter="x", against="canonical", point=Point("batchmean"))
    doc = classify(c2, out, adapter="x", against="documented", point=Point("sum"))
    assert [v.cls for v in can] == ["semantic"] and can[0].explained_by == "sum"
    assert [v.cls for v in doc] == ["match"]


# ----------------------------------------------------------------------------- search rules
def _exact_outcome(case, point, **changes):
    """What a framework computing exactly ``point`` returns (then ``changes`` applied)."""
    from klconform.adapters.base import Outcome
    from klconform.reference.evaluate import evaluate
    exp = evaluate(case, point)
    out = Outcome(status="ok", value=np.array(exp.value_in_dtype, dtype=float), dtype=case.dtype,
                  shape=tuple(exp.value.shape), grads={k: np.array(g, dtype=float) for k, g in exp.grads.items()},
                  grad_dtypes={k: case.dtype for k in exp.grads})
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def test_nan_only_gradient_difference_names_no_point():
    """p = +inf: value +inf as specified, d/dp NaN where the reference says +inf (torch).
    A candidate whose gradient is NaN there too (target_log_eps: inf/inf) is no explanation."""
    c = Case(target=np.array([[np.inf, 0.5]]), pred=np.log([[0.5, 0.5]]), reduction="sum")
    out = _exact_outcome(c, Point("sum"))
    g = out.grads["target"].copy()
    assert np.isposinf(g[0, 0])
    g[0, 0] = np.nan
    out.grads = {**out.grads, "target": g}
    vs = classify(c, out, adapter="x", against="canonical", point=Point("sum"))
    assert [v.cls for v in vs] == ["gradient"] and vs[0].explained_by is None


def test_nan_value_prefers_the_compared_reduction():
    """A NaN value cannot tell reductions apart: the compared reduction's 0*inf point is
    named, not the (value-equivalent) documented reduction's."""
    c = Case(target=np.array([[0.0, 1.0], [0.5, 0.5]]), pred=np.array([[-np.inf, 0.0], np.log([0.5, 0.5])]),
             reduction="mean")
    out = _exact_outcome(c, Point("mean", zero_inf="nan"))
    assert np.isnan(out.value)
    vs = classify(c, out, adapter="x", against="canonical", point=Point("mean"), documented=Point("sum"))
    assert [(v.cls, v.explained_by) for v in vs] == [("semantic", "mean+0*inf=nan")]


def test_a_wider_bound_alone_explains_nothing():
    """Equal P and Q give ~0 under every reduction; an error of 20 bounds of the per-sample
    mean fits the per-sample sum (40 classes: a 40x wider bound) only because that bound is
    wider, not because its value is closer: precision, not semantic."""
    from klconform.reference.dtypes import round_to
    from klconform.reference.evaluate import evaluate
    p = round_to(np.full((2, 40), 1 / 40), "float32")
    c = Case(target=p, pred=p, pred_kind="prob", dtype="float32", reduction="sample_mean", grad=False)
    mean, total = evaluate(c, Point("sample_mean")), evaluate(c, Point("sample_sum"))
    assert np.all(total.bound > 20 * mean.bound)
    out = _exact_outcome(c, Point("sample_mean"), value=mean.value_in_dtype + 20 * mean.bound)
    vs = classify(c, out, adapter="x", against="canonical", point=Point("sample_mean"))
    assert [v.cls for v in vs] == ["precision"], vs


def test_candidates_are_ranked_simplest_first():
    from klconform.candidates import complexity, point_distance
    base = Point("batchmean")
    assert point_distance(base, Point("sum")) == 1
    assert point_distance(base, Point("batchmean", epsilon="clip_both", eps=1e-7)) == 1
    assert point_distance(base, Point("batchmean", swap=True)) == 2
    assert point_distance(base, Point("batchmean", weight_level="distribution"), weighted=False) == 0
    # the documented point itself is one step from the compared one
    assert complexity(Point("sum", zero_inf="nan"), base, Point("sum")) == 2
    assert complexity(Point("sum"), base, Point("sum", epsilon="clip_both", eps=1e-7)) == 1


def test_swapped_log_prediction_underflows_like_every_float_implementation():
    """Arguments exchanged with a log-encoded prediction: the first side exp(-1000) is 0
    in float64 (and float32), so the entry where p = 0 contributes 0, not +inf (SPEC.md
    KL-ARG-ORDER).  Independent oracle: the exchanged formula in float64 numpy,
    Σ exp(lq) (lq - log p) with the 0·log 0 = 0 convention; the verdict is 'swapped'."""
    from klconform.adapters.base import Outcome
    from klconform.reference.evaluate import evaluate
    lq = np.array([[np.log(0.5), np.log(0.5), -1000.0]])
    p = np.array([[0.5, 0.5, 0.0]])
    c = Case(target=p, pred=lq, pred_kind="logprob", dtype="float64", reduction="sum", grad=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.exp(lq)
        oracle = float(np.sum(np.where(q == 0, 0.0, q * (lq - np.log(p)))))
    e = evaluate(c, Point("sum", swap=True))
    assert np.isfinite(e.value) and abs(e.value - oracle) <= e.bound
    # P differs from Q: a framework exchanging the arguments is named 'swapped', not precision
    c2 = c.replace(target=np.array([[0.25, 0.75, 0.0]]))
    with np.errstate(divide="ignore", invalid="ignore"):
        oracle2 = float(np.sum(np.where(q == 0, 0.0, q * (lq - np.log(c2.target)))))
    out2 = Outcome(status="ok", value=np.array(oracle2), dtype="float64", shape=())
    assert np.isfinite(evaluate(c2, Point("sum", swap=True)).value)
    vs = classify(c2, out2, adapter="x", against="canonical", point=Point("sum"))
    assert [(v.cls, v.explained_by) for v in vs] == [("semantic", "sum+swapped")], vs


# ----------------------------------------------------------------------------- shrinking budget
def _run_with(adapter, cases, evaluator, **kw):
    t = engine.Target(run_id=adapter.name, adapter=adapter, runner=engine.InProcessRunner(adapter),
                      env={"version": "0"})
    return engine.run_adapter(t, cases, records=[], evaluator=evaluator, **kw)[0]


def test_hanging_cases_are_shrunk_by_at_most_two_candidates(corpus, evaluator):
    D.SlowHangs.calls = 0
    cases = corpus[:10]
    run = _run_with(D.SlowHangs(), cases, evaluator, shrink_rounds=6, shrink_budget=60.0)
    assert set(run.counterexamples) == {"timeout"}
    assert D.SlowHangs.calls - len(run.outcomes) <= 0 and D.SlowHangs.calls <= len(cases) + 2


def test_shrinking_stops_at_its_time_budget(corpus, evaluator):
    import time
    cases = [c for c in corpus if c.reduction in ("mean", "distribution_mean") and c.target.size > 2][:6]
    t0 = time.perf_counter()
    run = _run_with(D.SlowWrongReduction(), cases, evaluator, shrink_rounds=50, shrink_budget=0.2)
    ce = next(iter(run.counterexamples.values()))
    assert ce["shrink"]["stopped"] == "budget" and ce["shrink"]["budget_s"] == 0.2
    # one round may be under way at the deadline: 24 candidates at 0.05 s
    assert time.perf_counter() - t0 < len(cases) * 0.05 + 0.2 + 24 * 0.05 + 5


# ----------------------------------------------------------------------------- cause attribution
# A semantic verdict rests on evidence that discriminates: a point is named only where it is
# distinguishable from the compared point beyond both bounds; otherwise the verdict stays
# unexplained (precision / special_value / shape / gradient) rather than naming a wrong cause.

def _named(run):
    return {v.explained_by for v in run.verdicts if v.against == "canonical" and v.cls == "semantic"}


def test_float32_computation_is_not_named_an_epsilon(corpus, evaluator):
    """float64 inputs computed in float32 with subnormals flushed: no clip_both(1e-07)."""
    run = run_double(D.Float32Compute(), corpus, evaluator)
    assert not _named(run), _named(run)
    assert {"precision", "gradient"} <= classes(run)


def test_swapped_arguments_are_named_swapped_not_a_clip(corpus, evaluator):
    """A clip point whose loose bound covers both the canonical and the swapped value is no
    evidence: no semantic verdict of a swapping double names a clip, and the swap explains
    the run.  (A NaN that the swap and the cheaper 0*inf=NaN convention both give may still
    be named by the convention on its case: per-case naming does not yet prefer the run's
    fingerprint.)"""
    run = run_double(D.Swapped(), corpus, evaluator)
    names = _named(run)
    assert names and not any("clip" in n for n in names), names
    assert all(n.endswith("+swapped") or n.endswith("+0*inf=nan") for n in names), names
    swapped = sum(1 for v in run.verdicts if (v.explained_by or "").endswith("+swapped"))
    assert swapped >= 0.9 * sum(1 for v in run.verdicts if v.explained_by), names


def test_gradient_bug_is_not_named_a_reduction(corpus, evaluator):
    """Gradients x2 with the right value: where the value (0) cannot tell reductions apart,
    'sum' is no explanation -- gradient verdicts, no semantic ones."""
    run = run_double(D.GradientTimesTwo(), corpus, evaluator)
    assert not _named(run), _named(run)
    assert "gradient" in classes(run)


def test_flattened_none_is_a_shape_verdict_and_no_reduction_in_the_fingerprint(corpus, evaluator):
    """reduction='none' flattened: on (N, 1) and empty inputs the values equal a per-sample
    sum / distribution reshaped -- a shape verdict, and the fingerprint keeps 'none'."""
    from klconform.fingerprint import infer_fingerprint
    run = run_double(D.FlattenNone(), corpus, evaluator)
    assert not _named(run), _named(run)
    assert "shape" in classes(run)
    fp = infer_fingerprint({c.digest: c for c in corpus}, run.outcomes)
    assert "none->" not in fp["observed"]["name"] and "none→" not in fp["observed"]["name"], fp["observed"]["name"]


def test_a_reshape_of_the_same_values_does_not_discriminate():
    from klconform.explain import _discriminates
    v = np.array([[0.1], [0.2]])
    assert not _discriminates(v, 1e-17, v.reshape(-1), 1e-17, v.reshape(-1))
    assert not _discriminates(np.zeros((0, 3)), 0.0, np.zeros((0,)), 0.0, np.zeros((0,)))
    # a clip whose bound covers the compared value is no evidence; one beyond both bounds is
    assert not _discriminates(np.array(1.0), 1e-9, np.array(1.0 + 1e-6), 1e-5, np.array(1.0 + 1e-6))
    assert _discriminates(np.array(1.0), 1e-9, np.array(1.1), 1e-5, np.array(1.1))
    # the only agreeing entry is a NaN both points give
    assert not _discriminates(np.array([np.nan, 1.0]), 0.0, np.array([np.nan, 2.0]), 0.0, np.array([np.nan, 3.0]))

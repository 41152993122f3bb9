"""Verdict classification: a test-double adapter that deviates slightly in one dimension
gets that dimension's verdict class (and the conforming double gets only matches)."""
import numpy as np
import pytest

import kl_doubles as D
from klconform import engine
from klconform.case import Case
from klconform.verdicts import classify, compare_arrays, make_evaluator
from reference.family import Point

SMALL_CORPUS_SIZE = 120


@pytest.fixture(scope="module")
def corpus():
    from klconform.curated import curated_cases
    some_curated = curated_cases(dtypes=("float64",), reductions=("batchmean", "sum", "none"))
    return some_curated + engine.build_corpus(7, SMALL_CORPUS_SIZE, [D.ReferenceAdapter().capabilities()],
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
    ce = run.counterexamples["semantic"]
    case = engine.case_from_blob(ce["blob"])
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
